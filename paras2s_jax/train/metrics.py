"""Observability: TensorBoard scalars, a profiler window, a progress bar, NaN bookkeeping.

Everything here runs on the host after the device has moved on (the loop dispatches
step t before it reads step t-1's metrics), and only process 0 writes.
"""

from __future__ import annotations

import math
import signal
import time
from collections.abc import Mapping
from pathlib import Path

import jax
import numpy as np


class MetricWriter:
    """Scalars to TensorBoard (tensorboardX) and a tqdm bar; a no-op on processes > 0."""

    def __init__(self, logdir: str | Path, total_steps: int, start_step: int = 0,
                 progress: bool = True):
        self.active = jax.process_index() == 0
        self.skipped_total = 0
        self._writer = None
        self._bar = None
        if not self.active:
            return
        from tensorboardX import SummaryWriter  # no TensorFlow needed

        self._writer = SummaryWriter(str(logdir))
        if progress:
            from tqdm import tqdm

            self._bar = tqdm(total=total_steps, initial=start_step, unit="step",
                             dynamic_ncols=True)

    def scalars(self, step: int, values: Mapping[str, float], prefix: str = "train") -> None:
        """Write `values` at `step` under `prefix/`."""
        if not self._writer:
            return
        for name, value in values.items():
            self._writer.add_scalar(f"{prefix}/{name}", float(value), step)

    def train_step(self, step: int, metrics: Mapping[str, np.ndarray | float],
                   step_time: float) -> dict[str, float]:
        """Record one finished step's metrics (host values) and advance the bar."""
        values = {k: float(v) for k, v in metrics.items()}
        values["step_time_s"] = step_time
        tokens = values.get("tokens", 0.0)
        values["tokens_per_s"] = tokens / step_time if step_time > 0 else 0.0
        self.skipped_total += int(values.get("skipped", 0))
        values["skipped_total"] = self.skipped_total
        self.scalars(step, values)
        if self._bar is not None:
            loss = values.get("loss", math.nan)
            self._bar.set_postfix(loss=f"{loss:.4f}", skipped=self.skipped_total, refresh=False)
            self._bar.update(1)
        return values

    def text(self, message: str) -> None:
        """A line that does not break the progress bar."""
        if not self.active:
            return
        if self._bar is not None:
            self._bar.write(message)
        else:
            print(message, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        if self._writer is not None:
            self._writer.flush()
            self._writer.close()


class ProfileWindow:
    """A `jax.profiler` trace of steps [start, start + num_steps), viewable in TensorBoard."""

    def __init__(self, logdir: str | Path, start: int, num_steps: int):
        self.logdir, self.start, self.stop = str(logdir), start, start + num_steps
        self.enabled = num_steps > 0 and start >= 0
        self.running = False

    def before_step(self, step: int) -> None:
        if self.enabled and not self.running and step == self.start:
            jax.profiler.start_trace(self.logdir)
            self.running = True

    def after_step(self, step: int, block_on=None) -> None:
        if self.running and step + 1 >= self.stop:
            if block_on is not None:
                jax.block_until_ready(block_on)  # the trace should contain the device work
            jax.profiler.stop_trace()
            self.running = False


class StepTimer:
    """Wall time between consecutive reads of step metrics."""

    def __init__(self) -> None:
        self._last = time.perf_counter()

    def lap(self) -> float:
        now = time.perf_counter()
        dt, self._last = now - self._last, now
        return dt


class Preemption:
    """Did the cluster ask this job to stop (SIGTERM)? Checked once per step.

    Multi-process jobs use JAX's preemption sync point, so every process stops (and
    saves) at the same step; a single process installs its own SIGTERM handler.
    """

    def __init__(self) -> None:
        self._flag = False
        self._previous = None
        if jax.process_count() == 1:
            try:
                self._previous = signal.signal(signal.SIGTERM, self._on_term)
            except ValueError:  # not the main thread: leave signals alone
                self._previous = None

    def _on_term(self, signum, frame) -> None:
        self._flag = True

    def reached(self, step: int) -> bool:
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            try:
                return bool(multihost_utils.reached_preemption_sync_point(step))
            except RuntimeError:  # preemption service off
                return False
        return self._flag

    def close(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None
