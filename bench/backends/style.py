"""Style captioners: the "how it was said" half of the scoring pipeline.

The paper uses Audio-Reasoner. Here: any OpenAI-compatible chat model that accepts
audio input (e.g. an audio LLM served by vLLM), and an offline prosody analyser.

The offline analyser measures prosody (bench.backends.prosody) and turns it into words with
thresholds fitted on espeak-ng audio by `python -m bench.calibrate_style`. Speed, volume,
pitch and the gender cue are calibrated; emotion/tone and age are *rules* over those
bands (no labelled emotional speech exists offline), and the caption says so. Absolute
volume depends on recording gain, so "loud/soft" is only meaningful between recordings
made alike (as in the synthetic set).

Pitch and speed are judged against the speaker's own register when one is known: a
`Register` is the median pitch and rate over several clips of the same speaker (the
scorer builds one per prompt `speaker` and one per reply folder). "High" then means high
*for this voice*: a low-pitched female voice at 140 Hz is "female, low", not "male,
high" as a single gender cut would have it. Without a register (one clip of an unknown
speaker) the population bands below are used and the caption says so. Per-voice
accuracy on several espeak-ng voices, one held out: `python -m bench.calibrate_style`.
On real speech expect far less: espeak-ng varies one knob at a time, people do not.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from bench.backends import prosody
from bench.backends.cache import code_digest, digest
from bench.backends.prompt_template import PromptTemplate, bundled_template, load_template
from bench.backends.prosody import Prosody, analyse
from bench.backends.remote import Endpoint, usage_of
from bench.backends.runtime import Runtime
from bench.data.audio import file_sha256, load_audio, wav_bytes

# Fitted by `python -m bench.calibrate_style` (espeak-ng 1.51, voices en-us / en-us+f3,
# six calibration sentences x three levels): midpoints of adjacent level medians.
THRESHOLDS = {
    "speed": [5.25, 6.98],  # syllable-rate proxy, peaks/s of active speech: slow|normal|fast
    "volume": [-24.23, -17.7],  # active RMS, dBFS: soft|normal|loud
    "pitch": {"male": [89.41, 124.48], "female": [188.05, 253.8]},  # median F0, Hz
    "gender_f0_hz": 157.76,  # median F0 below: male-typical register
}
# Speaker-relative bands, fitted by `python -m bench.calibrate_style` on six espeak-ng voices
# (three male, three female; en-us+f2 held out): pitch in semitones from the speaker's
# median F0, speed as a ratio to the speaker's median rate.
RELATIVE_THRESHOLDS = {"pitch_st": [-2.5, 3.18], "speed_ratio": [0.78, 1.12]}
MIN_REGISTER_CLIPS = 3  # fewer clips say too little about a speaker's typical voice
CHILD_F0_HZ = 300.0  # rule, not fitted: adult voices rarely hold a median this high
ROUGH_JITTER = 0.03  # rule: jitter above ~3% is typical of aged or strained voices


class StyleError(RuntimeError):
    """A captioner that returned nothing usable."""


@dataclass
class StyleCaption:
    """Structured style of one speech file, plus the text the judge reads."""

    caption: str
    emotion: str | None = None
    speed: str | None = None  # slow | normal | fast
    volume: str | None = None  # soft | normal | loud
    pitch: str | None = None  # low | normal | high
    gender: str | None = None  # male | female (voice register cue)
    age: str | None = None  # child | adult | older
    features: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Register:
    """A speaker's typical voice: medians over several of their clips."""

    f0_hz: float
    syllable_rate: float
    n_clips: int

    def as_dict(self) -> dict:
        return {"f0_hz": round(self.f0_hz, 2), "syllable_rate": round(self.syllable_rate, 3),
                "n_clips": self.n_clips}


def register_of(measured: list[Prosody]) -> Register | None:
    """The register of one speaker's clips, or None when too few clips have a pitch."""
    voiced = [p for p in measured if p.f0_median_hz > 0]
    if len(voiced) < MIN_REGISTER_CLIPS:
        return None
    return Register(float(np.median([p.f0_median_hz for p in voiced])),
                    float(np.median([p.syllable_rate for p in voiced])), len(voiced))


class StyleCaptioner(Protocol):
    name: str

    def identity(self) -> dict[str, str]:
        """What shapes the captions (model and prompt, or rule code and thresholds)."""
        ...

    def describe(self, audio_path: str, register: Register | None = None,
                 transcript: str | None = None) -> StyleCaption:
        """Caption one file; `register` is its speaker's typical voice, when known, and
        `transcript` what ASR recognised in it."""
        ...


