"""Style captioners: the "how it was said" half of the scoring pipeline.

The paper uses Audio-Reasoner. Here: any OpenAI-compatible chat model that accepts
audio input (e.g. an audio LLM served by vLLM), and an offline prosody analyser.

The offline analyser measures prosody (bench.backends.prosody) and turns it into words with
thresholds fitted on espeak-ng audio by `python -m bench.calibrate_style` (values
below; held-out accuracy from `python -m bench.calibrate_style --check`). Speed,
volume, pitch and the gender cue are calibrated; emotion/tone and age are *rules* over
those bands (no labelled emotional speech exists offline), and the caption says so.
Absolute volume depends on recording gain, so "loud/soft" is only meaningful between
recordings made alike (as in the synthetic set).

Held-out accuracy (`--check`: 4 unseen sentences x 2 voices x 3 levels = 24 clips each):
speed 0.94 on slow-vs-fast (0.88 over three levels), volume 1.00, pitch 1.00 (pitch is
judged within the voice's register), gender cue 1.00. On real speech expect far less:
espeak-ng varies one knob at a time, people do not.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import asdict, dataclass, field
from typing import Protocol

from bench.backends import prosody
from bench.backends.cache import code_digest, digest
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


class StyleCaptioner(Protocol):
    name: str

    def identity(self) -> dict[str, str]:
        """What shapes the captions (model and prompt, or rule code and thresholds)."""
        ...

    def describe(self, audio_path: str) -> StyleCaption: ...


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


def caption_prosody(p: Prosody) -> StyleCaption:
    """Words for a prosody measurement, using THRESHOLDS."""
    t = THRESHOLDS
    speed = _band(p.syllable_rate, t["speed"], ("slow", "normal", "fast"))
    volume = _band(p.level_dbfs, t["volume"], ("soft", "normal", "loud"))
    if p.f0_median_hz <= 0:
        gender, pitch = None, None
    else:
        gender = "female" if p.f0_median_hz >= t["gender_f0_hz"] else "male"
        pitch = _band(p.f0_median_hz, t["pitch"][gender], ("low", "normal", "high"))
    age = ("child" if p.f0_median_hz >= CHILD_F0_HZ else
           "older" if p.jitter >= ROUGH_JITTER else "adult")
    emotion = _emotion(speed, volume, pitch or "normal")
    pitch_text = (f"{pitch} for a {gender}-typical voice (median {p.f0_median_hz:.0f} Hz, "
                  f"range {p.f0_range_st:.1f} semitones)") if pitch else "no pitch found"
    caption = (
        f"Emotion/tone (rule-based guess): {emotion}. Speed: {speed} "
        f"({p.syllable_rate:.1f} syllables/s). Volume: {volume} ({p.level_dbfs:.0f} dBFS). "
        f"Pitch: {pitch_text}. Voice cues: {gender or 'unknown'}-typical register, "
        f"{age}-sounding. [offline prosody analyser]"
    )
    return StyleCaption(caption, emotion, speed, volume, pitch, gender, age, p.as_dict())


# Any edit to the measuring or captioning code changes this, and with it the cache key
# and the run fingerprint: no caption made by older rules is reused.
RULES_VERSION = code_digest(prosody, _band, _emotion, caption_prosody)


class ProsodyCaptioner:
    """Offline: parselmouth + openSMILE features -> calibrated caption."""

    name = "prosody/egemaps-v1"

    def __init__(self, runtime: Runtime):
        self.runtime = runtime

    def identity(self) -> dict[str, str]:
        return {"rules": RULES_VERSION, "thresholds": digest(THRESHOLDS)}

    def describe(self, audio_path: str) -> StyleCaption:
        def compute():
            return caption_prosody(analyse(load_audio(audio_path))).as_dict(), {}

        # The thresholds are part of the key: recalibrating must not serve stale captions.
        inputs = {"audio": file_sha256(audio_path), "thresholds": THRESHOLDS,
                  "rules": RULES_VERSION}
        value = self.runtime.call("style", "prosody", "egemaps-v1", inputs, compute, remote=False)
        return StyleCaption(**value)


STYLE_PROMPT = (
    "Listen to the speech clip and describe only HOW it is spoken, not what is said. "
    "Answer with one JSON object with these keys: "
    '"emotion" (the emotion or tone, e.g. excited, sad, angry, sarcastic, neutral), '
    '"speed" (slow|normal|fast), "volume" (soft|normal|loud), "pitch" (low|normal|high), '
    '"gender" (male|female|unclear), "age" (child|adult|older|unclear), '
    '"description" (one sentence on the speaking style).'
)


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

    def __init__(self, endpoint: Endpoint, runtime: Runtime):
        self.endpoint, self.runtime = endpoint, runtime
        self.name = f"openai-style/{endpoint.label()}"
        self._client = endpoint.client()

    def identity(self) -> dict[str, str]:
        return {"model": self.endpoint.label(), "prompt": digest(STYLE_PROMPT),
                "parser": code_digest(parse_style_reply)}

    def describe(self, audio_path: str) -> StyleCaption:
        audio_b64 = base64.b64encode(wav_bytes(load_audio(audio_path))).decode()

        def compute():
            resp = self._client.chat.completions.create(
                model=self.endpoint.model, temperature=0,
                messages=[{"role": "user", "content": [
                    {"type": "text", "text": STYLE_PROMPT},
                    {"type": "input_audio", "input_audio": {"data": audio_b64, "format": "wav"}},
                ]}],
            )
            return {"text": resp.choices[0].message.content or ""}, usage_of(resp)

        inputs = {"audio": file_sha256(audio_path), "prompt": STYLE_PROMPT}
        text = self.runtime.call("style", "openai-style", self.endpoint.label(), inputs, compute,
                                 remote=True)["text"]
        return parse_style_reply(text)
