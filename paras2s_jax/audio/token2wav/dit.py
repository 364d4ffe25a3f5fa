"""Qwen2.5-Omni's token2wav DiT in Flax NNX: one velocity evaluation v(x_t, t | codes, cond).

Per mel frame the input is [x_t ; ECAPA(ref mel) ; codec embedding ; speaker vector],
projected to the hidden size; codec ids are embedded (table of num_embeds + 1 rows) and
each is repeated `repeats` times along time (50 Hz codes -> 100 Hz mel). The time
t in [0, 1] is embedded as [sin | cos](1000 t · exp(-ln(1e4) i / (128 - 1))) and an MLP.

    per layer (adaLN-Zero): shift, scale, gate (x2) = Linear(SiLU(c)).split(6)
        h += gate_msa * attn(LN(h) * (1 + scale_msa) + shift_msa)
        h += gate_mlp * mlp(LN(h) * (1 + scale_mlp) + shift_mlp)
    v = Linear(LN(h) * (1 + scale) + shift), (scale, shift) = Linear(SiLU(c)).split(2)

How it differs from Kimi-Audio's DiT (`paras2s_jax.audio.detokenizer.dit`, whose Linear,
affine-free LayerNorm and interleaved RoPE are reused here):
- the condition c is the time embedding only; codes, the reference mel (through the ECAPA
  speaker encoder, `ecapa.py`) and the speaker vector enter through the input projection
  (Kimi adds its token embedding to c and has no speaker conditioning);
- separate q/k/v projections with `num_heads * head_dim` inner width, and RoPE (pairs
  (2i, 2i+1), θ = rope_theta, positions 0..T-1) on the FIRST HEAD ONLY, as the checkpoint
  was trained; Kimi rotates every head;
- block attention instead of a KV cache: frame i attends frame j iff
  -back <= j // block_size - i // block_size <= ahead, with back/ahead 1 on the
  `look_backward_layers` / `look_ahead_layers` and 0 elsewhere;
- the final modulation splits as (scale, shift) rather than (shift, scale); the MLP
  width is ff_mult · hidden (tanh-GELU, as in Kimi).
Activations are batch-first and time-major: float[B, T, C].
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from paras2s_jax.audio.detokenizer.dit import Linear, apply_rope, layer_norm
from paras2s_jax.audio.token2wav.config import OmniDiTConfig
from paras2s_jax.audio.token2wav.ecapa import ECAPA

_TIME_FEATURES = 256


def time_features(t: jax.Array, dim: int = _TIME_FEATURES) -> jax.Array:
    """float32[B, dim]: [sin | cos](1000 t · exp(-ln(1e4) · i / (dim/2 - 1))) for t float[B]."""
    half = dim // 2
    freqs = jnp.exp(jnp.arange(half, dtype=jnp.float32) * -(math.log(10000) / (half - 1)))
    args = 1000.0 * t.astype(jnp.float32)[:, None] * freqs[None, :]
    return jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=-1)


def rope_cos_sin(length: int, head_dim: int, theta: float) -> np.ndarray:
    """float32[length, head_dim / 2, 2]: (cos, sin) of p · θ^(-2i/head_dim)."""
    inv = 1.0 / (np.float32(theta) ** (np.arange(0, head_dim, 2, dtype=np.float32)
                                       / np.float32(head_dim)))
    angles = np.arange(length, dtype=np.float32)[:, None] * inv.astype(np.float32)[None, :]
    return np.stack([np.cos(angles), np.sin(angles)], axis=-1).astype(np.float32)


def block_mask(length: int, block_size: int, back: int, ahead: int) -> np.ndarray:
    """bool[length, length]: query i may attend key j (block distance in [-back, ahead])."""
    blocks = np.arange(length) // block_size
    diff = blocks[None, :] - blocks[:, None]
    return (diff >= -back) & (diff <= ahead)


class TimeEmbedding(nnx.Module):
    def __init__(self, hidden: int, *, dtype: jnp.dtype):
        self.fc1 = Linear(_TIME_FEATURES, hidden, dtype=dtype)
        self.fc2 = Linear(hidden, hidden, dtype=dtype)

    def __call__(self, t: jax.Array) -> jax.Array:
        """float[B] -> float[B, hidden]."""
        return self.fc2(jax.nn.silu(self.fc1(time_features(t).astype(self.fc1.kernel.dtype))))


class Attention(nnx.Module):
    def __init__(self, config: OmniDiTConfig, *, dtype: jnp.dtype):
        inner = config.num_attention_heads * config.head_dim
        self.heads = config.num_attention_heads
        self.to_q = Linear(config.hidden_size, inner, dtype=dtype)
        self.to_k = Linear(config.hidden_size, inner, dtype=dtype)
        self.to_v = Linear(config.hidden_size, inner, dtype=dtype)
        self.to_out = Linear(inner, config.hidden_size, dtype=dtype)

    def __call__(self, x: jax.Array, cos_sin: jax.Array, mask: jax.Array) -> jax.Array:
        """x [B, T, E]; cos_sin [T, D/2, 2]; mask bool[T, T] -> [B, T, E]."""
        b, t, _ = x.shape
        q, k, v = (f(x).reshape(b, t, self.heads, -1) for f in (self.to_q, self.to_k, self.to_v))
        q = q.at[:, :, :1].set(apply_rope(q[:, :, :1], cos_sin))
        k = k.at[:, :, :1].set(apply_rope(k[:, :, :1], cos_sin))
        scores = jnp.einsum("bthd,bshd->bhts", q.astype(jnp.float32), k.astype(jnp.float32))
        scores = jnp.where(mask, scores / math.sqrt(q.shape[-1]), -jnp.inf)
        out = jnp.einsum("bhts,bshd->bthd", jax.nn.softmax(scores, axis=-1),
                         v.astype(jnp.float32))
        return self.to_out(out.reshape(b, t, -1).astype(x.dtype))


class MLP(nnx.Module):
    def __init__(self, config: OmniDiTConfig, *, dtype: jnp.dtype):
        self.fc1 = Linear(config.hidden_size, config.ff_width, dtype=dtype)
        self.fc2 = Linear(config.ff_width, config.hidden_size, dtype=dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.fc2(jax.nn.gelu(self.fc1(x), approximate=True))


class DecoderLayer(nnx.Module):
    """adaLN-Zero block with block attention (look back/ahead of 0 or 1 blocks)."""

    def __init__(self, config: OmniDiTConfig, back: int, ahead: int, *, dtype: jnp.dtype):
        self.back, self.ahead, self.block_size = back, ahead, config.block_size
        self.attn_norm = Linear(config.hidden_size, 6 * config.hidden_size, dtype=dtype)
        self.attn = Attention(config, dtype=dtype)
        self.ff = MLP(config, dtype=dtype)

    def __call__(self, h: jax.Array, c: jax.Array, cos_sin: jax.Array) -> jax.Array:
        (shift_msa, scale_msa, gate_msa,
         shift_mlp, scale_mlp, gate_mlp) = jnp.split(self.attn_norm(jax.nn.silu(c))[:, None], 6,
                                                     axis=-1)
        mask = jnp.asarray(block_mask(h.shape[1], self.block_size, self.back, self.ahead))
        h = h + gate_msa * self.attn(layer_norm(h) * (1 + scale_msa) + shift_msa, cos_sin, mask)
        return h + gate_mlp * self.ff(layer_norm(h) * (1 + scale_mlp) + shift_mlp)


class OmniDiT(nnx.Module):
    """Velocity field of Qwen2.5-Omni's flow-matching token2wav (torch
    `Qwen2_5OmniToken2WavDiTModel.forward` without its built-in CFG batching)."""

    def __init__(self, config: OmniDiTConfig, *, dtype: jnp.dtype = jnp.float32):
        self.config, self.dtype = config, dtype
        e = config.hidden_size
        self.time_embed = TimeEmbedding(e, dtype=dtype)
        self.codec_embed = nnx.Param(jnp.zeros((config.num_embeds + 1, config.emb_dim), dtype))
        self.spk_encoder = ECAPA(config, dtype=dtype)
        self.input_proj = Linear(config.input_width, e, dtype=dtype)
        self.layers = nnx.List([
            DecoderLayer(config, int(i in config.look_backward_layers),
                         int(i in config.look_ahead_layers), dtype=dtype)
            for i in range(config.num_hidden_layers)])
        self.norm_out = Linear(e, 2 * e, dtype=dtype)
        self.proj_out = Linear(e, config.mel_dim, dtype=dtype)

    def __call__(self, x: jax.Array, ref_mel: jax.Array, speaker: jax.Array, codes: jax.Array,
                 t: jax.Array) -> jax.Array:
        """x float[B, T, mel] with T = N · repeats; ref_mel float[B, T_ref, mel];
        speaker float[B, enc_emb_dim]; codes int[B, N]; t float[B] (or a scalar).
        Returns the velocity float32[B, T, mel]."""
        return self.velocity(x, self.spk_encoder(ref_mel), speaker, codes, t)

    def velocity(self, x: jax.Array, spk: jax.Array, speaker: jax.Array, codes: jax.Array,
                 t: jax.Array) -> jax.Array:
        """`__call__` with the ECAPA features spk float[B, enc_dim] of the reference mel
        already computed (they do not change along an ODE solve)."""
        c = self.config
        b, frames, _ = x.shape
        if frames != codes.shape[1] * c.repeats:
            raise ValueError(f"x has {frames} frames but {codes.shape[1]} codes x repeats "
                             f"{c.repeats} = {codes.shape[1] * c.repeats}")
        t = jnp.broadcast_to(jnp.asarray(t, jnp.float32), (b,))
        cond = self.time_embed(t)
        code_emb = jnp.repeat(self.codec_embed[...][codes], c.repeats, axis=1)
        h = self.input_proj(jnp.concatenate([
            x.astype(self.dtype),
            jnp.broadcast_to(spk.astype(self.dtype)[:, None], (b, frames, spk.shape[-1])),
            code_emb,
            jnp.broadcast_to(speaker.astype(self.dtype)[:, None], (b, frames, speaker.shape[-1])),
        ], axis=-1))
        cos_sin = jnp.asarray(rope_cos_sin(frames, c.head_dim, c.rope_theta))
        for i, layer in enumerate(self.layers):
            with jax.named_scope(f"layer_{i}"):
                h = layer(h, cond, cos_sin)
        scale, shift = jnp.split(self.norm_out(jax.nn.silu(cond))[:, None], 2, axis=-1)
        return self.proj_out(layer_norm(h) * (1 + scale) + shift).astype(jnp.float32)
