"""Fit the offline style analyser's thresholds on espeak-ng audio, then check them per voice.

    python -m bench.calibrate_style                    # fit, then the held-out table
    python -m bench.calibrate_style --asr pocketsphinx # speed from pocketsphinx transcripts
    python -m bench.calibrate_style --out cal.json     # also write everything as JSON

Each attribute is varied over three espeak-ng levels while the others stay at their
defaults: rate 120 / 175 / 230 words per minute, pitch 25 / 50 / 85, amplitude 40 / 100 /
180. The default clip (rate 175, pitch 50, amplitude 100) is the "normal" level of all
three attributes.

Fit: six calibration voices (three male, three female) say three calibration sentences.
Speed and volume cuts are midpoints of adjacent level medians (speed in phones of the
sentence per second of active speech); pitch is fitted in semitones from each voice's
register (the median F0 over all of that voice's clips, as the scorer builds it from a
speaker's prompts); the gender cue's safe ranges end a semitone beyond the lowest female
and the highest male calibration clip.

Check (the table): six other voices, among them female voices whose low setting lies
inside the male range (en-us+f2, en-us+steph at about 140-160 Hz), say four other
sentences; the captions come from the thresholds in bench/backends/style.py with each
voice's register. A cell is the share of that voice's clips captioned at the rendered
level; "unknown" counts as wrong. By default the transcript is the sentence itself (what a
good ASR returns on clean speech); `--asr pocketsphinx` uses the offline ASR's transcripts
instead, which shows what its dropped words do to the speed column.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from bench.backends.pronunciation import count_phones
from bench.backends.prosody import Prosody, analyse
from bench.backends.style import (
    GENDER_MARGIN_ST,
    RELATIVE_THRESHOLDS,
    THRESHOLDS,
    UNKNOWN,
    caption_prosody,
    gender_of_f0,
    register_of,
)
from bench.backends.tts import EspeakTTS, EspeakVoice
from bench.data.audio import decode_bytes, wav_bytes

CALIBRATION_SENTENCES = [
    "I just bumped into my ex at the grocery store.",
    "The meeting has been moved to Thursday afternoon.",
    "My brother is coming to visit next week.",
]
HELD_OUT_SENTENCES = [
    "Your package was delivered to the front desk.",
    "They changed the menu at the cafe downstairs.",
    "I got a letter from the university today.",
    "The train leaves at half past seven.",
]
# voice -> the gender its register should be captioned as
CALIBRATION_VOICES = {"en-us": "male", "en-us+m1": "male", "en-us+m3": "male",
                      "en-us+f1": "female", "en-us+f3": "female", "en-us+f4": "female"}
HELD_OUT_VOICES = {"en-us+m2": "male", "en-us+m6": "male", "en-us+f2": "female",
                   "en-us+f5": "female", "en-us+steph": "female", "en-us+Annie": "female"}
# attribute -> (espeak field, level -> value)
LEVELS = {
    "speed": ("rate", {"slow": 120, "normal": 175, "fast": 230}),
    "volume": ("amplitude", {"soft": 40, "normal": 100, "loud": 180}),
    "pitch": ("pitch", {"low": 25, "normal": 50, "high": 85}),
}
DEFAULT_VOICE = EspeakVoice(rate=175, pitch=50, amplitude=100)
ATTRIBUTES = tuple(LEVELS)


@dataclass(frozen=True)
class Clip:
    """One rendering: which levels it stands for, what was said and what was measured."""

    voice: str
    text: str
    levels: dict[str, str]  # attribute -> rendered level (the default clip has all three)
    prosody: Prosody
    transcript: str  # the sentence, or an ASR's transcript of the clip


def _settings() -> list[tuple[dict[str, str], dict[str, int]]]:
    """(levels it stands for, espeak changes): the default once, then every other level."""
    out = [({a: "normal" for a in ATTRIBUTES}, {})]
    for attr, (field, levels) in LEVELS.items():
        out += [({attr: level}, {field: value}) for level, value in levels.items()
                if level != "normal"]
    return out


def render(voices: dict[str, str], sentences: list[str], transcribe=None) -> list[Clip]:
    """Every voice x setting x sentence, measured; `transcribe(wav_bytes)` gives the
    transcript (default: the sentence itself)."""
    tts, clips = EspeakTTS(), []
    for voice in voices:
        for levels, change in _settings():
            for text in sentences:
                wav = tts.render(text, replace(DEFAULT_VOICE, voice=voice, **change))
                samples = decode_bytes(wav, f"espeak-ng {voice} {change}")
                transcript = transcribe(wav) if transcribe else text
                clips.append(Clip(voice, text, levels, analyse(samples), transcript))
    return clips


def speaking_rate(clip: Clip) -> float:
    """Phones of the clip's transcript per second of active speech."""
    return count_phones(clip.transcript) / clip.prosody.active_s


def registers(clips: list[Clip]) -> dict:
    """voice -> Register over all of that voice's clips (styles mixed, as in a data set)."""
    return {v: register_of([c.prosody for c in clips if c.voice == v])
            for v in dict.fromkeys(c.voice for c in clips)}


def _midpoints(values_by_level: list[list[float]]) -> list[float]:
    med = [float(np.median(v)) for v in values_by_level]
    return [round((med[i] + med[i + 1]) / 2, 2) for i in range(len(med) - 1)]


def _by_level(clips: list[Clip], attr: str, value) -> list[list[float]]:
    return [[value(c) for c in clips if c.levels.get(attr) == level] for level in LEVELS[attr][1]]


