"""The Whisper audio encoder (large-v3 for Kimi-Audio's continuous features) in Flax NNX.

conv1 (k3, p1) + GELU, conv2 (k3, s2, p1) + GELU, + learned positions, pre-LN blocks
(self-attention with q/v/out biases and no k bias, GELU MLP of width `n_audio_mlp`,
4E unless the config says otherwise), final
LayerNorm. Attribute names follow the Hugging Face `WhisperEncoder` so the key map in
`whisper_checkpoint` stays mechanical.

Shapes: B batch, M mel bins, F mel frames (= 2 * C), C audio positions, E width,
N heads, D head dim.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from paras2s_jax.model.config import Numerics
from paras2s_jax.model.layers import Dense, LayerNorm


class WhisperConfigError(ValueError):
    """A Whisper encoder configuration value is invalid; the message names the field."""


@dataclasses.dataclass(frozen=True)
class WhisperEncoderConfig(Numerics):
    """Sizes and numerics of a Whisper audio encoder (openai-whisper's field names)."""

    n_mels: int = 128
    n_audio_ctx: int = 1500  # positions after the stride-2 conv (30 s at 50 Hz)
    n_audio_state: int = 1280
    n_audio_head: int = 20
    n_audio_layer: int = 32
    n_audio_mlp: int | None = None  # MLP width (HF `encoder_ffn_dim`); None: 4 x n_audio_state
    layer_norm_eps: float = 1e-5  # torch.nn.LayerNorm default, used by both references
    dtype: str = "float32"  # compute dtype: "float32" or "bfloat16" (Kimi-Audio runs bf16)
    param_dtype: str = "float32"  # storage dtype of parameters

    def __post_init__(self) -> None:
        for name in ("n_mels", "n_audio_ctx", "n_audio_state", "n_audio_head", "n_audio_layer"):
            if getattr(self, name) <= 0:
                raise WhisperConfigError(
                    f"WhisperEncoderConfig.{name} must be > 0, got {getattr(self, name)}"
                )
        if self.n_audio_mlp is not None and self.n_audio_mlp <= 0:
            raise WhisperConfigError(
                f"WhisperEncoderConfig.n_audio_mlp must be > 0 (or None for 4 x n_audio_state), "
                f"got {self.n_audio_mlp}"
            )
        if self.n_audio_state % self.n_audio_head:
            raise WhisperConfigError(
                f"WhisperEncoderConfig.n_audio_head={self.n_audio_head} must divide "
                f"n_audio_state={self.n_audio_state}"
            )
        if self.n_audio_state % 2 or self.n_audio_state < 4:
            raise WhisperConfigError(
                f"WhisperEncoderConfig.n_audio_state={self.n_audio_state} must be even and >= 4"
            )
        for name in ("dtype", "param_dtype"):
            if getattr(self, name) not in ("float32", "bfloat16"):
                raise WhisperConfigError(
                    f"WhisperEncoderConfig.{name} must be 'float32' or 'bfloat16', "
                    f"got {getattr(self, name)!r}"
                )

    @classmethod
    def large_v3(cls, **changes: Any) -> WhisperEncoderConfig:
        """Whisper-large-v3's encoder, as shipped in Kimi-Audio's `whisper-large-v3/`."""
        return cls(**{**dict(n_mels=128, n_audio_ctx=1500, n_audio_state=1280,
                             n_audio_head=20, n_audio_layer=32), **changes})

    @classmethod
    def tiny_test(cls, **changes: Any) -> WhisperEncoderConfig:
        """A few-kilobyte encoder with every structural feature, for CPU tests.

        16 positions take 32 mel frames = 5120 samples (0.32 s) per window.
        """
        return cls(**{**dict(n_mels=80, n_audio_ctx=16, n_audio_state=32,
                             n_audio_head=4, n_audio_layer=2), **changes})

    @property
    def n_frames(self) -> int:
        """Mel frames per input window (the stride-2 conv halves them)."""
        return 2 * self.n_audio_ctx

    @property
    def head_dim(self) -> int:
        return self.n_audio_state // self.n_audio_head

    @property
    def mlp_width(self) -> int:
        """Hidden width of each layer's MLP (fc1 out, fc2 in): 5120 for large-v3."""
        return 4 * self.n_audio_state if self.n_audio_mlp is None else self.n_audio_mlp


def sinusoids(length: int, channels: int, max_timescale: float = 10_000.0) -> jax.Array:
    """float32[length, channels]: [sin | cos] over log-spaced timescales (Whisper's table)."""
    half = channels // 2
    inv_timescales = jnp.exp(-jnp.log(max_timescale) / (half - 1) * jnp.arange(half))
    angles = jnp.arange(length, dtype=jnp.float32)[:, None] * inv_timescales[None, :]
    return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=1)


