"""Fill an abstract (eval_shape) module with host arrays, each straight onto its shards."""

from __future__ import annotations

from collections.abc import Iterable

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, SingleDeviceSharding

from paras2s_jax.sharding import PARAM_RULES, Rules, state_shardings

Path = tuple[str | int, ...]


def place_on_shards(
    abstract: nnx.Module,
    arrays: Iterable[tuple[Path, np.ndarray]],
    mesh: Mesh | None = None,
    rules: Rules = PARAM_RULES,
) -> nnx.Module:
    """The module of `abstract` with the given (state path, host array) values.

    Arrays may be lazy views (memory maps, strided transposes): each device copies only
    its own slice, cast to the parameter's dtype, so a tensor is never materialised
    whole on the host when the mesh splits it. Without a mesh, everything goes to the
    first device. Every variable must receive a value.
    """
    graphdef, state = nnx.split(abstract)
    flat = dict(nnx.to_flat_state(state))
    shardings = dict(nnx.to_flat_state(state_shardings(state, mesh, rules))) if mesh else None
    device = SingleDeviceSharding(jax.devices()[0])
    filled = set()
    for path, view in arrays:
        variable = flat[path]
        sharding = shardings[path].get_value() if shardings else device
        array = jax.make_array_from_callback(
            tuple(variable.shape), sharding,
            lambda index, v=view, dt=variable.dtype: np.asarray(v[index], dtype=dt),
        )
        flat[path] = variable.replace(array)
        filled.add(path)
    missing = [".".join(map(str, p)) for p in flat if p not in filled]
    if missing:
        raise ValueError(f"no value for {len(missing)} variable(s): {', '.join(missing[:5])}")
    return nnx.merge(graphdef, nnx.from_flat_state(list(flat.items())))
