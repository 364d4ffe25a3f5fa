"""What the offline analyser should hear for a style, and how well a rendering agrees.

Used to pick among N TTS candidates automatically (bench.synth --select auto) and to
show that the espeak-ng presets really differ (`python -m bench.synth styles`).

`EXPECTED` maps style words (as they appear in TTS instructions) to the analyser's
attribute bands. Styles the analyser cannot hear (accent, sarcasm's irony itself) have
no expected bands; for them the agreement score is neutral (0.5) and selection falls
back to the first candidate or to people (the review sheet).
"""

from __future__ import annotations

import math
import re

import numpy as np

from bench.backends.style import THRESHOLDS, UNKNOWN, StyleCaption

# style word -> expected analyser bands (attribute -> value); later words win.
EXPECTED: list[tuple[tuple[str, ...], dict[str, str]]] = [
    (("calm", "neutral", "flat", "confident"), {"speed": "normal", "volume": "normal"}),
    (("sad", "tired", "subdued", "gloomy", "disappointed"),
     {"speed": "slow", "volume": "soft", "pitch": "low"}),
    (("excited", "happy", "cheerful", "joy", "surprised", "enthusiastic"),
     {"volume": "loud", "pitch": "high"}),
    (("angry", "furious", "annoyed"), {"speed": "fast", "volume": "loud"}),
    (("sarcastic", "mocking", "drawn-out"), {"speed": "slow", "pitch": "low"}),
    (("anxious", "nervous"), {"pitch": "high"}),
    (("hesitant", "halting", "pauses"), {"speed": "slow"}),
    (("slow",), {"speed": "slow"}),
    (("fast", "quick", "hurried"), {"speed": "fast"}),
    (("soft", "quiet", "whisper"), {"volume": "soft"}),
    (("loud", "shout"), {"volume": "loud"}),
    (("low-pitched", "deep"), {"pitch": "low"}),
    (("high-pitched",), {"pitch": "high"}),
    (("female", "woman", "girl"), {"gender": "female"}),
    (("male", "man", "boy"), {"gender": "male"}),
    (("child", "kid"), {"pitch": "high"}),
    (("elderly", "old", "aged"), {"gender": "male", "speed": "slow"}),
]
# Features behind the bands with fixed cuts (pitch is judged against a register, so it has
# no fixed cut to measure a margin from).
_FEATURE = {"speed": "phone_rate", "volume": "level_dbfs"}
_HIGH = {"fast", "loud", "high"}
_LOW = {"slow", "soft", "low"}


def expected_attributes(instructions: str) -> dict[str, str]:
    """Analyser bands the instructions ask for, by whole-word keywords."""
    words = set(re.findall(r"[a-z]+(?:-[a-z]+)*", instructions.lower()))
    out: dict[str, str] = {}
    for keys, bands in EXPECTED:
        if words & set(keys):
            out.update(bands)
    return out


def agreement(cap: StyleCaption, expected: dict[str, str]) -> float:
    """Share of expected bands the caption matches, plus a small margin-based tie-break.

    Bands the caption reports as unknown (pitch without a speaker register, speed without a
    transcript) are left out: they favour no candidate. The tie-break (at most +-0.1)
    prefers renderings further inside the wanted band, so among candidates that all match,
    the clearest one wins.
    """
    known = {a: w for a, w in expected.items() if getattr(cap, a) != UNKNOWN}
    if not known:
        return 0.5
    hits, margins = [], []
    for attr, want in known.items():
        hits.append(getattr(cap, attr) == want)
        feat = _FEATURE.get(attr)
        if feat is None or feat not in cap.features:
            continue
        lo, hi = THRESHOLDS[attr]
        x, width = cap.features[feat], max(hi - lo, 1e-6)
        if want in _HIGH:
            margins.append((x - hi) / width)
        elif want in _LOW:
            margins.append((lo - x) / width)
        else:
            margins.append(-abs(x - (lo + hi) / 2) / width)
    tie = 0.1 * math.tanh(float(np.mean(margins))) if margins else 0.0
    return round(float(np.mean(hits)) + tie, 4)


def pause_share(samples: np.ndarray, sample_rate: int = 16000) -> float:
    """Share of the time between first and last speech frame that is silent (pauses)."""
    frame = sample_rate // 100
    n = len(samples) // frame
    rms = np.sqrt(np.mean(samples[: n * frame].reshape(n, frame) ** 2, axis=1) + 1e-12)
    db = 20 * np.log10(rms)
    active = np.flatnonzero(db > db.max() - 35)
    if len(active) < 2:
        return 0.0
    span = db[active[0]: active[-1] + 1]
    return float(np.mean(span <= db.max() - 35))
