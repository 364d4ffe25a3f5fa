"""Qwen2.5-Omni's audio encoder (the thinker's `audio_tower`) in Flax NNX.

Built from the Whisper encoder's parts (`paras2s_jax.audio.whisper_encoder`: `Conv1d`,
`sinusoids`, and `EncoderLayer`, whose pre-LN attention has biases on q/v/out but not k,
as the reference's does). Where it differs from Whisper's encoder:

- Any input length. Each clip's mel frames are cut into chunks of 2 * n_window frames
  (the last one may be shorter); every chunk goes through the conv stem on its own, zero
  padded, with conv1's output zeroed past the chunk's end.
- Positions are the fixed sinusoid table (not a learned one), restarting at 0 in each
  chunk, so a chunk's n_window positions are the table's first rows.
- Attention never crosses a chunk: each chunk is one block of the reference's
  `cu_seqlens` packing, here a batch row with its padded keys masked out.
- After the layers: AvgPool1d(2, 2) over each clip's encoder frames, then `ln_post`, then
  `proj` to the thinker's width (`output_dim`). Whisper ends at a LayerNorm.
- `audio_bos_eos_token` [2, output_dim] is part of the checkpoint and kept for exports;
  neither this forward pass nor the reference's reads it.

Lengths: L mel frames -> (L - 1) // 2 + 1 encoder frames -> (that - 2) // 2 + 1 tokens.
Shapes: B clips, M mel bins, T mel frames (padded), K chunks per clip, W = n_window
positions per chunk, E = d_model, D = output_dim, P pooled tokens per clip (padded),
N tokens of all clips.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from paras2s_jax.audio.whisper_encoder import (
    Conv1d,
    EncoderLayer,
    WhisperEncoderConfig,
    sinusoids,
)
from paras2s_jax.model.config import Numerics
from paras2s_jax.model.layers import Dense, LayerNorm


class AudioConfigError(ValueError):
    """An audio encoder configuration value is invalid; the message names the field."""


_INT_FIELDS = ("num_mel_bins", "d_model", "encoder_layers", "encoder_attention_heads",
               "encoder_ffn_dim", "max_source_positions", "n_window", "output_dim")


@dataclasses.dataclass(frozen=True)
class AudioEncoderConfig(Numerics):
    """Sizes and numerics of the Qwen2.5-Omni audio encoder (HF `audio_config` names)."""

    num_mel_bins: int = 128
    d_model: int = 1280
    encoder_layers: int = 32
    encoder_attention_heads: int = 20
    encoder_ffn_dim: int = 5120
    max_source_positions: int = 1500  # rows of the sinusoid table
    n_window: int = 100  # a chunk is 2 * n_window mel frames -> n_window positions
    output_dim: int = 3584  # the thinker's hidden size
    layer_norm_eps: float = 1e-5  # torch.nn.LayerNorm's default, as the reference uses
    dtype: str = "float32"
    param_dtype: str = "float32"

    def __post_init__(self) -> None:
        for name in _INT_FIELDS:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise AudioConfigError(
                    f"AudioEncoderConfig.{name} must be an int > 0, got {value!r}"
                )
        if self.d_model % self.encoder_attention_heads:
            raise AudioConfigError(
                f"AudioEncoderConfig.encoder_attention_heads={self.encoder_attention_heads} "
                f"must divide d_model={self.d_model}"
            )
        if self.d_model % 2 or self.d_model < 4:
            raise AudioConfigError(
                f"AudioEncoderConfig.d_model={self.d_model} must be even and >= 4 (sinusoids)"
            )
        if self.n_window > self.max_source_positions:
            raise AudioConfigError(
                f"AudioEncoderConfig.n_window={self.n_window} exceeds max_source_positions="
                f"{self.max_source_positions}: a chunk's positions must fit the table"
            )
        if not self.layer_norm_eps > 0:
            raise AudioConfigError(
                f"AudioEncoderConfig.layer_norm_eps must be > 0, got {self.layer_norm_eps!r}"
            )
        for name in ("dtype", "param_dtype"):
            if getattr(self, name) not in ("float32", "bfloat16"):
                raise AudioConfigError(
                    f"AudioEncoderConfig.{name} must be 'float32' or 'bfloat16', "
                    f"got {getattr(self, name)!r}"
                )

    @classmethod
    def from_hf(cls, raw: dict[str, Any], **overrides: Any) -> AudioEncoderConfig:
        """From a published `config.json` dict (reads `thinker_config.audio_config`), a
        thinker config (`audio_config`), or the audio config itself. Absent fields take
        transformers' defaults; overrides (e.g. dtype) win."""
        if "thinker_config" in raw:
            raw = raw["thinker_config"]
        if "audio_config" in raw:
            raw = raw["audio_config"]
        if not isinstance(raw, dict):
            raise AudioConfigError(f"audio_config must be a JSON object, got {type(raw).__name__}")
        if raw.get("activation_function", "gelu") != "gelu":
            raise AudioConfigError(
                f"audio_config.activation_function={raw['activation_function']!r}; "
                "only 'gelu' (exact) is implemented"
            )
        if raw.get("scale_embedding", False):
            raise AudioConfigError("audio_config.scale_embedding=true is not implemented")
        values = {name: raw[name] for name in _INT_FIELDS if name in raw}
        return cls(**{**values, **overrides})

    @classmethod
    def qwen2_5_omni_7b(cls, **changes: Any) -> AudioEncoderConfig:
        """Qwen2.5-Omni-7B's encoder (transformers' defaults; thinker width 3584)."""
        return cls(**changes)

    @classmethod
    def qwen2_5_omni_3b(cls, **changes: Any) -> AudioEncoderConfig:
        """Qwen2.5-Omni-3B's encoder: the 7B's, projected to the 3B thinker's width 2048."""
        return cls(**{"output_dim": 2048, **changes})

    @classmethod
    def tiny(cls, **changes: Any) -> AudioEncoderConfig:
        """A few-kilobyte encoder for CPU tests: chunks of 16 mel frames."""
        return cls(**{**dict(num_mel_bins=128, d_model=32, encoder_layers=2,
                             encoder_attention_heads=4, encoder_ffn_dim=64,
                             max_source_positions=64, n_window=8, output_dim=48), **changes})

    @property
    def chunk_frames(self) -> int:
        """Mel frames per chunk (2 * n_window)."""
        return 2 * self.n_window

    @property
    def layer_config(self) -> WhisperEncoderConfig:
        """The same sizes as a Whisper config, for the shared `EncoderLayer`."""
        return WhisperEncoderConfig(
            n_mels=self.num_mel_bins, n_audio_ctx=self.n_window, n_audio_state=self.d_model,
            n_audio_head=self.encoder_attention_heads, n_audio_layer=self.encoder_layers,
            n_audio_mlp=self.encoder_ffn_dim, layer_norm_eps=self.layer_norm_eps,
            dtype=self.dtype, param_dtype=self.param_dtype,
        )


