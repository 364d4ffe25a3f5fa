"""Meshes, logical-axis rules, and born-sharded models.

Parameters carry logical axis names (`vocab`, `embed`, `heads`, `kv_heads`, `mlp`, ...)
as `logical_axes` metadata; the rules below map them onto the mesh axes `data`, `fsdp`
and `tensor`. Model code never names a mesh axis. A logical axis whose size does not
divide the mesh axis (e.g. 4 kv heads on an 8-way tensor axis) is replicated instead.

Activations have their own rules (`activation_batch` -> (data, fsdp), ...): the model
calls `constrain(x, names)` on its embedding output, residual stream, attention
projections, logits and KV cache. It is a no-op outside a mesh context; `mesh_jit`
traces a function inside its mesh, so FSDP-sharded weights do not drag the
activations onto the hidden dimension (they stay split over the batch).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable, Sequence

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp", "tensor")

# logical axis -> mesh axis (or axes, or None for replicated)
Rules = tuple[tuple[str, str | tuple[str, ...] | None], ...]

PARAM_RULES: Rules = (
    ("vocab", "tensor"),
    ("embed", "fsdp"),
    ("embed_out", "tensor"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("mlp", "tensor"),
    ("head_dim", None),
    ("adaptor_in", None),
    ("norm", None),
    ("lora_rank", None),
)

ACTIVATION_RULES: Rules = (
    ("activation_batch", ("data", "fsdp")),
    ("activation_length", None),
    ("activation_embed", None),
    ("activation_heads", "tensor"),
    ("activation_kv_heads", "tensor"),
    ("activation_head_dim", None),
    ("activation_mlp", "tensor"),
    ("activation_vocab", "tensor"),
    ("cache_batch", ("data", "fsdp")),
    ("cache_length", None),
    ("cache_kv_heads", "tensor"),
    ("cache_head_dim", None),
)


class MeshError(ValueError):
    """The mesh shape does not fit the devices; the message names the field."""


@dataclasses.dataclass(frozen=True)
class MeshConfig:
    """Mesh shape. One axis may be -1: it takes whatever the device count leaves."""

    data: int = -1
    fsdp: int = 1
    tensor: int = 1

    def resolve(self, num_devices: int) -> tuple[int, int, int]:
        """The concrete (data, fsdp, tensor) sizes for `num_devices` devices."""
        sizes = {"data": self.data, "fsdp": self.fsdp, "tensor": self.tensor}
        free = [k for k, v in sizes.items() if v == -1]
        for name, value in sizes.items():
            if value == 0 or value < -1:
                raise MeshError(f"MeshConfig.{name} must be a positive size or -1, got {value}")
        if len(free) > 1:
            raise MeshError(f"MeshConfig: only one axis may be -1, got {', '.join(free)}")
        fixed = math.prod(v for v in sizes.values() if v != -1)
        if free:
            if num_devices % fixed:
                raise MeshError(
                    f"MeshConfig.{free[0]}=-1 cannot fill {num_devices} devices: the other "
                    f"axes multiply to {fixed}, which does not divide it"
                )
            sizes[free[0]] = num_devices // fixed
        elif fixed != num_devices:
            raise MeshError(
                f"MeshConfig: data*fsdp*tensor = {self.data}*{self.fsdp}*{self.tensor} = {fixed}"
                f", but {num_devices} devices are available"
            )
        return sizes["data"], sizes["fsdp"], sizes["tensor"]


def make_mesh(config: MeshConfig, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A (data, fsdp, tensor) mesh over `devices` (default: all devices, all hosts)."""
    devices = list(devices) if devices is not None else jax.devices()
    shape = config.resolve(len(devices))
    grid = np.asarray(devices, dtype=object).reshape(shape)
    return Mesh(grid, MESH_AXES)


def logical_to_spec(
    names: Sequence[str | None],
    rules: Rules,
    shape: Sequence[int] | None = None,
    mesh: Mesh | None = None,
) -> PartitionSpec:
    """PartitionSpec for an array whose axes have logical `names`.

    With `shape` and `mesh`, an axis is only split when the mesh axis size divides it,
    and a mesh axis is used at most once per array.
    """
    table = dict(rules)
    used: set[str] = set()
    spec: list[str | tuple[str, ...] | None] = []
    for i, name in enumerate(names):
        if name is not None and name not in table:
            raise KeyError(f"logical axis {name!r} has no sharding rule")
        target = table.get(name) if name is not None else None
        axes = (target,) if isinstance(target, str) else tuple(target or ())
        axes = tuple(a for a in axes if a not in used)
        if mesh is not None:
            axes = tuple(a for a in axes if mesh.shape[a] > 1)
            if shape is not None and shape[i] % math.prod(mesh.shape[a] for a in axes):
                axes = ()
        used.update(axes)
        spec.append(None if not axes else axes[0] if len(axes) == 1 else axes)
    return PartitionSpec(*spec)


