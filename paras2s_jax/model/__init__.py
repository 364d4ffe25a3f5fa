"""Kimi-Audio in Flax NNX."""

from paras2s_jax.model.config import (
    ConfigError,
    KimiAudioConfig,
    SpecialTokens,
    kimi_audio_7b,
    tiny,
)
from paras2s_jax.model.kimi_audio import KimiAudio, KimiAudioOutput, KVCache, count_params

__all__ = [
    "ConfigError", "KimiAudio", "KimiAudioConfig", "KimiAudioOutput", "KVCache", "SpecialTokens",
    "count_params", "kimi_audio_7b", "tiny",
]
