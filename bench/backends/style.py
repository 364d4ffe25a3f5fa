"""Style captioners: the "how it was said" half of the scoring pipeline.

The paper uses Audio-Reasoner. Here: any OpenAI-compatible chat model that accepts
audio input (e.g. an audio LLM served by vLLM), and an offline prosody analyser.

The offline analyser measures prosody (bench.backends.prosody) and turns it into words with
thresholds fitted on espeak-ng audio by `python -m bench.calibrate_style`. Speed, volume,
pitch and the gender cue are calibrated; emotion/tone and age are *rules* over those
bands (no labelled emotional speech exists offline), and the caption says so. Absolute
volume depends on recording gain, so "loud/soft" is only meaningful between recordings
made alike (as in the synthetic set).

- Speed is phones of the clip's transcript (bench.backends.pronunciation says why phones,
  not syllables) per second of active speech (voice activity; voiced time moved with the
  pitch setting). Without a transcript it is "unknown": no acoustic guess is offered. The
  rate is only as right as the transcript: an ASR that drops words (pocketsphinx on
  espeak-ng speech does) makes speech sound slow.
- Pitch is judged against the speaker's own `Register` (median F0 over several clips of
  the same speaker; the scorer builds one per prompt `speaker` and one per reply folder):
  "high" means high *for this voice*. Without a register pitch is "unknown": one clip
  cannot tell a low female voice from a raised male one.
- The gender cue is read from the register's F0 when there is one, else from the clip's,
  and only where that F0 lies clearly inside one population's range; in the overlap
  (roughly 135-160 Hz for espeak-ng's voices) it is "unknown".

"unknown" is a value the judges see as such (bench.backends.judge). Per-voice accuracy on
espeak-ng voices left out of the fit: `python -m bench.calibrate_style`. On real speech
expect less: espeak-ng varies one knob at a time, people do not.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from bench.backends import pronunciation, prosody
from bench.backends.cache import code_digest, digest
from bench.backends.prompt_template import PromptTemplate, bundled_template, load_template
from bench.backends.pronunciation import count_phones, count_syllables
from bench.backends.prosody import Prosody, analyse
from bench.backends.remote import Endpoint, usage_of
from bench.backends.runtime import Runtime
from bench.data.audio import file_sha256, load_audio, wav_bytes

UNKNOWN = "unknown"
# Fitted by `python -m bench.calibrate_style` (espeak-ng 1.51, six calibration voices,
# three calibration sentences): speed and volume cuts are midpoints of adjacent level
# medians; a clip is "male" below the lowest F0 of any female calibration clip and
# "female" above the highest of any male one, each moved GENDER_MARGIN_ST further out.
THRESHOLDS = {
    "speed": [11.58, 15.65],  # transcript phones per second of active speech: slow|normal|fast
    "volume": [-24.41, -17.89],  # active RMS, dBFS: soft|normal|loud
    "gender_f0_hz": {"male_below": 133.9, "female_above": 161.4},  # median F0, Hz
}
# Pitch in semitones from the speaker's register (median F0): low|normal|high.
RELATIVE_THRESHOLDS = {"pitch_st": [-1.88, 3.18]}
GENDER_MARGIN_ST = 1.0  # rule: a semitone of safety on each side of the overlap
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
    speed: str | None = None  # slow | normal | fast | unknown
    volume: str | None = None  # soft | normal | loud
    pitch: str | None = None  # low | normal | high | unknown
    gender: str | None = None  # male | female | unknown (voice register cue)
    age: str | None = None  # child | adult | older
    features: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Register:
    """A speaker's typical voice: the median F0 over several of their clips."""

    f0_hz: float
    n_clips: int

    def as_dict(self) -> dict:
        return {"f0_hz": round(self.f0_hz, 2), "n_clips": self.n_clips}


def register_of(measured: list[Prosody]) -> Register | None:
    """The register of one speaker's clips, or None when too few clips have a pitch."""
    voiced = [p for p in measured if p.f0_median_hz > 0]
    if len(voiced) < MIN_REGISTER_CLIPS:
        return None
    return Register(float(np.median([p.f0_median_hz for p in voiced])), len(voiced))


class StyleCaptioner(Protocol):
    name: str

    def identity(self) -> dict[str, str]:
        """What shapes the captions (model and prompt, or rule code and thresholds)."""
        ...

    def describe(self, audio_path: str, register: Register | None = None,
                 transcript: str | None = None) -> StyleCaption:
        """Caption one file; `register` is its speaker's typical voice and `transcript`
        its words, when known."""
        ...


def _band(value: float, cuts: list[float], names: tuple[str, str, str]) -> str:
    return names[0] if value < cuts[0] else names[2] if value >= cuts[1] else names[1]


