"""The Qwen2 decoder stack of the Qwen2.5-Omni thinker and talker, with TMRoPE and a KV cache.

The layers are `paras2s_jax.model.layers.DecoderLayer` (GQA with q/k/v biases, SwiGLU,
RMSNorm); only the rotary tables differ from Kimi-Audio's trunk (three position rows,
see `rope.py`). One `__call__` serves full sequences (no cache) and prefill/decode (the
S new tokens are written into an `OmniCache` at its next free slot).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx, struct

from paras2s_jax.model.layers import (
    CACHE_AXES,
    RESIDUAL_AXES,
    AttentionMask,
    DecoderLayer,
    Embed,
    RMSNorm,
    checkpoint_policy,
    run_layers,
)
from paras2s_jax.model.qwen_omni.config import TalkerConfig, ThinkerTextConfig
from paras2s_jax.model.qwen_omni.rope import mrope_tables, rope_index
from paras2s_jax.sharding import constrain

Config = ThinkerTextConfig | TalkerConfig


@struct.dataclass
class OmniCache:
    """Keys/values of every layer and where each row stands.

    keys, values: per layer [B, T, K, D]; valid: bool[B, T], slots holding real tokens;
    next_position: int32[B], rotary position of each row's next real token (real tokens
    so far plus the row's rope delta); index: int32[], the next free slot.
    """

    keys: tuple[jax.Array, ...]
    values: tuple[jax.Array, ...]
    valid: jax.Array
    next_position: jax.Array
    index: jax.Array

    @classmethod
    def init(cls, config: Config, batch: int, max_length: int,
             dtype: jnp.dtype | None = None) -> OmniCache:
        """An empty cache with room for `max_length` tokens per row."""
        shape = (batch, max_length, config.num_kv_heads, config.head_dim)
        zeros = lambda: constrain(jnp.zeros(shape, dtype or config.compute_dtype),  # noqa: E731
                                  CACHE_AXES)
        return cls(keys=tuple(zeros() for _ in range(config.num_layers)),
                   values=tuple(zeros() for _ in range(config.num_layers)),
                   valid=jnp.zeros((batch, max_length), bool),
                   next_position=jnp.zeros((batch,), jnp.int32),
                   index=jnp.zeros((), jnp.int32))


def default_positions(attention_mask: jax.Array, cache: OmniCache | None) -> jax.Array:
    """int32[3, B, S]: without a cache the prompt's `rope_index`; with one, each row's
    real tokens continue from its `next_position` on all three rows."""
    if cache is None:
        return rope_index(attention_mask)[0]
    mask = attention_mask.astype(bool)
    counted = cache.next_position[:, None] + jnp.cumsum(mask, axis=1, dtype=jnp.int32) - 1
    return jnp.broadcast_to(jnp.where(mask, counted, 1), (3, *mask.shape))


class OmniDecoder(nnx.Module):
    """`embed_tokens` [V, embed_dim], the decoder layers and the final RMSNorm.

    The embedding table is only held here (HF keeps it under `model.`); the caller
    embeds and mixes inputs, then runs the stack on hidden-size embeddings.
    """

    def __init__(self, config: Config, embed_dim: int, *, rngs: nnx.Rngs):
        self.config = config
        c, pdt = config, config.storage_dtype
        self.embed_tokens = Embed(c.vocab_size, embed_dim, param_dtype=pdt, rngs=rngs)
        self.layers = nnx.List([
            DecoderLayer(c.hidden_size, c.intermediate_size, c.num_heads, c.num_kv_heads,
                         c.rms_norm_eps, param_dtype=pdt, rngs=rngs, attention="xla",
                         head_dim=c.head_dim)
            for _ in range(c.num_layers)])
        self.norm = RMSNorm(c.hidden_size, c.rms_norm_eps, param_dtype=pdt)

    def __call__(
        self, x: jax.Array, *, attention_mask: jax.Array | None = None,
        positions: jax.Array | None = None, cache: OmniCache | None = None,
    ) -> tuple[jax.Array, OmniCache | None]:
        """Normalised hidden states [B, S, E] of inputs x: [B, S, E], and the updated cache.

        attention_mask: bool[B, S] (False on padding); positions: int[3, B, S], by
        default `default_positions`. With `cache`, the S tokens are appended to it.
        """
        c = self.config
        batch, length = x.shape[:2]
        if attention_mask is None:
            attention_mask = jnp.ones((batch, length), bool)
        attention_mask = attention_mask.astype(bool)
        if positions is None:
            positions = default_positions(attention_mask, cache)
        cos, sin = mrope_tables(positions, c.head_dim, c.rope_theta, c.mrope_section,
                                c.compute_dtype)
        if cache is None:
            mask, index = AttentionMask(attention_mask), None
            kv = [None] * c.num_layers
        else:
            key_valid = jax.lax.dynamic_update_slice(cache.valid, attention_mask, (0, cache.index))
            mask, index = AttentionMask(key_valid, cache.index + jnp.arange(length)), cache.index
            kv = list(zip(cache.keys, cache.values, strict=True))
        h = constrain(x.astype(c.compute_dtype), RESIDUAL_AXES)
        h = run_layers(list(self.layers), h, kv, 0, cos=cos, sin=sin, mask=mask,
                       policy=checkpoint_policy(c.remat), scan=length > 1,
                       dtype=c.compute_dtype, cache_index=index)
        h = constrain(self.norm(h), RESIDUAL_AXES)
        if cache is None:
            return h, None
        seen = jnp.max(jnp.where(attention_mask, positions.max(axis=0) + 1, 0), axis=1)
        return h, OmniCache(keys=tuple(k for k, _ in kv), values=tuple(v for _, v in kv),
                            valid=mask.key_valid,
                            next_position=jnp.maximum(cache.next_position, seen),
                            index=cache.index + length)