def _band(value: float, cuts: list[float], names: tuple[str, str, str]) -> str:
    return names[0] if value < cuts[0] else names[2] if value >= cuts[1] else names[1]


def _emotion(speed: str, volume: str, pitch: str) -> str:
    # Rules in the spirit of the vocal-affect literature: arousal raises pitch, rate and
    # level; low arousal lowers them. Valence is not recoverable from these cues alone.
    if pitch == "high" and (speed == "fast" or volume == "loud"):
        return "excited / happy (high arousal)"
    if volume == "loud" and speed == "fast":
        return "angry / tense (high arousal, not raised pitch)"
    if speed == "slow" and (pitch == "low" or volume == "soft"):
        return "sad / subdued (low arousal)"
    if speed == "slow":
        return "slow, drawn-out delivery (possibly ironic or hesitant)"
    return "neutral / calm"


def caption_prosody(p: Prosody, register: Register | None = None) -> StyleCaption:
    """Words for a prosody measurement: speaker-relative with a register, else population bands."""
    t, rel = THRESHOLDS, RELATIVE_THRESHOLDS
    volume = _band(p.level_dbfs, t["volume"], ("soft", "normal", "loud"))
    if register is not None:
        speed = _band(p.syllable_rate / register.syllable_rate, rel["speed_ratio"],
                      ("slow", "normal", "fast"))
    else:
        speed = _band(p.syllable_rate, t["speed"], ("slow", "normal", "fast"))
    gender = pitch = None
    if register is not None:
        # The speaker's typical pitch decides the register cue, this clip's pitch the level.
        gender = "female" if register.f0_hz >= t["gender_f0_hz"] else "male"
        if p.f0_median_hz > 0:
            pitch = _band(12 * np.log2(p.f0_median_hz / register.f0_hz), rel["pitch_st"],
                          ("low", "normal", "high"))
    elif p.f0_median_hz > 0:
        gender = "female" if p.f0_median_hz >= t["gender_f0_hz"] else "male"
        pitch = _band(p.f0_median_hz, t["pitch"][gender], ("low", "normal", "high"))
    age = ("child" if p.f0_median_hz >= CHILD_F0_HZ else
           "older" if p.jitter >= ROUGH_JITTER else "adult")
    emotion = _emotion(speed, volume, pitch or "normal")
    if pitch and register is not None:
        pitch_text = (f"{pitch} for this speaker (median {p.f0_median_hz:.0f} Hz vs their "
                      f"usual {register.f0_hz:.0f} Hz, range {p.f0_range_st:.1f} semitones)")
    elif pitch:
        pitch_text = (f"{pitch} for a {gender}-typical voice (median {p.f0_median_hz:.0f} Hz, "
                      f"range {p.f0_range_st:.1f} semitones; speaker's usual pitch unknown)")
    else:
        pitch_text = "no pitch found"
    rate_text = (f"{p.syllable_rate:.1f} syllables/s vs their usual {register.syllable_rate:.1f}"
                 if register is not None else f"{p.syllable_rate:.1f} syllables/s")
    caption = (
        f"Emotion/tone (rule-based guess): {emotion}. Speed: {speed} ({rate_text}). "
        f"Volume: {volume} ({p.level_dbfs:.0f} dBFS). Pitch: {pitch_text}. Voice cues: "
        f"{gender or 'unknown'}-typical register, {age}-sounding. [offline prosody analyser]"
    )
    features = p.as_dict() | ({"register": register.as_dict()} if register else {})
    return StyleCaption(caption, emotion, speed, volume, pitch, gender, age, features)


# Any edit to the measuring or captioning code changes this, and with it the cache key
# and the run fingerprint: no caption made by older rules is reused.
RULES_VERSION = code_digest(prosody, _band, _emotion, caption_prosody, register_of)


