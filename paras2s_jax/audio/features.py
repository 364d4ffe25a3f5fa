"""Kimi-Audio's continuous Whisper features: audio -> float32[T, 4 * E] at 12.5 Hz.

Kimi-Audio (`whisper_Lv3/whisper.py`, `prompt_manager.extract_whisper_feat`): cut the
audio into 30 s segments; pad each to 480000 samples; log-mel [128, 3000]; encoder
[1500, 1280] at 50 Hz; keep the first `token_len * 4` frames, where
`token_len = (L - 1) // 1280 + 1` for a segment of L samples; concatenate segments;
reshape [T50, 1280] -> [T50 / 4, 5120], so each row holds 4 consecutive frames in order.
The rows then go, one per user-audio code, where the prompt's `continuous` mask is True.
"""

from __future__ import annotations

import jax
import numpy as np
from flax import nnx

from paras2s_jax.audio.mel import HOP_LENGTH, N_SAMPLES, log_mel_spectrogram
from paras2s_jax.audio.whisper_encoder import WhisperEncoder

FRAMES_PER_TOKEN = 4  # 50 Hz encoder frames per 12.5 Hz audio token
SAMPLES_PER_TOKEN = FRAMES_PER_TOKEN * 2 * HOP_LENGTH  # 1280: conv2 has stride 2


def token_length(num_samples: int) -> int:
    """12.5 Hz tokens for a segment of `num_samples` samples (rounds up)."""
    if num_samples <= 0:
        raise ValueError(f"a segment needs at least one sample, got {num_samples}")
    return (num_samples - 1) // SAMPLES_PER_TOKEN + 1


def segment_bounds(num_samples: int, segment_samples: int) -> list[tuple[int, int]]:
    """[start, end) of each consecutive segment of at most `segment_samples` samples."""
    return [(s, min(s + segment_samples, num_samples))
            for s in range(0, num_samples, segment_samples)]


def segment_token_lengths(num_samples: int, segment_samples: int = N_SAMPLES) -> list[int]:
    """Tokens per segment; their sum is the number of user-audio positions of the clip."""
    bounds = segment_bounds(num_samples, segment_samples)
    return [token_length(end - start) for start, end in bounds]


def stack_frames(frames: np.ndarray | jax.Array) -> np.ndarray | jax.Array:
    """[T, E] -> [T / 4, 4 * E]: row j is frames 4j, 4j+1, 4j+2, 4j+3 laid end to end.

    A plain row-major reshape does exactly this, which is what Kimi-Audio relies on.
    """
    t, e = frames.shape
    if t % FRAMES_PER_TOKEN:
        raise ValueError(f"{t} frames is not a multiple of {FRAMES_PER_TOKEN}")
    return frames.reshape(t // FRAMES_PER_TOKEN, FRAMES_PER_TOKEN * e)


@nnx.jit
def _encode_window(encoder: WhisperEncoder, window: jax.Array) -> jax.Array:
    """float32[1, S] padded audio -> [1, C, E] encoder states (one compile per model)."""
    return encoder(log_mel_spectrogram(window, encoder.config.n_mels))


def extract_features(encoder: WhisperEncoder, audio: np.ndarray) -> np.ndarray:
    """16 kHz mono float32[N] -> float32[sum(token_len), 4 * E] continuous features.

    The window is the encoder's own: 2 * n_audio_ctx mel frames (480000 samples for
    large-v3). Segments run one at a time through one jitted call, so any clip length
    reuses a single compilation.
    """
    audio = np.asarray(audio, np.float32)
    if audio.ndim != 1:
        raise ValueError(f"audio must be mono [samples], got shape {audio.shape}")
    if audio.size == 0:
        raise ValueError("audio is empty")
    cfg = encoder.config
    if cfg.n_audio_ctx % FRAMES_PER_TOKEN:
        raise ValueError(
            f"n_audio_ctx={cfg.n_audio_ctx} must be a multiple of {FRAMES_PER_TOKEN} "
            "to group encoder frames into tokens"
        )
    window = cfg.n_frames * HOP_LENGTH
    kept = []
    for start, end in segment_bounds(audio.size, window):
        padded = np.zeros((1, window), np.float32)
        padded[0, : end - start] = audio[start:end]
        states = _encode_window(encoder, padded)[0]  # [C, E]
        kept.append(np.asarray(states[: token_length(end - start) * FRAMES_PER_TOKEN], np.float32))
    return stack_frames(np.concatenate(kept, axis=0))


def place_features(features: np.ndarray, continuous: np.ndarray) -> np.ndarray:
    """float32[T, D] rows -> float32[L, D], row i at the i-th True of bool[L] `continuous`.

    `continuous` is a prompt's `Streams.continuous` (True exactly on user-audio codes);
    with several user clips, pass their features concatenated in prompt order. Every
    other position is zero, as in Kimi-Audio.
    """
    features = np.asarray(features)
    continuous = np.asarray(continuous, bool)
    if continuous.ndim != 1 or features.ndim != 2:
        raise ValueError(
            f"expected continuous bool[L] and features [T, D], got {continuous.shape} and "
            f"{features.shape}"
        )
    n = int(continuous.sum())
    if n != features.shape[0]:
        raise ValueError(
            f"the prompt has {n} continuous positions (user-audio codes) but there are "
            f"{features.shape[0]} feature rows; the audio codes and the Whisper features "
            "must come from the same clips (12.5 Hz each)"
        )
    out = np.zeros((continuous.size, features.shape[1]), np.float32)
    out[continuous] = features
    return out