def fit(clips: list[Clip], genders: dict[str, str]) -> dict:
    """Thresholds in the layout of bench.backends.style (THRESHOLDS and RELATIVE_THRESHOLDS)."""
    regs = registers(clips)
    f0 = {g: [c.prosody.f0_median_hz for c in clips
              if genders[c.voice] == g and c.prosody.f0_median_hz > 0] for g in ("male", "female")}
    margin = 2 ** (GENDER_MARGIN_ST / 12)
    return {
        "speed": _midpoints(_by_level(clips, "speed", speaking_rate)),
        "volume": _midpoints(_by_level(clips, "volume", lambda c: c.prosody.level_dbfs)),
        "gender_f0_hz": {"male_below": round(min(f0["female"]) / margin, 1),
                         "female_above": round(max(f0["male"]) * margin, 1)},
        "pitch_st": _midpoints(_by_level(clips, "pitch", lambda c: 12 * np.log2(
            c.prosody.f0_median_hz / regs[c.voice].f0_hz))),
    }


def in_style_py() -> dict:
    """The thresholds the captioner uses now, in the layout `fit` returns."""
    return {"speed": THRESHOLDS["speed"], "volume": THRESHOLDS["volume"],
            "gender_f0_hz": THRESHOLDS["gender_f0_hz"], "pitch_st": RELATIVE_THRESHOLDS["pitch_st"]}


def voice_table(clips: list[Clip], genders: dict[str, str]) -> dict[str, dict]:
    """voice -> accuracy per attribute with the voice's register ("unknown" is wrong), the
    register's gender cue, and the gender cue of single clips without a register."""
    regs = registers(clips)
    table = {}
    for voice, reg in regs.items():
        mine = [c for c in clips if c.voice == voice]
        row: dict = {"register_f0_hz": round(reg.f0_hz, 1)}
        for attr in ATTRIBUTES:
            hits = [getattr(caption_prosody(c.prosody, reg, c.transcript), attr) == c.levels[attr]
                    for c in mine if attr in c.levels]
            row[attr] = round(float(np.mean(hits)), 3)
            row[f"{attr}_n"] = len(hits)
        row["gender"] = float(gender_of_f0(reg.f0_hz) == genders[voice])
        alone = [gender_of_f0(c.prosody.f0_median_hz) for c in mine]
        row["gender_alone_right"] = round(float(np.mean([g == genders[voice] for g in alone])), 3)
        row["gender_alone_unknown"] = round(float(np.mean([g == UNKNOWN for g in alone])), 3)
        table[voice] = row
    return table


def format_table(table: dict[str, dict]) -> str:
    """Markdown: one row per voice."""
    lines = ["| voice | register F0 (Hz) | pitch | speed | volume | gender cue (register) | "
             "gender cue, one clip alone: right / unknown |", "|---|---|---|---|---|---|---|"]
    for voice, r in table.items():
        lines.append(f"| {voice} | {r['register_f0_hz']:.0f} | {r['pitch']:.2f} | "
                     f"{r['speed']:.2f} | {r['volume']:.2f} | "
                     f"{'right' if r['gender'] else 'wrong'} | "
                     f"{r['gender_alone_right']:.2f} / {r['gender_alone_unknown']:.2f} |")
    return "\n".join(lines)


def pocketsphinx_transcriber(cache_dir: Path):
    """transcribe(wav_bytes) with the offline default ASR (cached under `cache_dir`)."""
    from bench.backends.asr import PocketSphinxASR
    from bench.backends.cache import Cache
    from bench.backends.runtime import Runtime

    asr = PocketSphinxASR(Runtime(Cache(cache_dir / "asr.sqlite")))

    def transcribe(wav: bytes) -> str:
        path = cache_dir / "clip.wav"
        path.write_bytes(wav_bytes(decode_bytes(wav, "espeak-ng")))
        return asr.transcribe(str(path))

    return transcribe


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.calibrate_style", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--asr", choices=["script", "pocketsphinx"], default="script",
                    help="transcripts of the held-out clips: the sentence (default) or "
                         "pocketsphinx's")
    ap.add_argument("--out", type=Path, help="also write the result as JSON here")
    args = ap.parse_args(argv)
    fitted = fit(render(CALIBRATION_VOICES, CALIBRATION_SENTENCES), CALIBRATION_VOICES)
    print(f"Fit on {len(CALIBRATION_VOICES)} voices ({', '.join(CALIBRATION_VOICES)}) x "
          f"{len(CALIBRATION_SENTENCES)} sentences:")
    print("  fitted now:            ", json.dumps(fitted))
    print("  in bench/backends/style.py:", json.dumps(in_style_py()))
    with tempfile.TemporaryDirectory() as tmp:
        transcribe = pocketsphinx_transcriber(Path(tmp)) if args.asr == "pocketsphinx" else None
        table = voice_table(render(HELD_OUT_VOICES, HELD_OUT_SENTENCES, transcribe),
                            HELD_OUT_VOICES)
    n = table[next(iter(table))]
    print(f"\nHeld out: {len(HELD_OUT_VOICES)} other voices x {len(HELD_OUT_SENTENCES)} other "
          f"sentences, thresholds of style.py, transcripts: {args.asr}; share of clips "
          f"captioned at the rendered level ({n['pitch_n']} per attribute and voice; "
          f"'unknown' counts as wrong):")
    print(format_table(table))
    if args.out:
        result = {"fitted": fitted, "style_py": in_style_py(), "asr": args.asr,
                  "held_out": table}
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
