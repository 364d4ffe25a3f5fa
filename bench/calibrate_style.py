"""Calibrate (and check) the offline style analyser's thresholds on espeak-ng audio.

    python -m bench.calibrate_style            # fit on the calibration sentences, print JSON
    python -m bench.calibrate_style --check    # accuracy of the thresholds in bench/style.py
                                               # on held-out sentences

Each attribute is varied over three espeak-ng levels while the others stay at their
defaults, for two voices (male `en-us`, female `en-us+f3`). A threshold between two
adjacent levels is the midpoint of the two levels' medians. Pitch is fitted per voice
register, since absolute F0 mixes speaker and intonation; the gender cue is fitted on
the two voices at default settings.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from bench.backends.prosody import Prosody, analyse
from bench.backends.tts import EspeakTTS, EspeakVoice
from bench.data.audio import decode_bytes

CALIBRATION_SENTENCES = [
    "I just bumped into my ex at the grocery store.",
    "The meeting has been moved to Thursday afternoon.",
    "My brother is coming to visit next week.",
    "We finally finished painting the kitchen.",
    "The results of the test came back this morning.",
    "I am going to the concert on Saturday.",
]
HELD_OUT_SENTENCES = [
    "Your package was delivered to the front desk.",
    "They changed the menu at the cafe downstairs.",
    "I got a letter from the university today.",
    "The train leaves at half past seven.",
]
VOICES = {"male": "en-us", "female": "en-us+f3"}
# (attribute, espeak field, level name -> espeak value, feature used)
LEVELS = {
    "speed": ("rate", {"slow": 110, "normal": 175, "fast": 240}, "syllable_rate"),
    "volume": ("amplitude", {"soft": 40, "normal": 100, "loud": 180}, "level_dbfs"),
    "pitch": ("pitch", {"low": 15, "normal": 50, "high": 85}, "f0_median_hz"),
}


def render_set(sentences: list[str]) -> list[tuple[str, str, str, Prosody]]:
    """(attribute, level, register, prosody) for every sentence x voice x level."""
    tts = EspeakTTS()
    rows = []
    for attr, (field, levels, _) in LEVELS.items():
        for register, voice in VOICES.items():
            for level, value in levels.items():
                for text in sentences:
                    v = replace(EspeakVoice(voice=voice), **{field: value})
                    samples = decode_bytes(tts.render(text, v), "espeak-ng")
                    rows.append((attr, level, register, analyse(samples)))
    return rows


def _midpoints(rows, attr: str, feature: str, register: str | None) -> list[float]:
    names = list(LEVELS[attr][1])
    med = [np.median([getattr(p, feature) for a, lv, r, p in rows
                      if a == attr and lv == n and (register is None or r == register)])
           for n in names]
    return [float((med[i] + med[i + 1]) / 2) for i in range(len(med) - 1)]


def fit(rows) -> dict:
    """Thresholds in the layout of bench.backends.style.THRESHOLDS."""
    out = {
        "speed": _midpoints(rows, "speed", "syllable_rate", None),
        "volume": _midpoints(rows, "volume", "level_dbfs", None),
        "pitch": {r: _midpoints(rows, "pitch", "f0_median_hz", r) for r in VOICES},
    }
    normal = {r: np.median([p.f0_median_hz for a, lv, rr, p in rows if lv == "normal" and rr == r])
              for r in VOICES}
    out["gender_f0_hz"] = float((normal["male"] + normal["female"]) / 2)
    return {k: ([round(x, 2) for x in v] if isinstance(v, list) else
                {r: [round(x, 2) for x in t] for r, t in v.items()} if isinstance(v, dict)
                else round(v, 2)) for k, v in out.items()}


def accuracy(rows) -> dict[str, dict[str, float]]:
    """Share of renderings the analyser puts in the right level / register."""
    from bench.backends.style import caption_prosody

    res: dict[str, dict[str, float]] = {}
    for attr in LEVELS:
        sel = [(lv, r, caption_prosody(p)) for a, lv, r, p in rows if a == attr]
        three = np.mean([getattr(c, attr) == lv for lv, _, c in sel])
        ext = [(lv, c) for lv, _, c in sel if lv != "normal"]
        two = np.mean([getattr(c, attr) == lv for lv, c in ext])
        res[attr] = {"three_level": float(three), "extremes": float(two), "n": len(sel)}
    normal = [(r, caption_prosody(p)) for a, lv, r, p in rows if lv == "normal"]
    res["gender"] = {"accuracy": float(np.mean([c.gender == r for r, c in normal])),
                     "n": len(normal)}
    return res


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true",
                    help="score current thresholds on held-out audio")
    ap.add_argument("--out", type=Path, help="also write the result as JSON here")
    args = ap.parse_args(argv)
    rows = render_set(HELD_OUT_SENTENCES if args.check else CALIBRATION_SENTENCES)
    result = accuracy(rows) if args.check else fit(rows)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
