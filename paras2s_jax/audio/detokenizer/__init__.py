"""Kimi-Audio's detokenizer: semantic audio ids -> 24 kHz wav (flow-matching DiT + BigVGAN).

    from paras2s_jax.audio.detokenizer import load_detokenizer
    detok = load_detokenizer("/ckpt/Kimi-Audio-7B-Instruct")   # audio_detokenizer/, vocoder/
    wav = detok.detokenize(ids)        # ids: semantic ids 0..16383; float32 mono, 24 kHz

Kimi audio-stream ids are semantic ids + 152,064 (`AUDIO_TOKEN_OFFSET`).
"""

from __future__ import annotations

from pathlib import Path

import jax.numpy as jnp

from paras2s_jax.audio.detokenizer.checkpoint import (
    DetokenizerCheckpointError,
    load_dit,
    load_vocoder,
)
from paras2s_jax.audio.detokenizer.dit import DiT, DiTConfig, DiTConfigError
from paras2s_jax.audio.detokenizer.streaming import Detokenizer, StreamingSchedule
from paras2s_jax.audio.detokenizer.vocoder import BigVGAN, BigVGANConfig, VocoderConfigError

AUDIO_TOKEN_OFFSET = 152064  # Kimi-Audio's audio-stream id of semantic id 0
DETOKENIZER_DIR = "audio_detokenizer"
VOCODER_DIR = "vocoder"


def load_detokenizer(checkpoint_dir: str | Path, *, dtype: str = "bfloat16",
                     schedule: StreamingSchedule | None = None) -> Detokenizer:
    """The detokenizer of a Kimi-Audio checkpoint directory.

    Reads `audio_detokenizer/{config.yaml, model.pt}` and `vocoder/{config.json, model.pt}`
    (torch pickles read without executing code). dtype: "bfloat16" runs like the original;
    "float32" is slower and a little different.
    """
    if dtype not in ("bfloat16", "float32"):
        raise ValueError(f"dtype must be 'bfloat16' or 'float32', got {dtype!r}")
    root = Path(checkpoint_dir)
    for sub in (DETOKENIZER_DIR, VOCODER_DIR):
        if not (root / sub).is_dir():
            raise DetokenizerCheckpointError(
                f"{root}: no {sub}/ directory (expected a Kimi-Audio checkpoint directory with "
                f"{DETOKENIZER_DIR}/ and {VOCODER_DIR}/)")
    jdtype = jnp.dtype(dtype)
    dit = load_dit(root / DETOKENIZER_DIR, dtype=jdtype)
    vocoder = load_vocoder(root / VOCODER_DIR, dtype=jdtype)
    return Detokenizer(dit, vocoder, dtype=jdtype, schedule=schedule or StreamingSchedule())


__all__ = [
    "AUDIO_TOKEN_OFFSET", "BigVGAN", "BigVGANConfig", "DetokenizerCheckpointError", "DiT",
    "DiTConfig", "DiTConfigError", "Detokenizer", "StreamingSchedule", "VocoderConfigError",
    "load_detokenizer", "load_dit", "load_vocoder",
]