class ProsodyCaptioner:
    """Offline: parselmouth + openSMILE features -> calibrated caption."""

    name = "prosody/egemaps-v1"

    def __init__(self, runtime: Runtime):
        self.runtime = runtime

    def identity(self) -> dict[str, str]:
        return {"rules": RULES_VERSION,
                "thresholds": digest([THRESHOLDS, RELATIVE_THRESHOLDS, MIN_REGISTER_CLIPS])}

    def measure(self, audio_path: str) -> Prosody:
        """The prosody of one file (cached by content): what registers are built from."""
        def compute():
            return analyse(load_audio(audio_path)).as_dict(), {}

        inputs = {"audio": file_sha256(audio_path), "rules": RULES_VERSION}
        return Prosody(**self.runtime.call("style", "prosody", "measure", inputs, compute,
                                           remote=False))

    def describe(self, audio_path: str, register: Register | None = None,
                 transcript: str | None = None) -> StyleCaption:
        # The rules read the voice alone; `transcript` serves captioners that read words.
        # Thresholds, rules and register are part of the key: no stale caption is served.
        inputs = {"audio": file_sha256(audio_path), "rules": RULES_VERSION,
                  "thresholds": [THRESHOLDS, RELATIVE_THRESHOLDS],
                  "register": register.as_dict() if register else None}
        value = self.runtime.call(
            "style", "prosody", "egemaps-v1", inputs,
            lambda: (caption_prosody(self.measure(audio_path), register).as_dict(), {}),
            remote=False)
        return StyleCaption(**value)


# What a --caption-prompt template can use (the bundled prompts/style.txt uses none).
CAPTION_FIELDS = {"transcript": "what ASR recognised in this clip ('(nothing recognised)' "
                                "when empty)"}


def caption_prompt(path: str | Path | None = None) -> PromptTemplate:
    """The remote captioner's prompt template: the file at `path` (--caption-prompt), else
    the bundled prompts/style.txt."""
    if path is not None:
        return load_template(path, CAPTION_FIELDS, "--caption-prompt")
    return bundled_template("style.txt", CAPTION_FIELDS, "--caption-prompt")


def parse_style_reply(text: str) -> StyleCaption:
    """Read the model's JSON when it gave one; otherwise keep its free text as the caption."""
    if not text.strip():
        raise StyleError("style captioner returned an empty reply")
    match = re.search(r"\{.*\}", text, re.S)
    data = None
    if match:
        try:
            data = json.loads(match.group(0))
        except json.JSONDecodeError:
            data = None
    if not isinstance(data, dict):
        return StyleCaption(caption=text.strip())

    def get(key):
        v = data.get(key)
        return str(v).strip().lower() if v not in (None, "") else None

    parts = [f"{k.capitalize()}: {get(k)}." for k in
             ("emotion", "speed", "volume", "pitch", "gender", "age") if get(k)]
    desc = str(data.get("description") or "").strip()
    caption = " ".join(parts + ([desc] if desc else [])) or text.strip()
    return StyleCaption(caption, get("emotion"), get("speed"), get("volume"), get("pitch"),
                        get("gender"), get("age"))


class OpenAIStyleCaptioner:
    """An audio-understanding chat model behind an OpenAI-compatible API."""

    def __init__(self, endpoint: Endpoint, runtime: Runtime,
                 prompt: PromptTemplate | None = None):
        self.endpoint, self.runtime = endpoint, runtime
        self.prompt = prompt or caption_prompt()
        self.name = f"openai-style/{endpoint.label()}"
        self._client = endpoint.client()

    def identity(self) -> dict[str, str]:
        return {"model": self.endpoint.label(), "prompt_sha256": self.prompt.sha256,
                "parser": code_digest(parse_style_reply)}

    def describe(self, audio_path: str, register: Register | None = None,
                 transcript: str | None = None) -> StyleCaption:
        # The audio model judges the voice itself; a register is only for the prosody rules.
        audio_b64 = base64.b64encode(wav_bytes(load_audio(audio_path))).decode()
        system, text = self.prompt.render({"transcript": transcript or "(nothing recognised)"})
        messages = ([{"role": "system", "content": system}] if system is not None else []) + [
            {"role": "user", "content": [
                {"type": "text", "text": text},
                {"type": "input_audio", "input_audio": {"data": audio_b64, "format": "wav"}},
            ]}]

        def compute():
            resp = self._client.chat.completions.create(
                model=self.endpoint.model, temperature=0, messages=messages)
            return {"text": resp.choices[0].message.content or ""}, usage_of(resp)

        # The rendered prompt is the key: with the bundled one, captions cached before stay valid.
        inputs = {"audio": file_sha256(audio_path), "prompt": text}
        if system is not None:
            inputs["system"] = system
        text = self.runtime.call("style", "openai-style", self.endpoint.label(), inputs, compute,
                                 remote=True)["text"]
        return parse_style_reply(text)
