"""Whisper's 16 kHz log-mel spectrogram in jnp (jittable), numerically as openai-whisper.

Steps (openai-whisper `audio.log_mel_spectrogram`): centred STFT with reflect padding,
N_FFT 400, hop 160, periodic Hann window; power |STFT|^2 with the last frame dropped;
the shipped librosa mel filterbank; log10(clamp 1e-10); floor at (max - 8); (x + 4) / 4.
Shapes: audio float32[..., N] -> log-mel float32[..., n_mels, N // 160].
"""

from __future__ import annotations

import functools
import importlib.resources

import jax
import jax.numpy as jnp
import numpy as np

SAMPLE_RATE = 16_000
N_FFT = 400
HOP_LENGTH = 160
CHUNK_SECONDS = 30
N_SAMPLES = CHUNK_SECONDS * SAMPLE_RATE  # 480000: one Whisper input window
N_FRAMES = N_SAMPLES // HOP_LENGTH  # 3000 mel frames per window
SUPPORTED_N_MELS = (80, 128)


@functools.cache
def mel_filters(n_mels: int = 128) -> np.ndarray:
    """float32[n_mels, N_FFT // 2 + 1]: the filterbank openai-whisper ships.

    Read from the installed `whisper` package (`assets/mel_filters.npz`, keys mel_80 /
    mel_128) rather than recomputed, so the numbers are exactly the reference's.
    """
    if n_mels not in SUPPORTED_N_MELS:
        raise ValueError(f"n_mels must be one of {SUPPORTED_N_MELS}, got {n_mels}")
    try:
        resource = importlib.resources.files("whisper") / "assets" / "mel_filters.npz"
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(
            "the mel filterbank is read from openai-whisper's assets; install it with "
            "`pip install --no-deps openai-whisper`"
        ) from err
    with importlib.resources.as_file(resource) as path, np.load(path, allow_pickle=False) as f:
        filters = np.asarray(f[f"mel_{n_mels}"], np.float32)
    filters.setflags(write=False)
    return filters


def hann_window(size: int = N_FFT) -> np.ndarray:
    """Periodic Hann window (torch.hann_window's default), float32[size]."""
    n = np.arange(size, dtype=np.float64)
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * n / size)).astype(np.float32)


def pad_or_trim(audio: np.ndarray | jax.Array, length: int = N_SAMPLES) -> np.ndarray | jax.Array:
    """Zero-pad or cut the last axis to `length` samples (NumPy or jnp, kept as given)."""
    n = audio.shape[-1]
    if n > length:
        return audio[..., :length]
    if n < length:
        xp = np if isinstance(audio, np.ndarray) else jnp
        widths = [(0, 0)] * (audio.ndim - 1) + [(0, length - n)]
        return xp.pad(audio, widths)
    return audio


def power_spectrogram(audio: jax.Array) -> jax.Array:
    """float32[..., N_FFT // 2 + 1, N // HOP_LENGTH]: |STFT|^2, last frame dropped."""
    audio = jnp.asarray(audio, jnp.float32)
    n = audio.shape[-1]
    if n <= N_FFT // 2:
        raise ValueError(f"audio has {n} samples; reflect padding needs more than {N_FFT // 2}")
    pad = [(0, 0)] * (audio.ndim - 1) + [(N_FFT // 2, N_FFT // 2)]
    padded = jnp.pad(audio, pad, mode="reflect")  # torch.stft(center=True) default
    num_frames = n // HOP_LENGTH  # 1 + n // hop frames exist; Whisper drops the last
    index = np.arange(num_frames)[:, None] * HOP_LENGTH + np.arange(N_FFT)[None, :]
    frames = padded[..., index] * hann_window()  # [..., frames, N_FFT]
    spectrum = jnp.fft.rfft(frames, axis=-1)
    power = jnp.real(spectrum) ** 2 + jnp.imag(spectrum) ** 2
    return jnp.swapaxes(power, -1, -2)


def log_mel_spectrogram(
    audio: jax.Array, n_mels: int = 128, num_frames: jax.Array | None = None
) -> jax.Array:
    """float32[..., N] 16 kHz audio -> float32[..., n_mels, N // HOP_LENGTH].

    The (max - 8) floor is taken per example (over its last two axes); openai-whisper
    takes it over the whole tensor, which is the same for the one-clip inputs it sees.
    num_frames: optional int[...]; only each example's first `num_frames` frames count
    towards its max, so audio zero-padded past what the reference saw (a longer length
    bucket) keeps the reference's floor.
    """
    power = power_spectrogram(audio)
    filters = jnp.asarray(mel_filters(n_mels))
    # HIGHEST: accelerators may otherwise run fp32 matmuls at reduced precision,
    # and the log below magnifies relative error in quiet bins.
    mel = jnp.matmul(filters, power, precision=jax.lax.Precision.HIGHEST)
    log_spec = jnp.log10(jnp.maximum(mel, 1e-10))
    counted = log_spec
    if num_frames is not None:
        frame = jnp.arange(log_spec.shape[-1])
        counted = jnp.where(frame < jnp.asarray(num_frames)[..., None, None], log_spec, -jnp.inf)
    peak = jnp.max(counted, axis=(-2, -1), keepdims=True)
    log_spec = jnp.maximum(log_spec, peak - 8.0)
    return (log_spec + 4.0) / 4.0


def padded_log_mel(
    clips: list[np.ndarray] | tuple[np.ndarray, ...], n_mels: int = 128
) -> tuple[jax.Array, np.ndarray]:
    """Clips of 16 kHz audio -> (log-mel float32[B, n_mels, N_FRAMES], mask int32[B, N_FRAMES]).

    What transformers' `WhisperFeatureExtractor(feature_size=n_mels)` returns with its
    defaults (pad with zeros or cut to 30 s, `return_attention_mask=True`), as the
    Qwen2.5-Omni processor calls it: the (max - 8) floor is taken over the padded window,
    and the mask marks ceil(samples / HOP_LENGTH) frames of each clip.
    """
    arrays = [np.asarray(c, np.float32) for c in clips]
    if not arrays or any(a.ndim != 1 for a in arrays):
        raise ValueError(f"clips: expected a non-empty list of 1-D waveforms, got "
                         f"{[a.shape for a in arrays]}")
    audio = np.stack([pad_or_trim(a) for a in arrays])
    frames = np.array([-(-min(a.shape[0], N_SAMPLES) // HOP_LENGTH) for a in arrays])
    mask = (np.arange(N_FRAMES)[None, :] < frames[:, None]).astype(np.int32)
    return log_mel_spectrogram(jnp.asarray(audio), n_mels), mask
