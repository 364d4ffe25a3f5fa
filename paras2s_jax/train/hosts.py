"""Multi-process agreement: every process runs the same programs on the same decisions.

In a multi-host job each process runs the same Python program and every jitted call
is a collective over all devices, so two processes that take different branches
(one pads to another bucket, skips a chunk another samples, saves a checkpoint the
other does not) wait for each other forever. These helpers keep such decisions common.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np


def process_rows(batch: dict[str, np.ndarray], process_index: int | None = None,
                 process_count: int | None = None) -> dict[str, np.ndarray]:
    """This process's block of rows (the p-th of P equal blocks) of a global host batch.

    The global batch is laid out (and padded to its bucket) the same way on every
    process, so the shares agree in shape, and `data.to_global` of the shares is the
    host batch itself, row for row.
    """
    pi = jax.process_index() if process_index is None else process_index
    pc = jax.process_count() if process_count is None else process_count
    for key, value in batch.items():
        if len(value) % pc:
            raise ValueError(f"batch field {key!r}: {len(value)} rows do not split over "
                             f"{pc} processes")
    return {k: np.split(np.asarray(v), pc)[pi] for k, v in batch.items()}


def host_value(x: Any) -> np.ndarray:
    """The whole value of an array on every process (gathered if it spans processes)."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(jax.device_get(x))


def agreed(value: Any) -> Any:
    """Process 0's `value` (a bool, number or NumPy array) on every process.

    For decisions read from a file system that processes may see at different
    moments (does a chunk or a checkpoint exist yet?).
    """
    if jax.process_count() == 1:
        return value
    from jax.experimental import multihost_utils

    out = multihost_utils.broadcast_one_to_all(np.asarray(value))
    return type(value)(out) if isinstance(value, (bool, int, float)) else out
