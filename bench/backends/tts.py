"""Text-to-speech back ends: style given as instructions.

The paper renders prompts and topline replies with gpt-4o-mini-tts and free-text
style instructions. Offline, espeak-ng stands in: instructions are mapped to its
pitch / rate / amplitude / voice / word-gap settings by keywords (a crude but
controllable voice). The keyword table is `STYLE_PRESETS`; its documented form is
bench/STYLE_PRESETS.md (`python -m bench.synth presets` regenerates it).

Both back ends take a `candidate` index: the paper's TTS is unstable and its authors
drew 10 candidates per prompt and picked one (bench.synth does the drawing and picking).
OpenAI candidates differ by sampling (each index is its own cached call); espeak-ng is
deterministic, so candidate k > 0 nudges pitch and rate by a fixed small offset.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from dataclasses import dataclass, replace
from typing import Protocol

from bench.backends.remote import ConfigError, Endpoint
from bench.backends.runtime import Runtime
from bench.data.audio import decode_bytes, wav_bytes


class TTS(Protocol):
    name: str

    def synthesize(self, text: str, instructions: str = "", candidate: int = 0) -> bytes:
        """Return WAV bytes of `text` spoken as `instructions` describe.

        `candidate` > 0 asks for another draw of the same request (see bench.synth).
        """
        ...

    def speaker(self, instructions: str = "") -> str:
        """The voice that speaks `instructions` (a prompt's `speaker` in queries.jsonl)."""
        ...


class OpenAITTS:
    """`audio.speech` of an OpenAI-compatible server, with style `instructions`."""

    def __init__(self, endpoint: Endpoint, runtime: Runtime, voice: str = "alloy"):
        self.endpoint, self.runtime, self.voice = endpoint, runtime, voice
        self.name = f"openai-tts/{endpoint.label()}"
        self._client = endpoint.client()

    def speaker(self, instructions: str = "") -> str:
        return f"openai:{self.voice}"

    def synthesize(self, text: str, instructions: str = "", candidate: int = 0) -> bytes:
        def compute():
            kwargs = {"instructions": instructions} if instructions else {}
            resp = self._client.audio.speech.create(
                model=self.endpoint.model, voice=self.voice, input=text,
                response_format="wav", **kwargs,
            )
            data = resp.read() if hasattr(resp, "read") else resp.content
            decode_bytes(data, f"{self.name} reply")  # refuse empty/undecodable audio now
            return {"blob": self.runtime.cache.put_blob(data)}, {"characters": len(text)}

        inputs = {"text": text, "instructions": instructions, "voice": self.voice}
        if candidate:  # its own cache entry; candidate 0 keeps the key older runs used
            inputs["candidate"] = candidate
        out = self.runtime.call("tts", "openai-tts", self.endpoint.label(), inputs, compute,
                                remote=True)
        with open(out["blob"], "rb") as f:
            return f.read()


@dataclass(frozen=True)
class EspeakVoice:
    """espeak-ng settings; defaults are espeak's own."""

    voice: str = "en-us+f3"  # the clearest default for pocketsphinx (measured)
    pitch: int = 50  # 0-99
    rate: int = 150  # words per minute (espeak default 175; slower is recognised better)
    amplitude: int = 100  # 0-200
    gap: int = 0  # extra pause between words, units of 10 ms (espeak -g)

    def args(self) -> list[str]:
        args = ["-v", self.voice, "-p", str(self.pitch), "-s", str(self.rate),
                "-a", str(self.amplitude)]
        # Only when set: older cache keys and renderings stay exactly as they were.
        return args + ["-g", str(self.gap)] if self.gap else args


# Instruction keywords -> settings changes; applied in order, later words win.
_KEYWORDS: list[tuple[tuple[str, ...], dict]] = [
    (("female", "woman", "girl"), {"voice": "en-us+f3"}),
    (("male", "man", "boy"), {"voice": "en-us+m3"}),
    (("child", "kid", "young child"), {"voice": "en-us+f4", "pitch": 95, "rate": 200}),
    (("elderly", "old", "aged"), {"voice": "en-us+m7", "pitch": 25, "rate": 120}),
    (("sad", "tired", "subdued", "gloomy", "comfort", "gentle"),
     {"pitch": 25, "rate": 115, "amplitude": 55}),
    (("excited", "happy", "cheerful", "joy", "surprised", "enthusiastic"),
     {"pitch": 80, "rate": 230, "amplitude": 170}),
    (("angry", "furious", "annoyed"), {"pitch": 40, "rate": 220, "amplitude": 190}),
    (("sarcastic", "mocking", "drawn-out"), {"pitch": 35, "rate": 120}),
    (("calm", "neutral", "flat"), {"pitch": 50, "rate": 170, "amplitude": 100}),
    (("slow",), {"rate": 115}),
    (("fast", "quick", "hurried"), {"rate": 235}),
    (("soft", "quiet", "whisper"), {"amplitude": 45}),
    (("loud", "shout"), {"amplitude": 180}),
    (("low-pitched", "low pitch", "deep"), {"pitch": 15}),
    (("high-pitched", "high pitch"), {"pitch": 85}),
    # Extension dimensions (bench/data/dimensions.json): accent, pauses.
    (("american",), {"voice": "en-us"}),
    (("british",), {"voice": "en-gb"}),
    (("anxious", "nervous"), {"pitch": 70, "rate": 210, "amplitude": 70}),
    (("hesitant", "pauses", "halting"), {"gap": 18, "rate": 125}),
]
STYLE_PRESETS = _KEYWORDS  # public name for documentation and bench.synth

# Offsets (pitch, rate) of espeak-ng candidate k (k > 0 cycles through them).
_CANDIDATE_NUDGES = [(0, 0), (6, 12), (-6, -12), (10, -8), (-10, 8), (3, 20), (-3, -20)]


def candidate_voice(voice: EspeakVoice, candidate: int) -> EspeakVoice:
    """Candidate k of a preset: k = 0 is the preset itself, others a small nudge of it."""
    if candidate <= 0:
        return voice
    dp, dr = _CANDIDATE_NUDGES[1 + (candidate - 1) % (len(_CANDIDATE_NUDGES) - 1)]
    scale = 1 + (candidate - 1) // (len(_CANDIDATE_NUDGES) - 1)
    return replace(voice, pitch=min(99, max(0, voice.pitch + dp * scale)),
                   rate=min(450, max(80, voice.rate + dr * scale)))


def voice_for(instructions: str, base: EspeakVoice = EspeakVoice()) -> EspeakVoice:
    """Map free-text style instructions to espeak-ng settings by whole-word keywords."""
    text = instructions.lower()
    words = set(re.findall(r"[a-z]+(?:-[a-z]+)*", text))
    v = base
    for keys, change in _KEYWORDS:
        # Whole words only: "male" must not fire inside "female", "old" inside "bold".
        if any((k in text) if " " in k else (k in words) for k in keys):
            v = replace(v, **change)
    return v


class EspeakTTS:
    """espeak-ng (Debian package `espeak-ng`), output resampled to 16 kHz mono WAV."""

    name = "espeak-ng"

    def __init__(self, runtime: Runtime | None = None):
        if shutil.which("espeak-ng") is None:
            raise ConfigError("espeak-ng is not installed (apt-get install espeak-ng)")
        self.runtime = runtime

    def speaker(self, instructions: str = "") -> str:
        # Pitch/rate nudges are styles of one speaker; the voice variant is the speaker.
        return f"espeak:{voice_for(instructions).voice}"

    def render(self, text: str, voice: EspeakVoice) -> bytes:
        proc = subprocess.run(["espeak-ng", *voice.args(), "--stdout", text],
                              capture_output=True, check=True, timeout=60)
        return wav_bytes(decode_bytes(proc.stdout, "espeak-ng output"))

    def synthesize(self, text: str, instructions: str = "", candidate: int = 0) -> bytes:
        voice = candidate_voice(voice_for(instructions), candidate)
        if self.runtime is None:
            return self.render(text, voice)

        def compute():
            return {"blob": self.runtime.cache.put_blob(self.render(text, voice))}, {}

        inputs = {"text": text, "voice": voice.args()}
        digest = hashlib.sha256(str(voice.args()).encode()).hexdigest()[:8]
        out = self.runtime.call("tts", "espeak-ng", digest, inputs, compute, remote=False)
        with open(out["blob"], "rb") as f:
            return f.read()
