"""Checkpoints of the whole training run with Orbax: state, data position, metadata.

One checkpoint = the train state (params, optimizer state, step, RNG), the grain
iterator state of every process, and a small JSON record. Saves are asynchronous.
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
from orbax.checkpoint import checkpoint_managers as cm


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
                "state": ocp.StandardCheckpointHandler(),
                "data": grain.checkpoint.CheckpointHandler(),
                "meta": ocp.JsonCheckpointHandler(),
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

    def save(self, step: int, state: Any, data_iter: Any | None = None,
             meta: dict | None = None, metrics: dict[str, float] | None = None) -> None:
        """Start an async save of `state` (and the data position) at `step`."""
        args = {"state": ocp.args.StandardSave(state),
                "meta": ocp.args.JsonSave(dict(meta or {}, step=step))}
        if data_iter is not None:
            args["data"] = grain.checkpoint.CheckpointSave(data_iter)
        metrics = None if metrics is None else {k: float(v) for k, v in metrics.items()}
        self.manager.save(step, args=ocp.args.Composite(**args), metrics=metrics, force=True)

    def restore(self, step: int, abstract_state: Any, data_iter: Any | None = None) -> tuple:
        """(state, meta) at `step`; `data_iter` is moved to the saved position in place.

        `abstract_state`: `jax.ShapeDtypeStruct`s with shardings (see `abstract_like`).
        """
        args = {"state": ocp.args.StandardRestore(abstract_state),
                "meta": ocp.args.JsonRestore()}
        if data_iter is not None:
            args["data"] = grain.checkpoint.CheckpointRestore(data_iter)
        out = self.manager.restore(step, args=ocp.args.Composite(**args))
        return out["state"], out["meta"]

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def abstract_like(state: Any, shardings: Any) -> Any:
    """ShapeDtypeStructs of `state` placed with `shardings` (a restore target)."""
    return jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state, shardings
    )
