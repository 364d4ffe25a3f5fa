"""Building blocks of the Qwen2.5 / Kimi-Audio decoder in Flax NNX.

Every parameter carries `logical_axes` metadata (`embed`, `heads`, `kv_heads`,
`head_dim`, `mlp`, `vocab`, ...); `paras2s_jax.sharding` maps those names onto a mesh.
Module and attribute names mirror the Hugging Face checkpoint (`self_attn.q_proj`,
`mlp.gate_proj`, `input_layernorm`, ...) so the key map stays mechanical.

Shapes in docstrings: B batch, S new tokens, T key/cache length, E hidden, N query
heads, K kv heads, D head dim, F MLP width, V vocabulary.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from paras2s_jax.sharding import constrain

_INIT_STD = 0.02  # HF `initializer_range`
# Logical names of activations (see `paras2s_jax.sharding.ACTIVATION_RULES`).
RESIDUAL_AXES = ("activation_batch", "activation_length", "activation_embed")
LOGIT_AXES = ("activation_batch", "activation_length", "activation_vocab")
CACHE_AXES = ("cache_batch", "cache_length", "cache_kv_heads", "cache_head_dim")


def _normal(rngs: nnx.Rngs, shape: Sequence[int], dtype: jnp.dtype) -> jax.Array:
    return (_INIT_STD * jax.random.normal(rngs.params(), tuple(shape), jnp.float32)).astype(dtype)


def _cpu_dot(x: jax.Array, kernel: jax.Array, num_in: int,
             out_dtype: jnp.dtype | None) -> jax.Array:
    """`tensordot(x, kernel, num_in)`, steered to XLA's fast CPU kernels.

    On the CPU backend without a mesh, the product runs as one 2-D matmul [rows, in] x
    [in, out]: contracting the batch and length axes of a 3-D activation in the weight
    gradient makes XLA transpose that gradient inside its elementwise producer, with
    strided reads (~30% of a training step at small widths). 16-bit products accumulate
    in float32 and round once (a 16-bit result type selects a kernel 2-6x slower), and a
    single 16-bit row is padded to two (one row selects a slow matrix-vector path;
    padding cannot change the real row's result). Other backends, and products under a
    mesh (whose sharded axes should not be merged), take the plain product."""
    half = x.dtype in (jnp.bfloat16, jnp.float16)
    meshed = not jax.sharding.get_abstract_mesh().empty
    if jax.default_backend() != "cpu" or (meshed and not half):
        return jnp.tensordot(x, kernel, axes=num_in, preferred_element_type=out_dtype)
    lead, tail = x.shape[: x.ndim - num_in], x.shape[x.ndim - num_in:]
    out = kernel.shape[num_in:]
    if not meshed:
        x = x.reshape(-1, math.prod(tail))
        kernel = kernel.reshape(math.prod(tail), math.prod(out))
        num_in = 1
    one_row = half and all(n == 1 for n in lead)
    if one_row:
        x = jnp.pad(x.reshape((1, *x.shape[x.ndim - num_in:])), [(0, 1)] + [(0, 0)] * num_in)
    y = jnp.tensordot(x, kernel, axes=num_in,
                      preferred_element_type=jnp.float32 if half else out_dtype)
    y = y[:1] if one_row else y
    return y.reshape(lead + out).astype(out_dtype or x.dtype)


class Dense(nnx.Module):
    """`y = x · kernel (+ bias)`, contracting the trailing `len(in_dims)` axes of x.

    kernel: [*in_dims, *out_dims]; bias: [*out_dims]. Multi-axis shapes keep heads as
    their own axis so they can be sharded (q_proj kernel is [E, N, D]).
    """

    def __init__(
        self,
        in_dims: Sequence[int],
        out_dims: Sequence[int],
        axes: Sequence[str | None],
        *,
        use_bias: bool,
        param_dtype: jnp.dtype,
        rngs: nnx.Rngs,
    ):
        in_dims, out_dims = tuple(in_dims), tuple(out_dims)
        self.num_in = len(in_dims)
        self.kernel = nnx.Param(
            _normal(rngs, in_dims + out_dims, param_dtype), logical_axes=tuple(axes)
        )
        self.bias = (
            nnx.Param(jnp.zeros(out_dims, param_dtype), logical_axes=tuple(axes[self.num_in :]))
            if use_bias
            else None
        )
        self.lora = None  # a `paras2s_jax.model.lora.LoRA` once adapters are attached

    def __call__(self, x: jax.Array, out_dtype: jnp.dtype | None = None) -> jax.Array:
        kernel = self.kernel[...].astype(x.dtype)
        y = _cpu_dot(x, kernel, self.num_in, out_dtype)
        if self.bias is not None:
            y = y + self.bias[...].astype(y.dtype)
        if self.lora is not None:
            y = y + self.lora(x, self.num_in).astype(y.dtype)
        return y


class Embed(nnx.Module):
    """Token embedding table [V, E]."""

    def __init__(self, vocab: int, dim: int, *, param_dtype: jnp.dtype, rngs: nnx.Rngs):
        self.embedding = nnx.Param(
            _normal(rngs, (vocab, dim), param_dtype), logical_axes=("vocab", "embed")
        )

    def __call__(self, ids: jax.Array, dtype: jnp.dtype) -> jax.Array:
        return jnp.take(self.embedding[...], ids, axis=0).astype(dtype)


class RMSNorm(nnx.Module):
    """Qwen2 RMSNorm: normalise in float32, cast back, then scale (no +1 offset)."""

    def __init__(self, dim: int, eps: float, *, param_dtype: jnp.dtype):
        self.eps = eps
        self.weight = nnx.Param(jnp.ones((dim,), param_dtype), logical_axes=("norm",))

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        x32 = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return self.weight[...].astype(x.dtype) * x32.astype(x.dtype)


class LayerNorm(nnx.Module):
    """LayerNorm with scale and bias (the last layer of the Whisper-feature adaptor)."""

    def __init__(self, dim: int, eps: float, *, param_dtype: jnp.dtype):
        self.eps = eps
        self.weight = nnx.Param(jnp.ones((dim,), param_dtype), logical_axes=("norm",))
        self.bias = nnx.Param(jnp.zeros((dim,), param_dtype), logical_axes=("norm",))

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        mean = jnp.mean(x32, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
        y = (x32 - mean) * jax.lax.rsqrt(var + self.eps)
        y = y * self.weight[...].astype(jnp.float32) + self.bias[...].astype(jnp.float32)
        return y.astype(x.dtype)


def rope_tables(
    positions: jax.Array, head_dim: int, theta: float, dtype: jnp.dtype
) -> tuple[jax.Array, jax.Array]:
    """cos, sin: [B, S, D] for integer positions [B, S], computed in float32 (HF layout)."""
    inv_freq = 1.0 / (theta ** (jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim))
    freqs = positions.astype(jnp.float32)[..., None] * inv_freq
    angles = jnp.concatenate([freqs, freqs], axis=-1)
    return jnp.cos(angles).astype(dtype), jnp.sin(angles).astype(dtype)


def apply_rope(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """Rotate-half RoPE on x: [B, S, H, D] (not the interleaved variant)."""
    half = x.shape[-1] // 2
    rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos[:, :, None, :] + rotated * sin[:, :, None, :]


class AttentionMask(NamedTuple):
    """Which keys each query sees.

    key_valid: bool[B, T], False on padding (and on empty cache slots);
    query_slot: int32[S], the cache slots of the queries, or None when the keys are the
    queries' own sequence (plain causal attention: no [B, S, T] mask is built, so a
    fused kernel can skip the masked blocks).
    """

    key_valid: jax.Array
    query_slot: jax.Array | None = None


def attention_implementation(setting: str, dtype: jnp.dtype) -> str:
    """"xla" or "cudnn" for `KimiAudioConfig.attention` ("auto": cuDNN flash attention
    on GPUs in 16-bit compute, where it exists; XLA elsewhere)."""
    if setting != "auto":
        return setting
    half = jnp.dtype(dtype) in (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))
    return "cudnn" if jax.default_backend() == "gpu" and half else "xla"


def _heads(x: jax.Array, kind: str) -> jax.Array:
    return constrain(x, ("activation_batch", "activation_length", kind, "activation_head_dim"))


class Attention(nnx.Module):
    """Grouped-query self-attention with q/k/v biases and no output bias (Qwen2)."""

    def __init__(
        self, hidden: int, num_heads: int, num_kv_heads: int, *,
        param_dtype: jnp.dtype, rngs: nnx.Rngs, implementation: str = "auto",
        head_dim: int | None = None,
    ):
        """head_dim defaults to hidden // num_heads (Qwen2); a model whose heads are
        wider or narrower than that (the Qwen2.5-Omni talker) names it."""
        head_dim = head_dim or hidden // num_heads
        self.num_heads, self.num_kv_heads, self.head_dim = num_heads, num_kv_heads, head_dim
        self.implementation = implementation
        dense = dict(param_dtype=param_dtype, rngs=rngs)
        self.q_proj = Dense(
            (hidden,), (num_heads, head_dim), ("embed", "heads", "head_dim"), use_bias=True, **dense
        )
        self.k_proj = Dense(
            (hidden,), (num_kv_heads, head_dim), ("embed", "kv_heads", "head_dim"),
            use_bias=True, **dense,
        )
        self.v_proj = Dense(
            (hidden,), (num_kv_heads, head_dim), ("embed", "kv_heads", "head_dim"),
            use_bias=True, **dense,
        )
        self.o_proj = Dense(
            (num_heads, head_dim), (hidden,), ("heads", "head_dim", "embed"),
            use_bias=False, **dense,
        )

    def __call__(
        self,
        x: jax.Array,
        cos: jax.Array,
        sin: jax.Array,
        mask: AttentionMask,
        kv_cache: tuple[jax.Array, jax.Array] | None,
        cache_index: jax.Array | None,
    ) -> tuple[jax.Array, tuple[jax.Array, jax.Array] | None]:
        """x: [B, S, E]; kv_cache: ([B, T, K, D], [B, T, K, D]).

        Without a cache T == S. With one, the new keys/values are written at
        `cache_index` and attention runs over the whole cache.
        """
        q = _heads(apply_rope(self.q_proj(x), cos, sin), "activation_heads")
        k = _heads(apply_rope(self.k_proj(x), cos, sin), "activation_kv_heads")
        v = _heads(self.v_proj(x), "activation_kv_heads")
        if kv_cache is not None:
            cache_k, cache_v = kv_cache
            start = (0, cache_index, 0, 0)
            k = jax.lax.dynamic_update_slice(cache_k, k.astype(cache_k.dtype), start)
            v = jax.lax.dynamic_update_slice(cache_v, v.astype(cache_v.dtype), start)
            k, v = (constrain(a, CACHE_AXES) for a in (k, v))
            kv_cache = (k, v)
            k, v = k.astype(x.dtype), v.astype(x.dtype)
        # Grouped kv heads are broadcast inside; scale 1/sqrt(D); softmax in float32.
        if mask.query_slot is None:
            impl = attention_implementation(self.implementation, q.dtype)
            keys = mask.key_valid[:, None, None, :]
            if impl == "cudnn":  # the fused kernel takes a full [B, 1, S, T] mask
                keys = jnp.broadcast_to(keys, (x.shape[0], 1, x.shape[1], k.shape[1]))
            out = jax.nn.dot_product_attention(
                q, k, v, mask=keys, is_causal=True, implementation=impl)
        else:  # decoding: queries sit at cache slots, keys are the whole cache
            key_slot = jnp.arange(k.shape[1])
            causal = key_slot[None, :] <= mask.query_slot[:, None]
            full = causal[None, None] & mask.key_valid[:, None, None, :]
            out = jax.nn.dot_product_attention(q, k, v, mask=full, implementation="xla")
        out = _heads(out, "activation_heads")
        return self.o_proj(out), kv_cache


class MLP(nnx.Module):
    """SwiGLU: down(silu(gate(x)) * up(x)), no biases."""

    def __init__(self, hidden: int, width: int, *, param_dtype: jnp.dtype, rngs: nnx.Rngs):
        dense = dict(use_bias=False, param_dtype=param_dtype, rngs=rngs)
        self.gate_proj = Dense((hidden,), (width,), ("embed", "mlp"), **dense)
        self.up_proj = Dense((hidden,), (width,), ("embed", "mlp"), **dense)
        self.down_proj = Dense((width,), (hidden,), ("mlp", "embed"), **dense)

    def __call__(self, x: jax.Array) -> jax.Array:
        names = ("activation_batch", "activation_length", "activation_mlp")
        h = constrain(jax.nn.silu(self.gate_proj(x)) * self.up_proj(x), names)
        return self.down_proj(h)


class DecoderLayer(nnx.Module):
    """Pre-norm Qwen2 decoder layer, shared by the trunk and the audio (MIMO) branch."""

    def __init__(
        self, hidden: int, width: int, num_heads: int, num_kv_heads: int, eps: float, *,
        param_dtype: jnp.dtype, rngs: nnx.Rngs, attention: str = "auto",
        head_dim: int | None = None,
    ):
        self.input_layernorm = RMSNorm(hidden, eps, param_dtype=param_dtype)
        self.self_attn = Attention(
            hidden, num_heads, num_kv_heads, param_dtype=param_dtype, rngs=rngs,
            implementation=attention, head_dim=head_dim,
        )
        self.post_attention_layernorm = RMSNorm(hidden, eps, param_dtype=param_dtype)
        self.mlp = MLP(hidden, width, param_dtype=param_dtype, rngs=rngs)

    def __call__(
        self,
        x: jax.Array,
        cos: jax.Array,
        sin: jax.Array,
        mask: AttentionMask,
        kv_cache: tuple[jax.Array, jax.Array] | None = None,
        cache_index: jax.Array | None = None,
    ) -> tuple[jax.Array, tuple[jax.Array, jax.Array] | None]:
        with jax.named_scope("attention"):
            attn_out, kv_cache = self.self_attn(
                self.input_layernorm(x), cos, sin, mask, kv_cache, cache_index
            )
        x = x + attn_out
        with jax.named_scope("mlp"):
            x = x + self.mlp(self.post_attention_layernorm(x))
        return constrain(x, RESIDUAL_AXES), kv_cache


def checkpoint_policy(remat: bool):
    """What a decoder layer keeps for the backward pass: nothing with `remat`, else its
    matmul outputs only (`run_layers`' `policy`)."""
    return (jax.checkpoint_policies.nothing_saveable if remat
            else jax.checkpoint_policies.dots_with_no_batch_dims_saveable)


def run_layers(layers: list[DecoderLayer], h: jax.Array, kv: list, first: int, *,
                cos, sin, mask, policy, scan: bool, dtype, cache_index) -> jax.Array:
    """Run `layers` (global indices first, first + 1, ...) on h; kv[i] is updated in place.

    Each layer is a pure function of (its parameters, h, its cache entry), checkpointed
    with `policy` (a `jax.checkpoint_policies` entry: what it saves for the backward).
    With `scan`, one `lax.scan` runs the stack: its parameters (cast to the compute
    dtype first, as every layer casts them anyway) and cache entries are stacked, so the
    program holds one layer body whatever the depth (compile time and program size
    independent of it).
    """
    if not layers:
        return h

    def pure(graphdef):  # (parameters, h, kv) -> (h, kv) of one layer
        def apply(state, h, kv):
            return nnx.merge(graphdef, state)(h, cos, sin, mask, kv, cache_index)
        return jax.checkpoint(apply, policy=policy)

    graphdef = nnx.graphdef(layers[0])
    if scan and all(nnx.graphdef(layer) == graphdef for layer in layers[1:]):
        cast = lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x  # noqa: E731
        stacked = jax.tree.map(lambda *xs: jnp.stack([cast(x) for x in xs]),
                               *[nnx.state(layer) for layer in layers])
        apply = pure(graphdef)
        last = first + len(layers)
        with jax.named_scope(f"layers_{first}_{last - 1}"):
            if kv[first] is None:
                return jax.lax.scan(lambda h, state: (apply(state, h, None)[0], None), h,
                                    stacked)[0]
            # The cache entries travel through the scan stacked, and come back unstacked.
            keys, values = (jnp.stack([kv[i][n] for i in range(first, last)]) for n in (0, 1))
            h, (keys, values) = jax.lax.scan(lambda h, xs: apply(xs[0], h, xs[1:]), h,
                                             (stacked, keys, values))
        for i in range(first, last):
            kv[i] = (keys[i - first], values[i - first])
        return h
    for j, layer in enumerate(layers):
        i = first + j
        with jax.named_scope(f"layer_{i}"):
            h, kv[i] = pure(nnx.graphdef(layer))(nnx.state(layer), h, kv[i])
    return h
