"""Prosody features of a speech file (parselmouth + openSMILE eGeMAPS).

Pitch level and range come from Praat's pitch tracker (parselmouth); voice quality (HNR,
jitter) from openSMILE's eGeMAPS functionals; speech level is the RMS of active frames in
dBFS. Active speech time (frames within 35 dB of the loudest, so pauses and leading or
trailing silence drop out) is the denominator of the speaking rate, whose numerator, the
phones said, comes from the transcript (bench.backends.style).
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass

import numpy as np

from bench.data.audio import SAMPLE_RATE

_SMILE = None
_SMILE_LOCK = threading.RLock()  # re-entered: analyse() holds it while creating


@dataclass(frozen=True)
class Prosody:
    f0_median_hz: float  # median F0 of voiced frames
    f0_range_st: float  # 10th-90th percentile F0 spread, semitones (pitch variability)
    voiced_fraction: float  # share of frames with a pitch
    level_dbfs: float  # RMS level of active frames (volume)
    active_s: float  # seconds of active speech (frames within 35 dB of the loudest)
    hnr_db: float  # harmonics-to-noise ratio (voice quality: breathy/rough is low)
    jitter: float  # cycle-to-cycle F0 perturbation (older/rougher voices are higher)
    duration_s: float

    def as_dict(self) -> dict[str, float]:
        return {k: round(float(v), 4) for k, v in asdict(self).items()}


def _smile():
    global _SMILE
    with _SMILE_LOCK:
        if _SMILE is None:
            import opensmile

            _SMILE = opensmile.Smile(
                feature_set=opensmile.FeatureSet.eGeMAPSv02,
                feature_level=opensmile.FeatureLevel.Functionals,
            )
        return _SMILE


def _active_mask(x: np.ndarray, frame: int) -> tuple[np.ndarray, np.ndarray]:
    n = len(x) // frame
    rms = np.sqrt(np.mean(x[: n * frame].reshape(n, frame) ** 2, axis=1) + 1e-12)
    db = 20 * np.log10(rms)
    # Active = within 35 dB of the loudest frame: drops pauses and leading/trailing silence.
    return db, db > db.max() - 35


def analyse(samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> Prosody:
    """Prosody of mono float samples."""
    import parselmouth

    snd = parselmouth.Sound(samples.astype(np.float64), sampling_frequency=sample_rate)
    f0 = snd.to_pitch(time_step=0.01, pitch_floor=60.0, pitch_ceiling=600.0)
    f0 = f0.selected_array["frequency"]
    voiced = f0[f0 > 0]
    if len(voiced) >= 3:
        st = 12 * np.log2(voiced / 100.0)
        f0_median = float(np.median(voiced))
        f0_range = float(np.percentile(st, 90) - np.percentile(st, 10))
    else:
        f0_median, f0_range = 0.0, 0.0
    frame = sample_rate // 100
    db, active = _active_mask(samples, frame)
    level = 10 * np.log10(np.mean(10 ** (db[active] / 10))) if active.any() else -120.0
    active_s = max(active.sum() * frame / sample_rate, 1e-3)
    with _SMILE_LOCK:  # openSMILE's Smile object is not re-entrant
        feats = _smile().process_signal(samples, sample_rate).iloc[0]
    duration = len(samples) / sample_rate
    return Prosody(
        f0_median_hz=f0_median,
        f0_range_st=f0_range,
        voiced_fraction=float(len(voiced) / max(len(f0), 1)),
        level_dbfs=float(level),
        active_s=active_s,
        hnr_db=float(feats["HNRdBACF_sma3nz_amean"]),
        jitter=float(feats["jitterLocal_sma3nz_amean"]),
        duration_s=duration,
    )
