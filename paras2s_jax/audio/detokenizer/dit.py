"""Kimi-Audio's flow-matching DiT (`DiTPrefix`) in Flax NNX: one velocity evaluation.

Inputs per frame (50 Hz; each 12.5 Hz semantic token is repeated 4 times): the noisy
normalised mel x_t [T, 80], the token id and an absolute position id; one integer time
t_int = floor(1000 t). The condition is c = time_mlp(sinusoid(t_int)) + token_embedding.

    h = input_linear(x_t) (+ sincos / learnable positions)
    per block (adaLN-Zero): shift, scale, gate (x2) = Linear(SiLU(c)).split(6)
        h += gate_msa * attn(LN(h) * (1 + scale_msa) + shift_msa)
        h += gate_mlp * mlp(LN(h) * (1 + scale_mlp) + shift_mlp)
    v = Linear(LN(h) * (1 + scale) + shift), (shift, scale) = Linear(SiLU(c)).split(2)

LayerNorms have no affine parameters (eps 1e-6); the MLP uses tanh-GELU. Attention is
non-causal over [KV cache ; this chunk]; q and k get interleaved RoPE (pairs (2i, 2i+1)
rotated as complex numbers, in float32) before k is cached. The cache and the chunk are
fixed-size buffers with validity masks, so streaming compiles once.

Attribute names follow the PyTorch module where practical; `checkpoint.py` holds the map.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import yaml
from flax import nnx

_TIME_FEATURES = 256  # TimestepEmbedder.frequency_embedding_size
_LN_EPS = 1e-6


class DiTConfigError(ValueError):
    """An `audio_detokenizer/config.yaml` value the DiT cannot run; names the field."""


@dataclasses.dataclass(frozen=True)
class DiTConfig:
    """`model.dit` of `audio_detokenizer/config.yaml`, plus the mel normalisation."""

    input_size: int  # mel bins (80)
    semantic_vocab_size: int  # 16384 codes; the embedding has one more row (the CFG id)
    hidden_size: int
    depth: int
    num_heads: int
    mlp_ratio: float = 4.0
    position_embedding_type: str = "skip"  # "skip", "sincos" or "learnable"
    max_seq_len: int = 4096
    use_rope: bool = True
    rope_max_positions: int = 4096
    rope_base: float = 10000.0
    rope_interpolation_factor: float = 1.0
    normalize_mel: bool = True
    mel_mean: float = 0.0
    mel_std: float = 1.0

    def __post_init__(self) -> None:
        for name in ("input_size", "semantic_vocab_size", "hidden_size", "depth", "num_heads"):
            if getattr(self, name) <= 0:
                raise DiTConfigError(f"model.dit.{name} must be > 0, got {getattr(self, name)}")
        if self.hidden_size % self.num_heads or self.head_dim % 2:
            raise DiTConfigError(
                f"model.dit.hidden_size={self.hidden_size} must split into num_heads="
                f"{self.num_heads} heads of even size (RoPE rotates pairs)"
            )
        if self.position_embedding_type not in ("skip", "sincos", "learnable"):
            raise DiTConfigError(
                f"model.dit.position_embedding_type={self.position_embedding_type!r}: "
                "'skip', 'sincos' or 'learnable'"
            )

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def mlp_width(self) -> int:
        return int(self.hidden_size * self.mlp_ratio)

    @property
    def rope_positions(self) -> int:
        """Rows of the RoPE table (the original truncates it to max_seq_len)."""
        return min(self.rope_max_positions, self.max_seq_len)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "config.yaml") -> DiTConfig:
        """Build from the parsed YAML (`model.dit` + top-level `normalize_mel`, ...)."""
        try:
            dit = raw["model"]["dit"]
        except (KeyError, TypeError) as e:
            raise DiTConfigError(f"{source}: no model.dit section") from e
        ffn = dit.get("ffn_type", "conv1d_conv1d")
        if ffn != "vanilla_mlp":  # the original raises for every other FFN type too
            raise DiTConfigError(f"{source}: model.dit.ffn_type={ffn!r}; only 'vanilla_mlp'")
        required = ("input_size", "semantic_vocab_size", "hidden_size", "depth", "num_heads",
                    "mlp_ratio", "position_embedding_type", "max_seq_len")
        missing = [k for k in required if k not in dit]
        if missing:
            raise DiTConfigError(f"{source}: model.dit has no {missing[0]!r}")
        rope = dit.get("rope_params") or {}
        normalize = bool(raw.get("normalize_mel", False))
        return cls(
            **{k: dit[k] for k in required},
            use_rope=bool(dit.get("use_rope", False)),
            rope_max_positions=int(rope.get("max_position_embeddings", 4096)),
            rope_base=float(rope.get("rope_base", 10000.0)),
            rope_interpolation_factor=float(rope.get("rope_interpolation_factor", 1.0)),
            normalize_mel=normalize,
            mel_mean=float(raw["mel_mean"]) if normalize else 0.0,
            mel_std=float(raw["mel_std"]) if normalize else 1.0,
        )

    @classmethod
    def from_yaml(cls, path: str | Path) -> DiTConfig:
        """Read `audio_detokenizer/config.yaml`."""
        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as e:
            raise DiTConfigError(f"{path}: cannot read the detokenizer config: {e}") from e
        return cls.from_dict(raw, str(path))


def rope_table(config: DiTConfig) -> np.ndarray:
    """float32[P, head_dim / 2, 2]: (cos, sin) of position p times θ^(-2i/head_dim)."""
    dim = config.head_dim
    freqs = (1.0 / (np.float32(config.rope_base)
                    ** (np.arange(0, dim, 2, dtype=np.float32) / np.float32(dim))))
    t = np.arange(config.rope_max_positions, dtype=np.float32)
    t = t * np.float32(1.0 / config.rope_interpolation_factor)
    angles = np.outer(t, freqs.astype(np.float32)).astype(np.float32)[: config.rope_positions]
    return np.stack([np.cos(angles), np.sin(angles)], axis=-1)


def sincos_table(rows: int, dim: int) -> np.ndarray:
    """float32[rows, dim]: fairseq's [sin | cos] table with row 0 (the padding id) zeroed."""
    half = dim // 2
    scale = math.log(10000) / (half - 1)
    freqs = np.exp(np.arange(half, dtype=np.float32) * -np.float32(scale))
    angles = np.arange(rows, dtype=np.float32)[:, None] * freqs[None, :]
    table = np.concatenate([np.sin(angles), np.cos(angles)], axis=1)
    if dim % 2:
        table = np.concatenate([table, np.zeros((rows, 1), np.float32)], axis=1)
    table[0] = 0.0
    return table.astype(np.float32)


