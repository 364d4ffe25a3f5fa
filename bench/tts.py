"""Text-to-speech back ends: style given as instructions.

The paper renders prompts and topline replies with gpt-4o-mini-tts and free-text
style instructions. Offline, espeak-ng stands in: instructions are mapped to its
pitch / rate / amplitude / voice settings by keywords (a crude but controllable voice).
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from dataclasses import dataclass, replace
from typing import Protocol

from bench.audio import decode_bytes, wav_bytes
from bench.remote import ConfigError, Endpoint
from bench.runtime import Runtime


class TTS(Protocol):
    name: str

    def synthesize(self, text: str, instructions: str = "") -> bytes:
        """Return WAV bytes of `text` spoken as `instructions` describe."""
        ...


class OpenAITTS:
    """`audio.speech` of an OpenAI-compatible server, with style `instructions`."""

    def __init__(self, endpoint: Endpoint, runtime: Runtime, voice: str = "alloy"):
        self.endpoint, self.runtime, self.voice = endpoint, runtime, voice
        self.name = f"openai-tts/{endpoint.label()}"
        self._client = endpoint.client()

    def synthesize(self, text: str, instructions: str = "") -> bytes:
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

    def args(self) -> list[str]:
        return ["-v", self.voice, "-p", str(self.pitch), "-s", str(self.rate),
                "-a", str(self.amplitude)]


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
]


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

    def render(self, text: str, voice: EspeakVoice) -> bytes:
        proc = subprocess.run(["espeak-ng", *voice.args(), "--stdout", text],
                              capture_output=True, check=True, timeout=60)
        return wav_bytes(decode_bytes(proc.stdout, "espeak-ng output"))

    def synthesize(self, text: str, instructions: str = "") -> bytes:
        voice = voice_for(instructions)
        if self.runtime is None:
            return self.render(text, voice)

        def compute():
            return {"blob": self.runtime.cache.put_blob(self.render(text, voice))}, {}

        inputs = {"text": text, "voice": voice.args()}
        digest = hashlib.sha256(str(voice.args()).encode()).hexdigest()[:8]
        out = self.runtime.call("tts", "espeak-ng", digest, inputs, compute, remote=False)
        with open(out["blob"], "rb") as f:
            return f.read()