def _logical_axes(variable: nnx.Variable) -> tuple[str | None, ...]:
    axes = variable.get_metadata().get("logical_axes")
    return tuple(axes) if axes is not None else (None,) * len(variable.shape)


def state_shardings(state: nnx.State, mesh: Mesh, rules: Rules = PARAM_RULES) -> nnx.State:
    """A NamedSharding for every variable of `state` (concrete or abstract)."""

    def one(variable: nnx.Variable) -> nnx.Variable:
        spec = logical_to_spec(_logical_axes(variable), rules, variable.shape, mesh)
        return variable.replace(NamedSharding(mesh, spec))

    return jax.tree.map(one, state, is_leaf=lambda x: isinstance(x, nnx.Variable))


def logical_specs(state: nnx.State) -> dict[str, tuple[str | None, ...]]:
    """'path.to.param' -> logical axis names, for every variable (golden tests, docs)."""
    flat = nnx.to_flat_state(state)
    return {".".join(map(str, path)): _logical_axes(v) for path, v in flat}


def create_sharded(
    constructor: Callable[[], nnx.Module], mesh: Mesh, rules: Rules = PARAM_RULES
) -> nnx.Module:
    """Build a module with every parameter created directly on its shards.

    The model is traced abstractly first; the jitted constructor then writes each array
    into its `NamedSharding`, so no replicated copy ever exists.
    """
    abstract = nnx.eval_shape(constructor)
    shardings = state_shardings(nnx.state(abstract), mesh, rules)

    @jax.jit
    def init() -> nnx.State:
        state = nnx.state(constructor())
        return jax.lax.with_sharding_constraint(state, shardings)

    graphdef = nnx.graphdef(abstract)
    return nnx.merge(graphdef, init())


def shard_module(module: nnx.Module, mesh: Mesh, rules: Rules = PARAM_RULES) -> None:
    """Move an existing module's variables onto their shards (in place)."""
    state = nnx.state(module)
    nnx.update(module, jax.device_put(state, state_shardings(state, mesh, rules)))


def batch_sharding(mesh: Mesh, ndim: int) -> NamedSharding:
    """Sharding of a [B, ...] input: batch over (data, fsdp), the rest replicated."""
    names = ("activation_batch",) + (None,) * (ndim - 1)
    return NamedSharding(mesh, logical_to_spec(names, ACTIVATION_RULES))


def replicated_batch_to_global(x: np.ndarray, mesh: Mesh) -> jax.Array:
    """A global array split over the batch from host data every process holds in full
    (the same prompts everywhere); rows that do not divide the mesh stay replicated."""
    names = ("activation_batch",) + (None,) * (x.ndim - 1)
    spec = logical_to_spec(names, ACTIVATION_RULES, x.shape, mesh)
    return jax.make_array_from_callback(x.shape, NamedSharding(mesh, spec), lambda i: x[i])


def constrain(x: jax.Array, names: Sequence[str | None]) -> jax.Array:
    """Pin activation `x` (axes named by `names`) to its mesh layout, if a mesh is set.

    Uses the mesh of the surrounding `jax.set_mesh` context (see `mesh_jit`); axes the
    mesh does not divide stay replicated, so small batches still trace.
    """
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty:
        return x
    spec = logical_to_spec(names, ACTIVATION_RULES, x.shape, mesh)
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec))


def mesh_of(tree) -> Mesh | None:
    """The mesh the arrays of `tree` are laid out on (None for single-device arrays)."""
    for leaf in jax.tree.leaves(tree):
        spec = getattr(leaf, "sharding", None)
        if isinstance(spec, NamedSharding) and isinstance(spec.mesh, Mesh):
            return spec.mesh
    return None


class mesh_jit:  # noqa: N801 (used like jax.jit)
    """`jax.jit(fn, **kwargs)` traced, lowered and called inside `mesh`'s context.

    The context makes the model's `constrain` calls act; outside it they are no-ops.
    `.lower(*abstract_args)` is what `launch/plan.py` compiles.
    """

    def __init__(self, fn: Callable, mesh: Mesh | None, **jit_kwargs):
        self.mesh = mesh
        self.jitted = jax.jit(fn, **jit_kwargs)

    def _context(self):
        return jax.set_mesh(self.mesh) if self.mesh is not None else contextlib.nullcontext()

    def __call__(self, *args, **kwargs):
        with self._context():
            return self.jitted(*args, **kwargs)

    def lower(self, *args, **kwargs):
        with self._context():
            return self.jitted.lower(*args, **kwargs)
