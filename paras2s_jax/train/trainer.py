"""The small loop core every stage shares: set up model + state on a mesh, then loop.

A stage (see `stages.py`) owns its loss, step and data; it calls `setup` for the
mesh, model, optimizer and sharded train state, and `train_loop` to run its jitted
step with checkpoints, evaluation, metrics and profiling.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from paras2s_jax import sharding
from paras2s_jax.model.families import DEFAULT_FAMILY, ModelFamily, family_named
from paras2s_jax.model.lora import LoRAConfig, attach_lora
from paras2s_jax.policy import SpeechPolicy, policy_for
from paras2s_jax.train import data as data_lib
from paras2s_jax.train import prompt_features
from paras2s_jax.train import step as step_lib
from paras2s_jax.train.checkpointing import CheckpointConfig, Checkpointer, abstract_like
from paras2s_jax.train.metrics import MetricWriter, Preemption, ProfileWindow, StepTimer
from paras2s_jax.train.optim import OptimizerConfig, make_optimizer, schedule

NUMERICS = ("dtype", "param_dtype", "remat")  # `config.model` fields every family takes


def model_family(cfg: ml_collections.ConfigDict) -> ModelFamily:
    """The model family of `cfg.model` (`cfg.model.family`, default Kimi-Audio)."""
    return family_named(cfg.get("family", DEFAULT_FAMILY))


def model_config(cfg: ml_collections.ConfigDict) -> Any:
    """The frozen model config of `cfg.model` (its family's preset + overrides)."""
    overrides = dict(cfg.overrides.to_dict())
    overrides.update({name: cfg[name] for name in NUMERICS})
    return model_family(cfg).preset(cfg.preset, **overrides)


def optimizer_config(cfg: ml_collections.ConfigDict) -> OptimizerConfig:
    """The optimizer fields of `cfg.optimizer` (accum_steps belongs to the step)."""
    fields = {f.name for f in dataclasses.fields(OptimizerConfig)}
    return OptimizerConfig(**{k: v for k, v in cfg.to_dict().items() if k in fields})


@dataclasses.dataclass
class Run:
    """Everything a stage's loop needs, built from the config."""

    cfg: ml_collections.ConfigDict
    mesh: jax.sharding.Mesh
    model_config: Any  # the model family's frozen config
    graphdef: nnx.GraphDef
    rest: nnx.State
    tx: optax.GradientTransformation
    schedule: optax.Schedule
    state: dict
    shardings: dict
    workdir: Path
    preempted: bool = False  # set when train_loop stopped early on SIGTERM

    def model(self, params: nnx.State | None = None) -> nnx.Module:
        """A live model view of `params` (default: the current state's)."""
        return nnx.merge(self.graphdef, self.state["params"] if params is None else params,
                         self.rest)

    @property
    def policy(self) -> SpeechPolicy:
        """The stages' view of this run's model family (`paras2s_jax.policy`)."""
        return policy_for(self.model_config)

    def batch_sharding(self, ndim: int = 2) -> NamedSharding:
        return sharding.batch_sharding(self.mesh, ndim)


def init_model(cfg: ml_collections.ConfigDict, mesh: jax.sharding.Mesh) -> nnx.Module:
    """Fresh (born sharded) from `cfg.model`, or loaded straight onto the mesh's shards.

    `init.source`: "fresh"; "hf" (a safetensors directory of `cfg.model.family`);
    "orbax" (a model checkpoint or a training step directory of any stage, of the family
    it stores). Loaded models keep their checkpoint's sizes; `cfg.model` contributes
    dtype, param_dtype and remat.
    """
    source, path = cfg.init.source, cfg.init.path
    family = model_family(cfg.model)
    if source == "fresh":
        mc = model_config(cfg.model)
        return sharding.create_sharded(lambda: family.build(mc, cfg.seed), mesh)
    numerics = {k: cfg.model[k] for k in NUMERICS}
    if source in ("hf", "orbax"):
        from paras2s_jax.train.inputs import require

        require(path, "config.init.path", cfg.init.get("made_by", "") or
                "the stage that writes it (see the config file's docstring)")
    if source == "hf":
        return family.load_hf(path, mesh, **numerics)
    if source == "orbax":
        from paras2s_jax.checkpoint.orbax_io import restore_model

        return restore_model(path, mesh, **numerics)
    raise ValueError(f"config.init.source must be 'fresh', 'hf' or 'orbax', got {source!r}")


def abstract_model(cfg: ml_collections.ConfigDict, mesh: jax.sharding.Mesh,
                   adapters: LoRAConfig | None = None) -> nnx.Module:
    """The model of `cfg.model` (with `adapters` attached) with ShapeDtypeStructs
    carrying their shardings for arrays: what `launch/plan.py` compiles against,
    without allocating a parameter."""
    model = model_family(cfg.model).abstract(model_config(cfg.model), adapters)
    state = nnx.state(model)
    nnx.update(model, abstract_like(state, sharding.state_shardings(state, mesh)))
    return model


def setup(cfg: ml_collections.ConfigDict, devices: list | None = None,
          abstract: bool = False, adapters: LoRAConfig | None = None,
          model: nnx.Module | None = None) -> Run:
    """Mesh, model, optimizer and the sharded train state (optimizer state sharded too).

    `devices`: the mesh's devices (default: every device of every process).
    `abstract`: ShapeDtypeStructs instead of arrays (nothing is allocated or loaded).
    `adapters`: train LoRA adapters only; the model's weights become the frozen `rest`.
    `model`: an already loaded model (default: from `cfg.init`).
    """
    mesh = sharding.make_mesh(sharding.MeshConfig(**cfg.mesh.to_dict()), devices)
    if abstract:
        model = abstract_model(cfg, mesh, adapters)
    else:
        model = model if model is not None else init_model(cfg, mesh)
        if adapters is not None:
            attach_lora(model, adapters, rngs=nnx.Rngs(cfg.seed))
            sharding.shard_module(model, mesh)
    mc = model.config
    trainable = nnx.LoRAParam if adapters is not None else nnx.Param
    graphdef, params, rest = nnx.split(model, trainable, ...)
    ocfg = optimizer_config(cfg.optimizer)
    tx = make_optimizer(ocfg)
    replicated = NamedSharding(mesh, PartitionSpec())
    param_shardings = sharding.state_shardings(params, mesh)
    init = lambda p: step_lib.init_state(p, tx, cfg.seed)  # noqa: E731
    abstract_state = jax.eval_shape(init, params)
    shardings = step_lib.state_shardings(param_shardings, abstract_state, tx, replicated)
    if abstract:
        state = abstract_like(abstract_state, shardings)
    else:
        state = jax.jit(init, out_shardings=shardings)(params)
    workdir = Path(cfg.workdir)
    if not abstract:
        workdir.mkdir(parents=True, exist_ok=True)
    return Run(cfg, mesh, mc, graphdef, rest, tx, schedule(ocfg), state, shardings, workdir)


def jit_step(run: Run, step: Callable) -> sharding.mesh_jit:
    """The stage's `(state, batch, rest) -> (state, metrics)` jitted on the run's mesh,
    state donated and kept on its shardings."""
    return sharding.mesh_jit(step, run.mesh, donate_argnums=0,
                             out_shardings=(run.shardings, None))


def checkpointer(run: Run, best_metric: str | None = None,
                 best_mode: str | None = None) -> Checkpointer:
    """The run's checkpointer; `best_metric` / `best_mode` override `config.checkpoint`'s
    (a stage that ranks its checkpoints by its own metric)."""
    c = run.cfg.checkpoint
    return Checkpointer(CheckpointConfig(
        directory=str(run.workdir / "checkpoints"), keep_last=c.keep_last,
        keep_best=c.keep_best, best_metric=best_metric or c.best_metric,
        best_mode=best_mode or c.best_mode, async_save=c.async_save))


def restore_latest(run: Run, ckpt: Checkpointer, data_iter: Any) -> int:
    """Resume from the latest checkpoint, if any; returns the step to start from."""
    latest = ckpt.latest_step()
    if latest is None:
        return 0
    state, _ = ckpt.restore(latest, abstract_like(run.state, run.shardings), data_iter)
    run.state = state
    return int(latest)


def train_loop(
    run: Run,
    step_fn: Callable[[dict, dict, nnx.State], tuple[dict, dict]],
    batches: Iterator[dict[str, np.ndarray]],
    *,
    ckpt: Checkpointer,
    start_step: int,
    eval_fn: Callable[[Run], dict[str, float]] | None = None,
    data_state: Any = None,
) -> dict[str, float]:
    """Run `step_fn` from `start_step` to `cfg.train.total_steps`; return the last metrics.

    Dispatches step t before reading step t-1's metrics, so the host never stalls the
    device. Saves every `save_every` steps and at the end (with the data position
    `data_state`, a grain iterator), evaluating first when the save is an eval step.
    On SIGTERM (a cluster preemption) it saves after the current step, sets
    `run.preempted` and returns; rerunning resumes there.
    """
    t = run.cfg.train
    writer = MetricWriter(run.workdir / "tb", t.total_steps, start_step, t.progress)
    profile = ProfileWindow(run.workdir / "tb", t.profile_start, t.profile_steps)
    timer = StepTimer()
    preemption = Preemption()
    pending: tuple[int, dict] | None = None
    last: dict[str, float] = {}

    def flush() -> None:
        nonlocal pending, last
        if pending is not None:
            done, metrics = pending
            last = writer.train_step(done, jax.device_get(metrics), timer.lap())
            if last.get("skipped"):
                writer.text(f"step {done}: non-finite loss or gradient, update skipped")
            pending = None

    try:
        for step in range(start_step, t.total_steps):
            profile.before_step(step)
            batch = data_lib.to_global(next(batches), run.mesh)
            run.state, metrics = step_fn(run.state, batch, run.rest)
            flush()  # the previous step's metrics, read while this step runs
            pending = (step, metrics)
            profile.after_step(step, block_on=metrics)
            done = step + 1
            is_eval = eval_fn is not None and t.eval_every > 0 and done % t.eval_every == 0
            stop = preemption.reached(done)
            is_save = done % t.save_every == 0 or done == t.total_steps or stop
            eval_metrics = None
            if is_eval:
                flush()
                eval_metrics = eval_fn(run)
                writer.scalars(done, eval_metrics, prefix="eval")
                writer.text(f"step {done}: " + ", ".join(
                    f"eval/{k}={v:.4f}" for k, v in eval_metrics.items()))
            if is_save:
                metrics_for_best = None
                if eval_metrics is not None:
                    metrics_for_best = {f"eval/{k}": v for k, v in eval_metrics.items()}
                ckpt.save(done, run.state, data_state, metrics=metrics_for_best,
                          meta={"stage": run.cfg.stage, **prompt_features.meta(run.cfg)},
                          model_config=run.model_config)
            if stop:
                flush()
                writer.text(f"preempted: saved step {done}; rerun the same command to resume")
                run.preempted = True
                break
        flush()
    finally:
        ckpt.wait()
        writer.close()
        preemption.close()
    return last