def timestep_embedding(t_int: jax.Array, dim: int = _TIME_FEATURES) -> jax.Array:
    """float32[dim]: [cos | sin](t_int · exp(-ln(1e4) · i / (dim/2)))."""
    half = dim // 2
    freqs = jnp.exp(-math.log(10000) * jnp.arange(half, dtype=jnp.float32) / half)
    args = t_int.astype(jnp.float32) * freqs
    return jnp.concatenate([jnp.cos(args), jnp.sin(args)])


def layer_norm(x: jax.Array) -> jax.Array:
    """LayerNorm without affine parameters (eps 1e-6), computed in float32."""
    x32 = x.astype(jnp.float32)
    mean = x32.mean(-1, keepdims=True)
    var = ((x32 - mean) ** 2).mean(-1, keepdims=True)
    return ((x32 - mean) * jax.lax.rsqrt(var + _LN_EPS)).astype(x.dtype)


def apply_rope(x: jax.Array, cos_sin: jax.Array) -> jax.Array:
    """Rotate pairs (2i, 2i+1) of x [T, H, D] by cos_sin [T, D/2, 2], in float32."""
    pairs = x.astype(jnp.float32).reshape(*x.shape[:-1], -1, 2)
    re, im = pairs[..., 0], pairs[..., 1]
    cos, sin = cos_sin[:, None, :, 0], cos_sin[:, None, :, 1]
    out = jnp.stack([re * cos - im * sin, re * sin + im * cos], axis=-1)
    return out.reshape(x.shape).astype(x.dtype)