def feat_extract_output_lengths(mel_frames: Any) -> tuple[Any, Any]:
    """(encoder frames, audio tokens) for clips of `mel_frames` frames (ints or arrays)."""
    encoder_frames = (mel_frames - 1) // 2 + 1
    return encoder_frames, (encoder_frames - 2) // 2 + 1


def batch_features(
    input_features: np.ndarray | Sequence[np.ndarray],
    feature_attention_mask: np.ndarray | None = None,
    feature_lens: np.ndarray | Sequence[int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The encoder's inputs as (float32[B, M, T] mel, int32[B] frame counts).

    Accepts what the reference takes: float[B, M, T] with a prefix `feature_attention_mask`
    int[B, T] (the processor's) or `feature_lens`; the packed float[M, sum(lens)] with
    `feature_lens`; or a list of per-clip float[M, T_i] (then neither).
    """
    if isinstance(input_features, (list, tuple)):
        if feature_attention_mask is not None or feature_lens is not None:
            raise ValueError("input_features: a list of clips carries its own lengths; "
                             "pass no feature_attention_mask / feature_lens with it")
        clips = [np.asarray(c, np.float32) for c in input_features]
        if not clips or any(c.ndim != 2 or c.shape[0] != clips[0].shape[0] for c in clips):
            raise ValueError("input_features: expected a non-empty list of float[M, T_i] with "
                             f"one M, got shapes {[c.shape for c in clips]}")
        lens = np.array([c.shape[1] for c in clips], np.int32)
        mel = np.zeros((len(clips), clips[0].shape[0], int(lens.max())), np.float32)
        for i, clip in enumerate(clips):
            mel[i, :, : clip.shape[1]] = clip
        return mel, lens
    features = np.asarray(input_features, np.float32)
    if features.ndim == 2:
        if feature_lens is None or feature_attention_mask is not None:
            raise ValueError("input_features: packed float[M, frames] needs feature_lens only")
        lens = np.asarray(feature_lens, np.int32)
        if lens.ndim != 1 or int(lens.sum()) != features.shape[1]:
            raise ValueError(f"feature_lens: {lens.tolist()} must sum to the packed "
                             f"input_features' {features.shape[1]} frames")
        starts = np.concatenate([[0], np.cumsum(lens)[:-1]])
        return batch_features([features[:, s: s + n] for s, n in zip(starts, lens, strict=True)])
    if features.ndim != 3:
        raise ValueError(f"input_features: expected float[B, M, T], got {features.shape}")
    b, _, t = features.shape
    if feature_attention_mask is not None:
        if feature_lens is not None:
            raise ValueError("pass feature_attention_mask or feature_lens, not both")
        mask = np.asarray(feature_attention_mask).astype(bool)
        if mask.shape != (b, t):
            raise ValueError(f"feature_attention_mask: shape {mask.shape}, expected {(b, t)}")
        lens = mask.sum(axis=1).astype(np.int32)
        if not np.array_equal(mask, np.arange(t)[None, :] < lens[:, None]):
            raise ValueError("feature_attention_mask: each row must be ones then zeros")
    elif feature_lens is not None:
        lens = np.asarray(feature_lens, np.int32)
        if lens.shape != (b,) or (lens > t).any():
            raise ValueError(f"feature_lens: {lens.tolist()} must give one count <= {t} per clip")
    else:
        lens = np.full((b,), t, np.int32)
    if (lens <= 0).any():
        raise ValueError(f"every clip needs at least one mel frame, got lengths {lens.tolist()}")
    return features, lens


class Qwen2_5OmniAudioEncoder(nnx.Module):
    """Log-mel float[B, M, T] + frame counts -> audio tokens at the thinker's width."""

    def __init__(self, config: AudioEncoderConfig, *, rngs: nnx.Rngs):
        self.config = config
        c, pdt = config, config.storage_dtype
        conv = dict(param_dtype=pdt, rngs=rngs)
        self.conv1 = Conv1d(c.num_mel_bins, c.d_model, 3, 1, (None, None, "embed"), **conv)
        self.conv2 = Conv1d(c.d_model, c.d_model, 3, 2, (None, "embed", "embed_out"), **conv)
        layer = c.layer_config
        self.layers = nnx.List([EncoderLayer(layer, rngs=rngs) for _ in range(c.encoder_layers)])
        self.ln_post = LayerNorm(c.d_model, c.layer_norm_eps, param_dtype=pdt)
        self.proj = Dense((c.d_model,), (c.output_dim,), (None, "embed"), use_bias=True,
                          param_dtype=pdt, rngs=rngs)
        table = 0.02 * jax.random.normal(rngs.params(), (2, c.output_dim), jnp.float32)
        self.audio_bos_eos_token = nnx.Param(table.astype(pdt), logical_axes=(None, "embed"))

    def __call__(self, mel: jax.Array, lengths: jax.Array) -> tuple[jax.Array, jax.Array]:
        """mel float[B, M, T] (anything past a clip's length is ignored), lengths int[B] ->
        (tokens float[B, P, D], counts int32[B]); clip b's tokens are tokens[b, :counts[b]].
        Jittable: P = K * W // 2 with K = ceil(T / (2 * n_window))."""
        c = self.config
        b, m, t = mel.shape
        if m != c.num_mel_bins:
            raise ValueError(f"mel has {m} bins, the encoder config has {c.num_mel_bins}")
        f, w = c.chunk_frames, c.n_window
        k = math.ceil(t / f)
        lengths = jnp.asarray(lengths, jnp.int32)
        frame = jnp.arange(k * f)
        mel = jnp.pad(mel, [(0, 0), (0, 0), (0, k * f - t)])
        mel = jnp.where(frame[None, None, :] < lengths[:, None, None], mel, 0.0)
        x = jnp.swapaxes(mel, 1, 2).reshape(b * k, f, m).astype(c.compute_dtype)  # chunks
        chunk_len = jnp.clip(lengths[:, None] - f * jnp.arange(k)[None, :], 0, f).reshape(b * k)
        with jax.named_scope("stem"):
            x = jax.nn.gelu(self.conv1(x), approximate=False)
            x = x * (jnp.arange(f)[None, :] < chunk_len[:, None])[..., None].astype(x.dtype)
            x = jax.nn.gelu(self.conv2(x), approximate=False)  # [B*K, W, E]
            x = x + sinusoids(w, c.d_model).astype(x.dtype)
        chunk_frames, _ = feat_extract_output_lengths(chunk_len)
        mask = (jnp.arange(w)[None, :] < chunk_frames[:, None])[:, None, None, :]  # keys
        for i, layer in enumerate(self.layers):
            with jax.named_scope(f"layer_{i}"):
                x = layer(x, mask)
        # Full chunks have exactly W frames, so a clip's frames are the prefix of its row.
        x = x.reshape(b, k * w, c.d_model)
        if (k * w) % 2:
            x = jnp.pad(x, [(0, 0), (0, 1), (0, 0)])
        pooled = (x[:, 0::2] + x[:, 1::2]) / 2  # AvgPool1d(2, 2); an odd last frame is dropped
        tokens = self.proj(self.ln_post(pooled))
        return tokens, feat_extract_output_lengths(lengths)[1]

    def encode(
        self,
        input_features: np.ndarray | Sequence[np.ndarray],
        feature_attention_mask: np.ndarray | None = None,
        feature_lens: np.ndarray | Sequence[int] | None = None,
    ) -> tuple[jax.Array, np.ndarray]:
        """(float[N, D] the clips' tokens concatenated in order, int[B] tokens per clip):
        what the thinker scatters into its audio-token positions. Inputs as in
        `batch_features`."""
        mel, lens = batch_features(input_features, feature_attention_mask, feature_lens)
        tokens, counts = _forward(self, jnp.asarray(mel), jnp.asarray(lens))
        counts = np.asarray(counts)
        return jnp.concatenate([tokens[i, :n] for i, n in enumerate(counts)]), counts


@nnx.jit
def _forward(
    encoder: Qwen2_5OmniAudioEncoder, mel: jax.Array, lengths: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """`encoder(mel, lengths)`, compiled once per input shape."""
    return encoder(mel, lengths)