def _emotion(speed: str, volume: str, pitch: str) -> str:
    # Rules in the spirit of the vocal-affect literature: arousal raises pitch, rate and
    # level; low arousal lowers them. Valence is not recoverable from these cues alone.
    # An "unknown" cue matches none of the rules, as a normal one would not.
    if pitch == "high" and (speed == "fast" or volume == "loud"):
        return "excited / happy (high arousal)"
    if volume == "loud" and speed == "fast":
        return "angry / tense (high arousal, not raised pitch)"
    if speed == "slow" and (pitch == "low" or volume == "soft"):
        return "sad / subdued (low arousal)"
    if speed == "slow":
        return "slow, drawn-out delivery (possibly ironic or hesitant)"
    return "neutral / calm"


def gender_of_f0(f0_hz: float) -> str:
    """male | female where `f0_hz` is clearly inside one population's range, else unknown."""
    cuts = THRESHOLDS["gender_f0_hz"]
    if f0_hz <= 0:
        return UNKNOWN
    return ("male" if f0_hz < cuts["male_below"] else
            "female" if f0_hz > cuts["female_above"] else UNKNOWN)


def _speed(p: Prosody, transcript: str | None) -> tuple[str, str, dict]:
    """(band, caption text, features) of the speaking rate: transcript phones per second."""
    if transcript is None:
        return UNKNOWN, "unknown (no transcript to count what was said)", {}
    phones = count_phones(transcript)
    if phones == 0:
        return UNKNOWN, "unknown (no words in the transcript)", {"phones": 0}
    rate, syl = phones / p.active_s, count_syllables(transcript)
    band = _band(rate, THRESHOLDS["speed"], ("slow", "normal", "fast"))
    text = (f"{band} ({rate:.1f} phones/s: {phones} phones, {syl} syllables in "
            f"{p.active_s:.1f} s of speech)")
    return band, text, {"phones": phones, "syllables": syl, "phone_rate": round(rate, 3)}


def _pitch(p: Prosody, register: Register | None) -> tuple[str, str]:
    """(band, caption text) of the pitch level, relative to the speaker's register."""
    if p.f0_median_hz <= 0:
        return UNKNOWN, "unknown (no pitch found)"
    if register is None:
        return UNKNOWN, (f"unknown (median {p.f0_median_hz:.0f} Hz; the speaker's usual "
                         "pitch is not known, so high or low cannot be told)")
    band = _band(12 * np.log2(p.f0_median_hz / register.f0_hz), RELATIVE_THRESHOLDS["pitch_st"],
                 ("low", "normal", "high"))
    return band, (f"{band} for this speaker (median {p.f0_median_hz:.0f} Hz vs their usual "
                  f"{register.f0_hz:.0f} Hz, range {p.f0_range_st:.1f} semitones)")


def caption_prosody(p: Prosody, register: Register | None = None,
                    transcript: str | None = None) -> StyleCaption:
    """Words for a prosody measurement; speed needs the transcript, pitch the register."""
    volume = _band(p.level_dbfs, THRESHOLDS["volume"], ("soft", "normal", "loud"))
    speed, speed_text, speed_features = _speed(p, transcript)
    pitch, pitch_text = _pitch(p, register)
    gender = gender_of_f0(register.f0_hz if register else p.f0_median_hz)
    gender_text = (f"{gender}-typical register" if gender != UNKNOWN else
                   "gender unknown (pitch between typical male and female voices)")
    age = ("child" if p.f0_median_hz >= CHILD_F0_HZ else
           "older" if p.jitter >= ROUGH_JITTER else "adult")
    emotion = _emotion(speed, volume, pitch)
    caption = (
        f"Emotion/tone (rule-based guess): {emotion}. Speed: {speed_text}. "
        f"Volume: {volume} ({p.level_dbfs:.0f} dBFS). Pitch: {pitch_text}. Voice cues: "
        f"{gender_text}, {age}-sounding. [offline prosody analyser; 'unknown' = not measurable "
        f"here]"
    )
    features = (p.as_dict() | speed_features
                | ({"register": register.as_dict()} if register else {}))
    return StyleCaption(caption, emotion, speed, volume, pitch, gender, age, features)


# Any edit to the measuring or captioning code changes this, and with it the cache key
# and the run fingerprint: no caption made by older rules is reused.
RULES_VERSION = code_digest(prosody, pronunciation, _band, _emotion, gender_of_f0, _speed, _pitch,
                            caption_prosody, register_of)


class ProsodyCaptioner:
    """Offline: parselmouth + openSMILE features + transcript syllables -> calibrated caption."""

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
        """Caption one file; speed from `transcript`, pitch against `register`."""
        # Thresholds, rules, register and transcript are part of the key: no stale caption.
        inputs = {"audio": file_sha256(audio_path), "rules": RULES_VERSION,
                  "thresholds": [THRESHOLDS, RELATIVE_THRESHOLDS],
                  "register": register.as_dict() if register else None,
                  "transcript": transcript}
        value = self.runtime.call(
            "style", "prosody", "egemaps-v1", inputs,
            lambda: (caption_prosody(self.measure(audio_path), register, transcript).as_dict(),
                     {}),
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
        """Caption one file; the model hears the voice itself (a register is only for the
        prosody rules) and reads `transcript` in its prompt."""
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