class Linear(nnx.Module):
    """y = x @ kernel + bias; kernel [in, out] (PyTorch's weight transposed)."""

    def __init__(self, din: int, dout: int, *, dtype: jnp.dtype):
        self.kernel = nnx.Param(jnp.zeros((din, dout), dtype))
        self.bias = nnx.Param(jnp.zeros((dout,), dtype))

    def __call__(self, x: jax.Array) -> jax.Array:
        return x @ self.kernel[...] + self.bias[...]


class Attention(nnx.Module):
    """Fused qkv projection, RoPE, attention over [cache ; chunk], output projection."""

    def __init__(self, config: DiTConfig, *, dtype: jnp.dtype):
        self.heads, self.use_rope = config.num_heads, config.use_rope
        self.qkv = Linear(config.hidden_size, 3 * config.hidden_size, dtype=dtype)
        self.proj = Linear(config.hidden_size, config.hidden_size, dtype=dtype)

    def __call__(self, x, cos_sin, cache_k, cache_v, key_valid):
        """x [T, E]; cache_k/v [C, H, D]; key_valid bool[C + T].

        Returns (out [T, E], k [T, H, D], v [T, H, D]) with k after RoPE, as cached.
        """
        t = x.shape[0]
        q, k, v = jnp.split(self.qkv(x).reshape(t, 3 * self.heads, -1), 3, axis=1)
        if self.use_rope:
            q, k = apply_rope(q, cos_sin), apply_rope(k, cos_sin)
        keys = jnp.concatenate([cache_k.astype(k.dtype), k]).astype(jnp.float32)
        values = jnp.concatenate([cache_v.astype(v.dtype), v]).astype(jnp.float32)
        scores = jnp.einsum("thd,shd->hts", q.astype(jnp.float32), keys) / math.sqrt(q.shape[-1])
        scores = jnp.where(key_valid[None, None, :], scores, -jnp.inf)
        out = jnp.einsum("hts,shd->thd", jax.nn.softmax(scores, axis=-1), values)
        return self.proj(out.reshape(t, -1).astype(x.dtype)), k, v


