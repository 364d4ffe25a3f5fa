"""Qwen2.5-Omni token2wav: codec ids + reference mel + speaker vector + noise -> 24 kHz wav.

    mel = sample_mel(dit, codes, ref_mel, speaker, noise)   # RK4 flow matching, ode.py
    wav = bigvgan(mel)                                       # bigvgan.py

The mel has `repeats` frames per codec id and the wav `hop` samples per mel frame (for the
published sizes: 2 frames per 50 Hz code, 240 samples per 100 Hz frame at 24 kHz).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from paras2s_jax.audio.token2wav.bigvgan import OmniBigVGAN
from paras2s_jax.audio.token2wav.config import Token2WavConfig
from paras2s_jax.audio.token2wav.dit import OmniDiT
from paras2s_jax.audio.token2wav.ode import sample_mel


class Token2Wav(nnx.Module):
    """The DiT (`dit`) and the vocoder (`bigvgan`) of Qwen2.5-Omni's speech output."""

    def __init__(self, config: Token2WavConfig, *, dtype: jnp.dtype = jnp.float32):
        self.config = config
        self.dit = OmniDiT(config.dit, dtype=dtype)
        self.bigvgan = OmniBigVGAN(config.bigvgan, dtype=dtype)

    def mel(self, codes: jax.Array, ref_mel: jax.Array, speaker: jax.Array, noise: jax.Array,
            *, num_steps: int = 10, guidance_scale: float = 0.5,
            sway: float | None = -1.0) -> jax.Array:
        """float32[B, N · repeats, mel]; codes int[B, N], ref_mel float[B, T_ref, mel],
        speaker float[B, enc_emb_dim], noise float[B, N · repeats, mel]."""
        frames = codes.shape[1] * self.config.dit.repeats
        if frames > self.config.dit.max_position_embeddings:
            raise ValueError(f"{codes.shape[1]} codes give {frames} mel frames, more than "
                             f"dit_config.max_position_embeddings="
                             f"{self.config.dit.max_position_embeddings}")
        return sample_mel(self.dit, codes, ref_mel, speaker, noise, num_steps=num_steps,
                          guidance_scale=guidance_scale, sway=sway)

    def __call__(self, codes: jax.Array, ref_mel: jax.Array, speaker: jax.Array,
                 noise: jax.Array, *, num_steps: int = 10, guidance_scale: float = 0.5,
                 sway: float | None = -1.0) -> jax.Array:
        """float32[B, N · repeats · hop] waveform in [-1, 1] (arguments as in `mel`)."""
        return self.bigvgan(self.mel(codes, ref_mel, speaker, noise, num_steps=num_steps,
                                     guidance_scale=guidance_scale, sway=sway))