class Conv1d(nnx.Module):
    """1-D convolution over [B, T, Cin] (time-major); kernel [K, Cin, Cout], bias [Cout].

    Zero padding is (K // 2) on both sides, or (K - 1) on the left only when `causal`
    (GLM-4-Voice's tokenizer), so an output never sees later frames.
    """

    def __init__(
        self, in_ch: int, out_ch: int, width: int, stride: int, axes: tuple[str | None, ...], *,
        param_dtype: jnp.dtype, rngs: nnx.Rngs, causal: bool = False,
    ):
        self.stride = stride
        self.padding = (width - 1, 0) if causal else (width // 2, width // 2)
        init = 0.02 * jax.random.normal(rngs.params(), (width, in_ch, out_ch), jnp.float32)
        self.kernel = nnx.Param(init.astype(param_dtype), logical_axes=axes)
        self.bias = nnx.Param(jnp.zeros((out_ch,), param_dtype), logical_axes=axes[-1:])

    def __call__(self, x: jax.Array) -> jax.Array:
        y = jax.lax.conv_general_dilated(
            x, self.kernel[...].astype(x.dtype), window_strides=(self.stride,),
            padding=[self.padding], dimension_numbers=("NWC", "WIO", "NWC"),
        )
        return y + self.bias[...].astype(y.dtype)


def conv_stem(conv1: Conv1d, conv2: Conv1d, positions: nnx.Param, mel: jax.Array,
              dtype: jnp.dtype) -> jax.Array:
    """Log-mel [B, M, F] -> GELU(conv1), GELU(conv2, stride 2), + positions: [B, C, E]."""
    x = jnp.swapaxes(mel, 1, 2).astype(dtype)  # [B, F, M]
    with jax.named_scope("stem"):
        x = jax.nn.gelu(conv1(x), approximate=False)  # exact GELU, as both references
        x = jax.nn.gelu(conv2(x), approximate=False)
        return x + positions[: x.shape[1]].astype(x.dtype)


def attend(
    q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array | None,
    causal_block: int | None = None,
) -> jax.Array:
    """softmax(q k^T / sqrt(D), masked) v over [B, C, N, D]; the softmax runs in float32.

    causal_block: when the mask is block-causal (no query of block b = [b * size,
    (b + 1) * size) may see a later block), each block of queries is scored against the
    keys up to its block's end only: the same result (masked scores add exactly 0), about
    half the attention work at 30 s with 200-frame blocks.

    Written out rather than `jax.nn.dot_product_attention`: on CPU, XLA lowers that (and
    the same einsums with v left as [B, C, N, D]) by copying the [B, N, C, C]
    probabilities into a transposed layout; with v as [B, N, C, D] the probabilities
    feed the product as they are. 2.2x faster attention at C = 1500 (the tokenizer).
    """
    if causal_block is not None and causal_block < q.shape[1]:
        blocks = []
        for start in range(0, q.shape[1], causal_block):
            end = min(start + causal_block, q.shape[1])
            part = None if mask is None else mask[:, :, start:end, :end]
            blocks.append(attend(q[:, start:end], k[:, :end], v[:, :end], part))
        return jnp.concatenate(blocks, axis=1)
    logits = jnp.einsum("btnd,bsnd->bnts", q, k, preferred_element_type=jnp.float32)
    logits = logits * (1.0 / math.sqrt(q.shape[-1]))
    if mask is not None:
        logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
    out = jnp.einsum("bnts,bnsd->bntd", probs, jnp.swapaxes(v, 1, 2))
    return jnp.swapaxes(out, 1, 2)


class SelfAttention(nnx.Module):
    """Bidirectional multi-head attention; the key projection has no bias (Whisper)."""

    def __init__(self, width: int, heads: int, *, param_dtype: jnp.dtype, rngs: nnx.Rngs):
        head_dim = width // heads
        dense = dict(param_dtype=param_dtype, rngs=rngs)
        qkv_axes = ("embed", "heads", "head_dim")
        self.q_proj = Dense((width,), (heads, head_dim), qkv_axes, use_bias=True, **dense)
        self.k_proj = Dense((width,), (heads, head_dim), qkv_axes, use_bias=False, **dense)
        self.v_proj = Dense((width,), (heads, head_dim), qkv_axes, use_bias=True, **dense)
        self.out_proj = Dense(
            (heads, head_dim), (width,), ("heads", "head_dim", "embed"), use_bias=True, **dense
        )

    def __call__(
        self, x: jax.Array, mask: jax.Array | None = None, causal_block: int | None = None
    ) -> jax.Array:
        """x: [B, C, E] -> [B, C, E]. Scale 1/sqrt(D).

        mask: optional bool [B, 1, C, C], True where query i may attend to key j (the
        plain Whisper encoder passes none: every position is real). causal_block: the
        mask's block size when it is block-causal (see `attend`).
        """
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        return self.out_proj(attend(q, k, v, mask, causal_block))


class EncoderLayer(nnx.Module):
    """Pre-LN transformer block: x + attn(LN(x)), then x + fc2(gelu(fc1(LN(x))))."""

    def __init__(self, config: WhisperEncoderConfig, *, rngs: nnx.Rngs):
        e, m, pdt = config.n_audio_state, config.mlp_width, config.storage_dtype
        self.self_attn_layer_norm = LayerNorm(e, config.layer_norm_eps, param_dtype=pdt)
        self.self_attn = SelfAttention(e, config.n_audio_head, param_dtype=pdt, rngs=rngs)
        self.final_layer_norm = LayerNorm(e, config.layer_norm_eps, param_dtype=pdt)
        dense = dict(use_bias=True, param_dtype=pdt, rngs=rngs)
        self.fc1 = Dense((e,), (m,), ("embed", "mlp"), **dense)
        self.fc2 = Dense((m,), (e,), ("mlp", "embed"), **dense)

    def __call__(
        self, x: jax.Array, mask: jax.Array | None = None, causal_block: int | None = None
    ) -> jax.Array:
        with jax.named_scope("attention"):
            x = x + self.self_attn(self.self_attn_layer_norm(x), mask, causal_block)
        with jax.named_scope("mlp"):
            # Exact (erf) GELU: both references use torch's default, not the tanh form.
            h = jax.nn.gelu(self.fc1(self.final_layer_norm(x)), approximate=False)
            x = x + self.fc2(h)
        return x


class WhisperEncoder(nnx.Module):
    """Log-mel [B, M, F] (Whisper's channel-first layout) -> hidden states [B, C, E]."""

    def __init__(self, config: WhisperEncoderConfig, *, rngs: nnx.Rngs):
        self.config = config
        c, pdt = config, config.storage_dtype
        conv = dict(param_dtype=pdt, rngs=rngs)
        self.conv1 = Conv1d(c.n_mels, c.n_audio_state, 3, 1, (None, None, "embed"), **conv)
        self.conv2 = Conv1d(
            c.n_audio_state, c.n_audio_state, 3, 2, (None, "embed", "embed_out"), **conv
        )
        # Learned in the HF layout, fixed sinusoids in openai-whisper's; a fresh model
        # starts from the sinusoids so it is usable before any checkpoint is loaded.
        self.embed_positions = nnx.Param(
            sinusoids(c.n_audio_ctx, c.n_audio_state).astype(pdt), logical_axes=(None, "embed")
        )
        self.layers = nnx.List([EncoderLayer(c, rngs=rngs) for _ in range(c.n_audio_layer)])
        self.layer_norm = LayerNorm(c.n_audio_state, c.layer_norm_eps, param_dtype=pdt)

    def __call__(self, mel: jax.Array) -> jax.Array:
        c = self.config
        if mel.ndim != 3 or mel.shape[1:] != (c.n_mels, c.n_frames):
            raise ValueError(
                f"WhisperEncoder expects log-mel [batch, {c.n_mels}, {c.n_frames}], got "
                f"{tuple(mel.shape)}; pad/trim the audio to {c.n_frames * 160} samples first"
            )
        x = conv_stem(self.conv1, self.conv2, self.embed_positions, mel, c.compute_dtype)
        for i, layer in enumerate(self.layers):
            with jax.named_scope(f"layer_{i}"):
                x = layer(x)
        return self.layer_norm(x)
