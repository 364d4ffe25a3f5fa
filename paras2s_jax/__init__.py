"""paras2s-jax: ParaS2S (paralinguistic-aware speech-to-speech) on Kimi-Audio in JAX/Flax."""

from paras2s_jax.model import KimiAudio, KimiAudioConfig, KVCache, kimi_audio_7b, tiny
from paras2s_jax.sampling import SampleOutput, SamplingConfig, generate

__version__ = "0.1.0"

__all__ = [
    "KVCache", "KimiAudio", "KimiAudioConfig", "SampleOutput", "SamplingConfig", "generate",
    "kimi_audio_7b", "tiny",
]
