"""Training: the shared loop core, stage registry, SFT loss/step, data, metrics, checkpoints."""

from paras2s_jax.train.checkpointing import CheckpointConfig, Checkpointer
from paras2s_jax.train.data import DataError, read_records, train_dataset
from paras2s_jax.train.optim import OptimizerConfig, make_optimizer
from paras2s_jax.train.sft import sft_counts, sft_loss, token_ce
from paras2s_jax.train.stages import get as get_stage
from paras2s_jax.train.stages import register as register_stage
from paras2s_jax.train.step import build_train_step, init_state

__all__ = [
    "CheckpointConfig", "Checkpointer", "DataError", "OptimizerConfig", "build_train_step",
    "get_stage", "init_state", "make_optimizer", "read_records", "register_stage",
    "sft_counts", "sft_loss", "token_ce", "train_dataset",
]
