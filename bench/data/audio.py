"""Reading speech files for scoring: decode, downmix, resample, and refuse bad audio.

Every problem is an `AudioError` whose message names the file, so the scorer can record
it against the one item and carry on with the rest of the run. Refused: missing, empty,
undecodable, truncated (fewer frames than the header declares: soundfile would silently
return what is there), shorter than 0.1 s, silent, and (when asked) longer than a limit.

Long audio: a conversational turn rarely lasts 30 s, and Whisper and the captioners see
30 s windows, so the scorer refuses prompts and replies over MAX_SECONDS by default
(`--max-audio-seconds` changes it); nothing is cut silently.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
from pathlib import Path

import numpy as np
import soundfile as sf

SAMPLE_RATE = 16_000  # what every ASR / style back end here expects
MIN_SECONDS = 0.1  # shorter than one syllable: nothing to score
SILENCE_PEAK = 10 ** (-60 / 20)  # a peak below -60 dBFS is treated as silence
MAX_SECONDS = 30.0  # default limit of the scorer (see the module docstring)


class AudioError(ValueError):
    """Audio that cannot be scored; the message names the file and the reason."""


def declared_frames(path: Path) -> int | None:
    """Frames the file's header promises: the WAV data chunk, FLAC's STREAMINFO; None if unsaid.

    For WAV, libsndfile sizes the data chunk by what is on disk, so the RIFF header is read
    here. A size of 0 or 0xFFFFFFFF is what streaming writers leave: unknown, not a claim.
    """
    with open(path, "rb") as f:
        head = f.read(12)
        if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
            block_align = None
            while True:
                chunk = f.read(8)
                if len(chunk) < 8:
                    return None
                cid, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
                if cid == b"fmt ":
                    fmt = f.read(size)
                    block_align = struct.unpack("<H", fmt[12:14])[0] if len(fmt) >= 14 else None
                    f.seek(size % 2, 1)
                elif cid == b"data":
                    if not block_align or size in (0, 0xFFFFFFFF):
                        return None
                    return size // block_align
                else:
                    f.seek(size + size % 2, 1)
    try:
        frames = sf.info(str(path)).frames
    except Exception:
        return None
    return frames or None


def load_audio(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE,
               max_seconds: float | None = None) -> np.ndarray:
    """Return mono float32 samples at `sample_rate`, or raise AudioError.

    `max_seconds` (0 or None: no limit) refuses longer audio instead of cutting it.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: audio file not found")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: audio file is empty (0 bytes)")
    declared = declared_frames(path)
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as err:  # soundfile raises several types for undecodable input
        if declared:
            raise AudioError(f"{path}: truncated or corrupt audio: the header declares "
                             f"{declared} frames, decoding failed ({err})") from None
        raise AudioError(f"{path}: cannot decode audio ({err})") from None
    if declared and data.shape[0] < declared:
        raise AudioError(f"{path}: truncated audio: the header declares {declared} frames "
                         f"({declared / sr:.2f} s), the file holds {data.shape[0]} "
                         f"({data.shape[0] / sr:.2f} s)")
    if max_seconds and data.shape[0] > max_seconds * sr:
        raise AudioError(f"{path}: audio is {data.shape[0] / sr:.1f} s long, over the "
                         f"{max_seconds:g} s limit (see --max-audio-seconds)")
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
        # The speech front end's resampler (librosa.load's soxr_hq), so the scorer hears
        # what the system under test heard. Imported on use: paras2s_jax loads JAX.
        from paras2s_jax.audio.audio_io import resample

        mono = resample(mono, int(sr), sample_rate)
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
