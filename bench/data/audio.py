"""Reading speech files for scoring: decode, downmix, resample, and refuse bad audio.

Every problem is an `AudioError` whose message names the file, so the scorer can record
it against the one item and carry on with the rest of the run.
"""

from __future__ import annotations

import hashlib
import io
import os
from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

SAMPLE_RATE = 16_000  # what every ASR / style back end here expects
MIN_SECONDS = 0.1  # shorter than one syllable: nothing to score
SILENCE_PEAK = 10 ** (-60 / 20)  # a peak below -60 dBFS is treated as silence


class AudioError(ValueError):
    """Audio that cannot be scored; the message names the file and the reason."""


def load_audio(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Return mono float32 samples at `sample_rate`, or raise AudioError."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: audio file not found")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: audio file is empty (0 bytes)")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as err:  # soundfile raises several types for undecodable input
        raise AudioError(f"{path}: cannot decode audio ({err})") from None
    return _prepare(data, sr, str(path), sample_rate)


def decode_bytes(data: bytes, what: str, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Like load_audio, for audio held in memory (e.g. an API response)."""
    if not data:
        raise AudioError(f"{what}: no audio bytes")
    try:
        samples, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except Exception as err:
        raise AudioError(f"{what}: cannot decode audio ({err})") from None
    return _prepare(samples, sr, what, sample_rate)


def _prepare(data: np.ndarray, sr: int, what: str, sample_rate: int) -> np.ndarray:
    if data.shape[0] == 0:
        raise AudioError(f"{what}: audio has no samples")
    if not np.all(np.isfinite(data)):
        raise AudioError(f"{what}: audio contains NaN or infinite samples")
    # Averaging channels keeps the level of a centred voice; picking one could pick silence.
    mono = data.mean(axis=1)
    if sr != sample_rate:
        g = gcd(int(sr), sample_rate)
        mono = resample_poly(mono, sample_rate // g, int(sr) // g).astype(np.float32)
    if mono.shape[0] < MIN_SECONDS * sample_rate:
        raise AudioError(f"{what}: audio is too short ({mono.shape[0] / sample_rate:.3f} s)")
    if np.max(np.abs(mono)) < SILENCE_PEAK:
        raise AudioError(f"{what}: audio is silent (peak below -60 dBFS)")
    return mono.astype(np.float32)


def wav_bytes(samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> bytes:
    """Encode mono float samples as 16-bit PCM WAV."""
    buf = io.BytesIO()
    sf.write(buf, np.clip(samples, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")
    return buf.getvalue()


def file_sha256(path: str | os.PathLike) -> str:
    """Content hash: cache keys follow the audio, not its file name."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