class MLP(nnx.Module):
    def __init__(self, config: DiTConfig, *, dtype: jnp.dtype):
        self.fc1 = Linear(config.hidden_size, config.mlp_width, dtype=dtype)
        self.fc2 = Linear(config.mlp_width, config.hidden_size, dtype=dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.fc2(jax.nn.gelu(self.fc1(x), approximate=True))


def _modulate(x: jax.Array, shift: jax.Array, scale: jax.Array) -> jax.Array:
    return x * (1 + scale) + shift


class DiTBlock(nnx.Module):
    """adaLN-Zero transformer block."""

    def __init__(self, config: DiTConfig, *, dtype: jnp.dtype):
        self.attn = Attention(config, dtype=dtype)
        self.mlp = MLP(config, dtype=dtype)
        self.adaLN_modulation = Linear(config.hidden_size, 6 * config.hidden_size, dtype=dtype)

    def __call__(self, x, c, cos_sin, cache_k, cache_v, key_valid):
        (shift_msa, scale_msa, gate_msa,
         shift_mlp, scale_mlp, gate_mlp) = jnp.split(self.adaLN_modulation(jax.nn.silu(c)), 6, -1)
        h, k, v = self.attn(_modulate(layer_norm(x), shift_msa, scale_msa), cos_sin,
                            cache_k, cache_v, key_valid)
        x = x + gate_msa * h
        x = x + gate_mlp * self.mlp(_modulate(layer_norm(x), shift_mlp, scale_mlp))
        return x, k, v


class TimestepEmbedder(nnx.Module):
    def __init__(self, config: DiTConfig, *, dtype: jnp.dtype):
        self.fc1 = Linear(_TIME_FEATURES, config.hidden_size, dtype=dtype)
        self.fc2 = Linear(config.hidden_size, config.hidden_size, dtype=dtype)

    def __call__(self, t_int: jax.Array) -> jax.Array:
        features = timestep_embedding(t_int).astype(self.fc1.kernel.dtype)
        return self.fc2(jax.nn.silu(self.fc1(features)))


class FinalLayer(nnx.Module):
    def __init__(self, config: DiTConfig, *, dtype: jnp.dtype):
        self.adaLN_modulation = Linear(config.hidden_size, 2 * config.hidden_size, dtype=dtype)
        self.linear = Linear(config.hidden_size, config.input_size, dtype=dtype)

    def __call__(self, x: jax.Array, c: jax.Array) -> jax.Array:
        shift, scale = jnp.split(self.adaLN_modulation(jax.nn.silu(c)), 2, -1)  # this order
        return self.linear(_modulate(layer_norm(x), shift, scale))


class DiT(nnx.Module):
    """Velocity field v(x_t, t | tokens) of the flow-matching detokenizer."""

    def __init__(self, config: DiTConfig, *, dtype: jnp.dtype = jnp.float32):
        self.config, self.dtype = config, dtype
        e = config.hidden_size
        self.t_embedder = TimestepEmbedder(config, dtype=dtype)
        self.semantic_token_embedding = nnx.Param(
            jnp.zeros((config.semantic_vocab_size + 1, e), dtype))
        self.input_linear = Linear(config.input_size, e, dtype=dtype)
        self.position_embedding = (nnx.Param(jnp.zeros((config.max_seq_len + 1, e), dtype))
                                   if config.position_embedding_type == "learnable" else None)
        self.blocks = nnx.List([DiTBlock(config, dtype=dtype) for _ in range(config.depth)])
        self.final_layer = FinalLayer(config, dtype=dtype)

    def _positions(self, position_ids: jax.Array) -> jax.Array | None:
        kind = self.config.position_embedding_type
        if kind == "learnable":
            return self.position_embedding[...][position_ids]
        if kind == "sincos":
            # fairseq make_positions with padding id 0: chunk-relative 1.., and a chunk that
            # starts at position 0 gets a zero vector for its first frame (the original's quirk)
            nonzero = (position_ids != 0).astype(jnp.int32)
            rel = jnp.cumsum(nonzero) * nonzero
            table = sincos_table(position_ids.shape[0] + 1, self.config.hidden_size)
            return jnp.asarray(table, self.dtype)[rel]
        return None

    def __call__(self, x, tokens, position_ids, t_int, cache_k, cache_v, key_valid):
        """One velocity evaluation of a chunk.

        x float[T, mel]; tokens, position_ids int[T]; t_int int scalar; cache_k/cache_v
        [depth, C, H, D] (post-RoPE keys and values of earlier frames); key_valid bool[C + T]
        marks the real cache rows and chunk frames. Returns (v [T, mel], k, v [depth, T, H, D]).
        """
        h = self.input_linear(x.astype(self.dtype))
        pos = self._positions(position_ids)
        if pos is not None:
            h = h + pos
        c = self.t_embedder(t_int)[None, :] + self.semantic_token_embedding[...][tokens]
        cos_sin = jnp.asarray(rope_table(self.config))[position_ids]
        ks, vs = [], []
        for i, block in enumerate(self.blocks):
            with jax.named_scope(f"block_{i}"):
                h, k, v = block(h, c, cos_sin, cache_k[i], cache_v[i], key_valid)
            ks.append(k)
            vs.append(v)
        return self.final_layer(h, c), jnp.stack(ks), jnp.stack(vs)
