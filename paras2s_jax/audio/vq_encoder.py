"""GLM-4-Voice's speech tokenizer (`WhisperVQEncoder`) in Flax NNX: log-mel -> 12.5 Hz codes.

The published `glm-4-voice-tokenizer` is the first 16 layers of a Whisper-large-v3
shaped encoder with three changes, then a vector quantiser:

1. conv1 / conv2 are causal (zero padding of 2 frames on the left only);
2. self-attention is bidirectional inside blocks of 200 frames (4 s at 50 Hz) and
   causal across them: query i sees key j iff j <= i or i // 200 == j // 200, and only
   keys of real (unpadded) frames;
3. after the last kept layer the 50 Hz states are average-pooled by 4 (12.5 Hz), then
   each is mapped to its nearest codebook row in squared L2 (no normalisation; the
   first index wins a tie). There is no final LayerNorm.

The layers are `whisper_encoder.EncoderLayer`s, so the maths shared with Whisper lives
in one place. Shapes: B batch, M mel bins, F mel frames (100 Hz), C encoder frames
(50 Hz), T tokens (12.5 Hz), E width, V codebook size.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from paras2s_jax.audio.whisper_encoder import (
    Conv1d,
    EncoderLayer,
    WhisperConfigError,
    WhisperEncoderConfig,
    conv_stem,
    sinusoids,
)

SAMPLES_PER_FRAME = 320  # 16 kHz samples per 50 Hz encoder frame (hop 160, conv2 stride 2)


@dataclasses.dataclass(frozen=True)
class VQEncoderConfig(WhisperEncoderConfig):
    """A `WhisperEncoderConfig` (n_audio_layer = layers kept) plus pooling and codebook."""

    pooling_kernel_size: int = 4
    pooling_type: str = "avg"  # "avg" (published) or "max" (the class default)
    codebook_size: int = 16384
    block_size: int | None = 200  # attention block, in 50 Hz frames; None: padding mask only
    causal_conv: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.pooling_kernel_size <= 0 or self.codebook_size <= 0:
            raise WhisperConfigError(
                "VQEncoderConfig.pooling_kernel_size and codebook_size must be > 0, got "
                f"{self.pooling_kernel_size} and {self.codebook_size}"
            )
        if self.pooling_type not in ("avg", "max"):
            raise WhisperConfigError(
                f"VQEncoderConfig.pooling_type must be 'avg' or 'max', got {self.pooling_type!r}"
            )
        if self.block_size is not None and self.block_size <= 0:
            raise WhisperConfigError(
                f"VQEncoderConfig.block_size must be > 0, got {self.block_size}"
            )

    @classmethod
    def glm4_voice(cls, **changes: Any) -> VQEncoderConfig:
        """`THUDM/glm-4-voice-tokenizer` as published (16 of 32 Whisper-large-v3 layers)."""
        return cls(**{**dict(n_mels=128, n_audio_ctx=1500, n_audio_state=1280, n_audio_head=20,
                             n_audio_layer=16), **changes})

    @classmethod
    def tiny_test(cls, **changes: Any) -> VQEncoderConfig:
        """A small tokenizer with every structural feature (two attention blocks, padding).

        64 positions = 1.28 s per segment; block 24 frames; 64 codes.
        """
        return cls(**{**dict(n_mels=128, n_audio_ctx=64, n_audio_state=32, n_audio_head=4,
                             n_audio_layer=2, codebook_size=64, block_size=24), **changes})

    @property
    def n_tokens(self) -> int:
        """Codes per full window (12.5 Hz): 375 for 30 s."""
        return math.ceil(self.n_audio_ctx / self.pooling_kernel_size)

    @property
    def samples_per_token(self) -> int:
        """16 kHz samples per code: 1280 (80 ms)."""
        return SAMPLES_PER_FRAME * self.pooling_kernel_size


def attention_mask(num_frames: int, valid_frames: jax.Array, block_size: int | None) -> jax.Array:
    """bool[B, 1, C, C]: may query i attend to key j (block-causal and key-padding mask)."""
    i = jnp.arange(num_frames)[:, None]
    j = jnp.arange(num_frames)[None, :]
    allowed = jnp.ones((num_frames, num_frames), bool)
    if block_size is not None:
        allowed = (j <= i) | (i // block_size == j // block_size)
    key_valid = jnp.arange(num_frames)[None, :] < valid_frames[:, None]  # [B, C]
    return (allowed[None] & key_valid[:, None, :])[:, None]


def nearest_code(x: jax.Array, codebook: jax.Array) -> jax.Array:
    """int32[...]: argmin_k ||c_k||^2 + ||x||^2 - 2 x.c_k over codebook rows (first on ties).

    The expanded form (not a difference of vectors) is the one the reference uses, so
    rounding near a boundary between two codes falls the same way.
    """
    x = x.astype(jnp.float32)
    codebook = codebook.astype(jnp.float32)
    cross = jnp.einsum("...e,ve->...v", x, codebook, precision=jax.lax.Precision.HIGHEST)
    distances = (jnp.sum(codebook**2, axis=-1) + jnp.sum(x**2, axis=-1, keepdims=True)
                 - 2.0 * cross)
    return jnp.argmin(distances, axis=-1).astype(jnp.int32)


class VQEncoder(nnx.Module):
    """Log-mel [B, M, F] + real-sample counts [B] -> (codes int32[B, T], pooled [B, T, E])."""

    def __init__(self, config: VQEncoderConfig, *, rngs: nnx.Rngs):
        self.config = config
        c, pdt = config, config.storage_dtype
        conv = dict(param_dtype=pdt, rngs=rngs, causal=c.causal_conv)
        self.conv1 = Conv1d(c.n_mels, c.n_audio_state, 3, 1, (None, None, "embed"), **conv)
        self.conv2 = Conv1d(
            c.n_audio_state, c.n_audio_state, 3, 2, (None, "embed", "embed_out"), **conv
        )
        table = sinusoids(c.n_audio_ctx, c.n_audio_state).astype(pdt)
        self.embed_positions = nnx.Param(table, logical_axes=(None, "embed"))
        self.layers = nnx.List([EncoderLayer(c, rngs=rngs) for _ in range(c.n_audio_layer)])
        codes = jax.random.normal(rngs.params(), (c.codebook_size, c.n_audio_state), jnp.float32)
        self.codebook = nnx.Param(codes.astype(pdt), logical_axes=("vocab", "embed"))
        # Positions added to the looked-up codes (the reference's `last_hidden_state`).
        self.embed_positions2 = nnx.Param(table[: c.n_tokens], logical_axes=(None, "embed"))

    def pooled_states(self, mel: jax.Array, num_samples: jax.Array) -> jax.Array:
        """float32[B, T, E]: the pooled states the quantiser sees (T = ceil(F / 2 / k)).

        num_samples: int[B], real 16 kHz samples per row; frames past them are masked as
        keys (50 Hz frame j is real iff 320 j < num_samples, as the reference's mask).
        """
        c = self.config
        if mel.ndim != 3 or mel.shape[1] != c.n_mels or mel.shape[2] > 2 * c.n_audio_ctx:
            raise ValueError(
                f"VQEncoder expects log-mel [batch, {c.n_mels}, <= {2 * c.n_audio_ctx}], got "
                f"{tuple(mel.shape)}; cut the audio into segments of at most "
                f"{c.n_audio_ctx * SAMPLES_PER_FRAME} samples"
            )
        x = conv_stem(self.conv1, self.conv2, self.embed_positions, mel, c.compute_dtype)
        frames = x.shape[1]
        valid = (jnp.asarray(num_samples) + SAMPLES_PER_FRAME - 1) // SAMPLES_PER_FRAME
        mask = attention_mask(frames, valid, c.block_size)
        for i, layer in enumerate(self.layers):
            with jax.named_scope(f"layer_{i}"):
                x = layer(x, mask, c.block_size)
        k = c.pooling_kernel_size
        x = x.astype(jnp.float32)
        x = jnp.pad(x, ((0, 0), (0, -frames % k), (0, 0)))  # zeros, counted in the mean
        x = x.reshape(x.shape[0], -1, k, x.shape[-1])
        return jnp.mean(x, axis=2) if c.pooling_type == "avg" else jnp.max(x, axis=2)

    def __call__(self, mel: jax.Array, num_samples: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(codes int32[B, T], pooled float32[B, T, E]); padded positions get codes too."""
        pooled = self.pooled_states(mel, num_samples)
        return nearest_code(pooled, self.codebook[...]), pooled

    def embed_codes(self, codes: jax.Array) -> jax.Array:
        """float32[B, T, E]: codebook rows + `embed_positions2` (the reference's output states)."""
        table = self.codebook[...].astype(jnp.float32)
        return table[codes] + self.embed_positions2[: codes.shape[1]].astype(jnp.float32)
