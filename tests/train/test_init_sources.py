"""The trainer starts from a HF checkpoint or an Orbax checkpoint, loaded onto its shards,
and its own step directories are model checkpoints other tools can read."""

import jax
import numpy as np
from flax import nnx

from configs import sft as sft_config
from paras2s_jax.checkpoint.orbax_io import restore_model
from paras2s_jax.checkpoint.random_checkpoint import write_random_checkpoint
from paras2s_jax.model import tiny
from paras2s_jax.train import trainer


def _cfg(tmp_path, source: str, path: str = ""):
    cfg = sft_config.get_config("toy")
    with cfg.unlocked():
        cfg.workdir = str(tmp_path / "run")
        cfg.mesh.data, cfg.mesh.fsdp = 2, 4
        cfg.init.source, cfg.init.path = source, path
    return cfg


def _leaves(params):
    return [np.asarray(x) for x in jax.tree.leaves(params)]


def test_hf_then_orbax_round_trip(tmp_path):
    hf_dir = tmp_path / "hf"
    write_random_checkpoint(hf_dir, tiny(), dtype="float32", tokenizer=False)
    run = trainer.setup(_cfg(tmp_path, "hf", str(hf_dir)))
    embed = run.state["params"]["embed_tokens"]["embedding"]
    assert embed.sharding.spec[1] == "fsdp"  # loaded straight onto FSDP shards
    moments = [x for x in jax.tree.leaves(run.state["opt_state"]) if x.shape == embed.shape]
    assert len(moments) == 2  # Adam mu and nu, sharded like their parameter
    assert all(m.sharding == embed.sharding for m in moments)

    ckpt = trainer.checkpointer(run)
    ckpt.save(7, run.state, model_config=run.model_config)
    ckpt.close()
    step_dir = run.workdir / "checkpoints" / "7"
    model = restore_model(step_dir)  # a training step directory is a model checkpoint
    expected = _leaves(run.state["params"])
    for a, b in zip(expected, _leaves(nnx.state(model, nnx.Param)), strict=True):
        np.testing.assert_array_equal(a, b)
    again = trainer.setup(_cfg(tmp_path / "b", "orbax", str(step_dir)))
    for a, b in zip(expected, _leaves(again.state["params"]), strict=True):
        np.testing.assert_array_equal(a, b)
