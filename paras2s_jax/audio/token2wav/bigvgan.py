"""Qwen2.5-Omni's token2wav vocoder: DiT log-mel float[B, T, mel] -> 24 kHz wav float[B, T · hop].

The generator is the detokenizer's BigVGAN v2 (`paras2s_jax.audio.detokenizer.vocoder`:
conv_pre, transposed-conv stages each followed by the mean of AMP blocks, anti-aliased
SnakeBeta activations with the same 12-tap kaiser-sinc x2 up/down filters, conv_post),
configured as Omni's: SnakeBeta with log-scale α/β, exactly three dilated convs per AMP
block, no bias on conv_post and a clamp to [-1, 1] instead of tanh.

What Omni adds in front is its mel processing: the DiT's natural-log amplitude mel m is
mapped to dB and normalised to [-1, 1] before conv_pre:

    db = 20 · log10(max(exp(m), 10^(-115/20))) - 20
    x  = clip(2 · (db + 115) / 115 - 1, -1, 1)

Kimi-Audio's vocoder consumes its mel as is. Omni's anti-aliasing filters are computed,
not stored, so checkpoints hold no filter tensors.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from paras2s_jax.audio.detokenizer.vocoder import BigVGAN
from paras2s_jax.audio.token2wav.config import OmniBigVGANConfig

_MIN_DB = -115.0
_REF_DB = 20.0
_MAX_VALUE = 1.0


def process_mel(mel: jax.Array) -> jax.Array:
    """float32[..., mel]: the DiT's log-amplitude mel -> BigVGAN's normalised dB input."""
    amplitude = jnp.exp(mel.astype(jnp.float32))
    floor = jnp.exp(jnp.float32(_MIN_DB / 20.0 * math.log(10)))
    db = 20.0 * jnp.log10(jnp.maximum(amplitude, floor)) - _REF_DB
    return jnp.clip(2 * _MAX_VALUE * ((db - _MIN_DB) / -_MIN_DB) - _MAX_VALUE,
                    -_MAX_VALUE, _MAX_VALUE)


class OmniBigVGAN(BigVGAN):
    """float[B, T, mel_dim] log-mel -> float32[B, T · hop] in [-1, 1]."""

    def __init__(self, config: OmniBigVGANConfig, *, dtype: jnp.dtype = jnp.float32):
        super().__init__(config.generator_config(), dtype=dtype)
        self.omni_config = config

    def __call__(self, mel: jax.Array) -> jax.Array:
        return super().__call__(process_mel(mel)).astype(jnp.float32)
