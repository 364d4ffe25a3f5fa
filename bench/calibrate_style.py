"""Calibrate (and check) the offline style analyser's thresholds on espeak-ng audio.

    python -m bench.calibrate_style              # speaker-relative bands: fit, then the
                                                 # per-voice x per-attribute accuracy table
    python -m bench.calibrate_style --absolute   # population bands (no register): fit
    python -m bench.calibrate_style --check      # population bands: held-out accuracy

Each attribute is varied over three espeak-ng levels while the others stay at their
defaults. A threshold between two adjacent levels is the midpoint of the two levels'
medians.

Speaker-relative: six voices (three male, three female, default pitch 90-210 Hz) say the
calibration sentences; each voice's register is the median over all its clips, as the
scorer builds it from a speaker's prompts. Pitch is fitted in semitones from the
register, speed as a ratio to it. The table scores unseen sentences for every voice, and
for en-us+f2, a voice left out of the fit whose low setting (about 140 Hz) lies inside
the male range.

Population bands (used when no register is known): two voices (male `en-us`, female
`en-us+f3`); pitch per gender register; the gender cue between the two voices' defaults.
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


# Speaker-relative calibration: voice -> the gender its register should be captioned as.
CAL_VOICES = {"en-us": "male", "en-us+m1": "male", "en-us+m3": "male",
              "en-us+f1": "female", "en-us+f3": "female", "en-us+f4": "female"}
HELD_OUT_VOICE = {"en-us+f2": "female"}
RELATIVE_SENTENCES = CALIBRATION_SENTENCES[:3]
REL_FEATURES = {"pitch": "f0_median_hz", "speed": "syllable_rate"}


def render_voices(sentences: list[str], voices: dict[str, str]
                  ) -> list[tuple[str, str, str, Prosody]]:
    """(attribute, level, voice, prosody) for every voice x attribute x level x sentence."""
    tts, rows = EspeakTTS(), []
    for voice in voices:
        for attr, (field, levels, _) in LEVELS.items():
            for level, value in levels.items():
                for text in sentences:
                    v = replace(EspeakVoice(voice=voice, rate=175), **{field: value})
                    samples = decode_bytes(tts.render(text, v), "espeak-ng")
                    rows.append((attr, level, voice, analyse(samples)))
    return rows


def voice_registers(rows) -> dict:
    """voice -> Register over all of that voice's clips (styles mixed, as in a data set)."""
    from bench.backends.style import register_of

    return {v: register_of([p for _, _, vv, p in rows if vv == v])
            for v in dict.fromkeys(r[2] for r in rows)}


def _relative(attr: str, p: Prosody, reg) -> float:
    if attr == "pitch":
        return float(12 * np.log2(p.f0_median_hz / reg.f0_hz))
    return float(p.syllable_rate / reg.syllable_rate)


def fit_relative(rows) -> dict[str, list[float]]:
    """Bands in the layout of bench.backends.style.RELATIVE_THRESHOLDS."""
    regs = voice_registers(rows)
    out = {}
    for attr, key in (("pitch", "pitch_st"), ("speed", "speed_ratio")):
        med = [np.median([_relative(attr, p, regs[v]) for a, lv, v, p in rows
                          if a == attr and lv == level]) for level in LEVELS[attr][1]]
        out[key] = [round(float((med[i] + med[i + 1]) / 2), 2) for i in range(len(med) - 1)]
    return out


def voice_table(rows) -> dict[str, dict[str, float]]:
    """voice -> attribute -> share of clips captioned at the rendered level (3 levels),
    plus the gender cue of the register."""
    from bench.backends.style import caption_prosody

    regs = voice_registers(rows)
    table = {}
    for voice, reg in regs.items():
        res = {}
        for attr in LEVELS:
            caps = [(lv, caption_prosody(p, reg)) for a, lv, v, p in rows
                    if a == attr and v == voice]
            res[attr] = round(float(np.mean([getattr(c, attr) == lv for lv, c in caps])), 3)
        gender = {**CAL_VOICES, **HELD_OUT_VOICE}.get(voice)
        res["gender"] = float(caption_prosody(rows[0][3], reg).gender == gender)
        res["register_f0_hz"] = round(reg.f0_hz, 1)
        table[voice] = res
    return table


def format_voice_table(table: dict[str, dict[str, float]]) -> str:
    """Markdown: one row per voice, the held-out voice marked."""
    lines = ["| voice | register F0 (Hz) | pitch | speed | volume | gender cue |",
             "|---|---|---|---|---|---|"]
    for voice, r in table.items():
        name = f"{voice} (held out)" if voice in HELD_OUT_VOICE else voice
        lines.append(f"| {name} | {r['register_f0_hz']:.0f} | {r['pitch']:.2f} | "
                     f"{r['speed']:.2f} | {r['volume']:.2f} | {r['gender']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.calibrate_style", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--absolute", action="store_true",
                      help="fit the population bands instead")
    mode.add_argument("--check", action="store_true",
                      help="population bands in bench/backends/style.py on held-out audio")
    ap.add_argument("--out", type=Path, help="also write the result as JSON here")
    args = ap.parse_args(argv)
    if args.check or args.absolute:
        rows = render_set(HELD_OUT_SENTENCES if args.check else CALIBRATION_SENTENCES)
        result = accuracy(rows) if args.check else fit(rows)
        print(json.dumps(result, indent=2))
    else:
        fitted = fit_relative(render_voices(RELATIVE_SENTENCES, CAL_VOICES))
        table = voice_table(render_voices(HELD_OUT_SENTENCES[:3],
                                          {**CAL_VOICES, **HELD_OUT_VOICE}))
        result = {"fitted_relative_thresholds": fitted, "held_out_sentences": table}
        print("Fitted speaker-relative bands:", json.dumps(fitted))
        print(format_voice_table(table))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
