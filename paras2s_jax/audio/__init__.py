"""Audio front end: Whisper log-mel, the Whisper-large-v3 encoder, Kimi-Audio's features,
and GLM-4-Voice's speech tokenizer (audio -> 12.5 Hz codes)."""

from paras2s_jax.audio.audio_io import AudioReadError, read_audio, resample, to_mono
from paras2s_jax.audio.features import (
    extract_features,
    place_features,
    segment_token_lengths,
    stack_frames,
    token_length,
)
from paras2s_jax.audio.mel import (
    HOP_LENGTH,
    N_FFT,
    N_FRAMES,
    N_SAMPLES,
    SAMPLE_RATE,
    log_mel_spectrogram,
    mel_filters,
    pad_or_trim,
    padded_log_mel,
)
from paras2s_jax.audio.random_speech import write_random_speech, write_random_vq_checkpoint
from paras2s_jax.audio.speech_tokenizer import AUDIO_TOKEN_OFFSET, SpeechTokenizer
from paras2s_jax.audio.vq_checkpoint import load_vq_encoder
from paras2s_jax.audio.vq_encoder import VQEncoder, VQEncoderConfig
from paras2s_jax.audio.whisper_checkpoint import (
    WhisperCheckpointError,
    load_hf_whisper_encoder,
    load_openai_whisper_encoder,
    load_whisper_encoder,
    read_hf_config,
)
from paras2s_jax.audio.whisper_encoder import (
    WhisperConfigError,
    WhisperEncoder,
    WhisperEncoderConfig,
)

__all__ = [
    "AUDIO_TOKEN_OFFSET", "HOP_LENGTH", "N_FFT", "N_FRAMES", "N_SAMPLES", "SAMPLE_RATE",
    "AudioReadError", "extract_features", "load_hf_whisper_encoder", "load_openai_whisper_encoder",
    "load_vq_encoder", "load_whisper_encoder", "log_mel_spectrogram", "mel_filters", "pad_or_trim",
    "padded_log_mel", "place_features", "read_audio", "read_hf_config", "resample",
    "segment_token_lengths",
    "SpeechTokenizer", "stack_frames", "to_mono", "token_length", "VQEncoder", "VQEncoderConfig",
    "WhisperCheckpointError", "WhisperConfigError", "WhisperEncoder", "WhisperEncoderConfig",
    "write_random_speech", "write_random_vq_checkpoint",
]
