"""The flow-matching ODE and the DiT's streaming KV cache, jitted once per buffer size.

Euler, as Kimi-Audio runs it through torchdyn's fixed-step solver: `t_span =
linspace(0, 1, 30)` gives 29 velocity evaluations. torchdyn accumulates time in float32
(t ← t + dt, then dt ← t_span[i + 1] − t) and the velocity network sees the truncated
integer t_int = floor(1000 t) = 0, 34, 68, ..., 965. Each step is x ← x + dt·v in the
state's dtype: in bfloat16 both the product and the sum are rounded (and dt itself is
rounded to bfloat16 first, so the 29 steps integrate to 29·bf16(1/29) ≈ 0.9983, not 1).
There is no classifier-free guidance on this path.

Chunks and the cache live in fixed-size buffers with validity masks (chunk frames beyond
`n` and cache rows beyond `cache_len` are masked out of attention), so a whole stream
compiles one ODE program and one cache-pass program.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from paras2s_jax.audio.detokenizer.dit import DiT

CACHE_PASS_T = 0.999  # the time at which clean emitted frames are re-encoded for the cache


def euler_schedule(points: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """(t_int int32[points - 1], dt float32[points - 1]) of torchdyn's fixed-step Euler."""
    if points < 2:
        raise ValueError(f"ode points must be >= 2, got {points}")
    t_span = np.linspace(0.0, 1.0, points).astype(np.float32)
    t, dt = t_span[0], np.float32(t_span[1] - t_span[0])
    t_ints, dts = [], []
    for step in range(1, points):
        t_ints.append(int(np.float32(t * np.float32(1000))))
        dts.append(dt)
        t = np.float32(t + dt)
        if step < points - 1:
            dt = np.float32(t_span[step + 1] - t)
    return np.asarray(t_ints, np.int32), np.asarray(dts, np.float32)


def cache_pass_t_int() -> int:
    """floor(1000 · float32(0.999)) = 999."""
    return int(np.float32(CACHE_PASS_T) * np.float32(1000))


def _round_like(x: jax.Array, dtype) -> jax.Array:
    """Round to `dtype` even where XLA would keep extra precision inside a fusion."""
    if dtype == jnp.bfloat16:
        return jax.lax.reduce_precision(x, exponent_bits=8, mantissa_bits=7)
    return x


@functools.partial(jax.jit, static_argnums=0)
def solve(graphdef, state, x0, tokens, positions, cache_k, cache_v, key_valid, t_ints, dts):
    """Integrate dx/dt = v(x, t) from noise x0 [T, mel]; returns x at t = 1."""
    model: DiT = nnx.merge(graphdef, state)
    dtype = x0.dtype

    def step(x, schedule):
        t_int, dt = schedule
        v, _, _ = model(x, tokens, positions, t_int, cache_k, cache_v, key_valid)
        update = _round_like(dt.astype(dtype) * v.astype(dtype), dtype)
        return _round_like(x + update, dtype), None

    x, _ = jax.lax.scan(step, x0, (t_ints, dts))
    return x


@functools.partial(jax.jit, static_argnums=0)
def encode_for_cache(graphdef, state, x, tokens, positions, cache_k, cache_v, key_valid):
    """Keys and values [depth, T, H, D] of clean frames x at t = 0.999 (the cache pass)."""
    model: DiT = nnx.merge(graphdef, state)
    _, k, v = model(x, tokens, positions, jnp.int32(cache_pass_t_int()), cache_k, cache_v,
                    key_valid)
    return k, v


@jax.jit
def append_to_cache(cache, cache_len, new, n_new):
    """[cache rows 0..cache_len ; new rows 0..n_new], keeping the newest C rows at the front.

    cache [depth, C, H, D], new [depth, T, H, D]; returns (cache', new length). The
    original concatenates and then drops the oldest rows beyond `max_kv_cache_tokens`.
    """
    capacity = cache.shape[1]
    total = cache_len + n_new
    keep = jnp.minimum(total, capacity)
    logical = total - keep + jnp.arange(capacity)
    source = jnp.where(logical < cache_len, logical, capacity + logical - cache_len)
    combined = jnp.concatenate([cache, new.astype(cache.dtype)], axis=1)
    rows = jnp.take(combined, jnp.clip(source, 0, combined.shape[1] - 1), axis=1)
    valid = (jnp.arange(capacity) < keep)[None, :, None, None]
    return jnp.where(valid, rows, jnp.zeros_like(rows)), keep
