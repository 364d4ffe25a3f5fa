"""Checkpoints of the whole training run with Orbax: state, data position, metadata.

One checkpoint step directory holds the items
    params/        parameters (the layout of `paras2s_jax.checkpoint.orbax_io`, so
                   `restore_model(step_dir)` loads a trained model for sampling/eval)
    model_config/  the KimiAudioConfig as JSON (when given)
    train_state/   optimizer state, step, RNG
    data/          the grain iterator state of every process
    meta/          a small JSON record
Saves are asynchronous.
Kept: the last `keep_last` checkpoints plus the `keep_best` best by an eval metric.
Restores go into the live sharded abstract state, so arrays come back on their shards.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp
from flax import nnx
from orbax.checkpoint import checkpoint_managers as cm

from paras2s_jax.checkpoint.orbax_io import CONFIG_ITEM, META_ITEM, PARAMS_ITEM, config_to_json


@dataclasses.dataclass(frozen=True)
class CheckpointConfig:
    """Where and what to keep."""

    directory: str
    keep_last: int = 2  # most recent checkpoints kept
    keep_best: int = 1  # best checkpoints by `best_metric` kept (0: none)
    best_metric: str = "eval/loss"  # a key of the metrics passed to `save`
    best_mode: str = "min"  # "min" or "max"
    async_save: bool = True

    def __post_init__(self) -> None:
        if self.best_mode not in ("min", "max"):
            raise ValueError(f"checkpoint.best_mode must be 'min' or 'max', got {self.best_mode!r}")
        if self.keep_last < 1:
            raise ValueError(f"checkpoint.keep_last must be >= 1, got {self.keep_last}")


class Checkpointer:
    """A `CheckpointManager` for train state + grain iterator + metadata."""

    def __init__(self, config: CheckpointConfig):
        self.config = config
        policies: list[Any] = [cm.LatestN(n=config.keep_last)]
        if config.keep_best:
            metric = config.best_metric
            policies.append(cm.BestN(
                get_metric_fn=lambda m: m[metric],
                # BestN keeps the highest values unless reversed.
                reverse=config.best_mode == "min",
                n=config.keep_best,
                keep_checkpoints_without_metrics=False,
            ))
        options = ocp.CheckpointManagerOptions(
            preservation_policy=cm.AnyPreservationPolicy(policies),
            enable_async_checkpointing=config.async_save,
            create=True,
            # Also set so the manager writes metrics to disk: ranks survive a restart.
            best_fn=(lambda m: m[config.best_metric]) if config.keep_best else None,
            best_mode=config.best_mode,
        )
        self.manager = ocp.CheckpointManager(
            Path(config.directory).absolute(), options=options,
            item_handlers={
                PARAMS_ITEM: ocp.StandardCheckpointHandler(),
                CONFIG_ITEM: ocp.JsonCheckpointHandler(),
                "train_state": ocp.StandardCheckpointHandler(),
                "data": grain.checkpoint.CheckpointHandler(),
                META_ITEM: ocp.JsonCheckpointHandler(),
            },
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self.manager.all_steps())

    def best_step(self) -> int | None:
        """The kept step with the best `best_metric` (None if none has it)."""
        scored = []
        for step in self.manager.all_steps():
            metrics = self.manager.metrics(step) or {}
            if self.config.best_metric in metrics:
                scored.append((float(metrics[self.config.best_metric]), step))
        if not scored:
            return None
        return (min if self.config.best_mode == "min" else max)(scored)[1]

    def save(self, step: int, state: dict, data_iter: Any | None = None,
             meta: dict | None = None, metrics: dict[str, float] | None = None,
             model_config: Any | None = None) -> None:
        """Start an async save of `state` (a dict with "params") and the data position."""
        rest = {k: v for k, v in state.items() if k != "params"}
        args = {PARAMS_ITEM: ocp.args.StandardSave(_pure(state["params"])),
                "train_state": ocp.args.StandardSave(rest),
                META_ITEM: ocp.args.JsonSave(dict(meta or {}, step=step))}
        if model_config is not None:
            args[CONFIG_ITEM] = ocp.args.JsonSave(config_to_json(model_config))
        if data_iter is not None:
            args["data"] = grain.checkpoint.CheckpointSave(data_iter)
        metrics = None if metrics is None else {k: float(v) for k, v in metrics.items()}
        self.manager.save(step, args=ocp.args.Composite(**args), metrics=metrics, force=True)

    def restore(self, step: int, abstract_state: Any, data_iter: Any | None = None) -> tuple:
        """(state, meta) at `step`; `data_iter` is moved to the saved position in place.

        `abstract_state`: `jax.ShapeDtypeStruct`s with shardings (see `abstract_like`).
        """
        rest = {k: v for k, v in abstract_state.items() if k != "params"}
        args = {PARAMS_ITEM: ocp.args.StandardRestore(_pure(abstract_state["params"])),
                "train_state": ocp.args.StandardRestore(rest),
                META_ITEM: ocp.args.JsonRestore()}
        if data_iter is not None:
            args["data"] = grain.checkpoint.CheckpointRestore(data_iter)
        out = self.manager.restore(step, args=ocp.args.Composite(**args))
        state = dict(out["train_state"])
        state["params"] = _unpure(abstract_state["params"], out[PARAMS_ITEM])
        return state, out[META_ITEM]

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def _pure(params: Any) -> Any:
    """Plain nested dicts of arrays (the on-disk parameter layout)."""
    return nnx.to_pure_dict(params) if isinstance(params, nnx.State) else params


def _unpure(template: Any, pure: Any) -> Any:
    """`pure` arrays put back into the structure of `template` (an nnx.State or a dict)."""
    if not isinstance(template, nnx.State):
        return pure
    state = jax.tree.map(lambda x: x, template)  # a fresh State; the template stays intact
    nnx.replace_by_pure_dict(state, pure)
    return state


def abstract_like(state: Any, shardings: Any) -> Any:
    """ShapeDtypeStructs of `state` placed with `shardings` (a restore target)."""
    return jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state, shardings
    )
