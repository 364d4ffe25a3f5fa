"""LoRA adapters on selected projections, with the base weights frozen.

`attach_lora(model, LoRAConfig(...))` adds to every `Dense` whose path ends in one of
`targets` (e.g. "q_proj", "v_proj") a low-rank update y += (x·A)·B · alpha/rank, with
A ~ N(0, 1/in) and B = 0 so the adapted model starts equal to the base. Adapters are
`nnx.LoRAParam`s: train them with `nnx.Optimizer(model, tx, wrt=nnx.LoRAParam)` and the
base stays frozen. The HF key map skips them (they are not in HF checkpoints).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from flax import nnx

from paras2s_jax.model.layers import Dense


@dataclasses.dataclass(frozen=True)
class LoRAConfig:
    """Where and how large the adapters are."""

    rank: int = 16
    alpha: float = 32.0
    targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    # Top-level submodules that get adapters (empty: all), e.g. ("thinker", "talker") so
    # that a frozen audio encoder needs no backward pass.
    within: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.rank <= 0:
            raise ValueError(f"LoRAConfig.rank must be > 0, got {self.rank}")
        if not self.targets:
            raise ValueError("LoRAConfig.targets must name at least one projection")


class LoRA(nnx.Module):
    """The low-rank pair A: [*in, r], B: [r, *out] of one projection."""

    def __init__(self, dense: Dense, config: LoRAConfig, *, rngs: nnx.Rngs):
        shape = dense.kernel.shape
        in_dims, out_dims = shape[: dense.num_in], shape[dense.num_in :]
        axes = dense.kernel.get_metadata()["logical_axes"]
        fan_in = math.prod(in_dims)
        a = jax.random.normal(rngs.params(), (*in_dims, config.rank), jnp.float32)
        self.a = nnx.LoRAParam(
            a / math.sqrt(fan_in), logical_axes=(*axes[: dense.num_in], "lora_rank")
        )
        self.b = nnx.LoRAParam(
            jnp.zeros((config.rank, *out_dims), jnp.float32),
            logical_axes=("lora_rank", *axes[dense.num_in :]),
        )
        self.scale = config.alpha / config.rank

    def __call__(self, x: jax.Array, num_in: int) -> jax.Array:
        h = jnp.tensordot(x, self.a[...].astype(x.dtype), axes=num_in)
        return jnp.tensordot(h, self.b[...].astype(x.dtype), axes=1) * self.scale


def attach_lora(model: nnx.Module, config: LoRAConfig, *, rngs: nnx.Rngs) -> int:
    """Attach adapters to the targeted projections (inside `config.within`) in place;
    returns how many."""
    count = 0
    for path, node in list(nnx.iter_graph(model)):
        inside = not config.within or (path and str(path[0]) in config.within)
        if isinstance(node, Dense) and inside and str(path[-1]) in config.targets:
            node.lora = nnx.data(LoRA(node, config, rngs=rngs))
            count += 1
    if not count:
        raise ValueError(f"LoRAConfig.targets {config.targets} matched no projection"
                         + (f" within {config.within}" if config.within else ""))
    return count
