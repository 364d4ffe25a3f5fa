"""Read an audio file as 16 kHz mono float32, exactly as Kimi-Audio's `librosa.load(sr=16000)`."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np
import soundfile
import soxr

from paras2s_jax.audio.mel import SAMPLE_RATE


class AudioReadError(OSError):
    """An audio file is missing, unreadable or empty; the message names the file."""


def to_mono(audio: np.ndarray) -> np.ndarray:
    """float32[N, C] or [N] -> float32[N]: channels averaged (a plain downmix)."""
    audio = np.asarray(audio, np.float32)
    return audio.mean(axis=1, dtype=np.float32) if audio.ndim == 2 else audio


def resample(audio: np.ndarray, orig_rate: int, target_rate: int = SAMPLE_RATE) -> np.ndarray:
    """float32[N] at `orig_rate` -> float32[ceil(N * target / orig)], bit-equal to
    `librosa.resample(audio, orig_sr=..., target_sr=..., res_type="soxr_hq")`.

    That is what `librosa.load(path, sr=16000)` (Kimi-Audio's and GLM-4-Voice's loader)
    does: libsoxr's high-quality resampler, then the output cut or zero-padded to librosa's
    length. Another resampler (e.g. polyphase) moves samples by ~1e-3 and flips codes.
    """
    if orig_rate <= 0 or target_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_rate} -> {target_rate}")
    audio = np.ascontiguousarray(audio, np.float32)
    if audio.ndim != 1:
        raise ValueError(f"resample expects mono float[samples], got shape {audio.shape}")
    if orig_rate == target_rate:
        return audio
    out = soxr.resample(audio, orig_rate, target_rate, quality="HQ")
    # librosa's length, with its float ratio: the exact integer ceiling can differ by one.
    length = math.ceil(audio.size * (float(target_rate) / orig_rate))
    if out.size >= length:
        return out[:length]
    return np.pad(out, (0, length - out.size))


def _truncated_wav(path: Path) -> str | None:
    """Why a RIFF/WAVE file is cut short (its `data` chunk claims more bytes than follow),
    or None. libsndfile silently returns the samples that are there."""
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        while chunk := f.read(8):
            if len(chunk) < 8:
                return None
            name, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if name == b"data":
                # 0 and 0xFFFFFFFF mean "unknown" (streamed writers); nothing to compare.
                left = path.stat().st_size - f.tell()
                if size not in (0, 0xFFFFFFFF) and size > left:
                    return f"its data chunk declares {size} bytes but only {left} follow"
                return None
            f.seek(size + (size & 1), 1)  # chunks are word-aligned
    return None


def read_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """float32[N] mono audio at `sample_rate` from any file libsndfile reads (wav, flac, ogg)."""
    path = Path(path)
    if not path.is_file():
        raise AudioReadError(f"{path}: no such audio file")
    try:
        data, rate = soundfile.read(path, dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as err:
        raise AudioReadError(f"{path}: cannot read audio ({err})") from err
    if data.size == 0:
        raise AudioReadError(f"{path}: the file holds no audio samples")
    truncated = _truncated_wav(path)
    if truncated:
        raise AudioReadError(f"{path}: truncated WAV file ({truncated})")
    return resample(to_mono(data), rate, sample_rate)
