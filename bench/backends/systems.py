"""Systems under test: each turns a spoken prompt into a spoken reply (a WAV file).

- `WavFolderSystem`: replies already on disk, `<dir>/<query id>/<style>.wav`.
- `PipelineSystem`: the paper's baseline, ASR -> text chat -> TTS; style is thrown away.
- `ToplineSystem`: the paper's topline, the text model is *told* the true style and
  replies through an instructable TTS.
- `AudioChatSystem`: any OpenAI-compatible audio-in/audio-out chat endpoint (GPT-4o voice,
  or Qwen2.5-Omni / GLM-4-Voice / Kimi-Audio served behind such an API).
- `CheckpointSystem`: our own model from an Orbax checkpoint: Kimi-Audio with the speech
  models (GLM-4-Voice tokenizer, Whisper encoder, detokenizer) of `paras2s_jax.speech`, or
  Qwen2.5-Omni with the token2wav and speaker presets it holds.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from bench.backends.asr import ASR
from bench.backends.remote import ConfigError, Endpoint, usage_of
from bench.backends.runtime import Runtime
from bench.backends.tts import TTS
from bench.data.audio import AudioError, decode_bytes, file_sha256, load_audio, wav_bytes
from bench.data.schema import Query, StyleVariant


class ReplyError(RuntimeError):
    """The system gave no usable reply for this item."""


@dataclass(frozen=True)
class SystemOutput:
    audio: str  # path of the reply WAV
    text: str | None = None  # the system's own transcript, when it has one


class System(Protocol):
    name: str

    def respond(self, query: Query, style: StyleVariant) -> SystemOutput: ...


class WavFolderSystem:
    """Pre-computed replies: `<dir>/<query id>/<style name>.wav` (or .flac)."""

    def __init__(self, directory: str | Path, name: str | None = None):
        self.dir = Path(directory)
        if not self.dir.is_dir():
            raise ConfigError(f"--system-path: reply folder not found: {self.dir}")
        self.name = f"wavdir/{name or self.dir.name}"

    def respond(self, query: Query, style: StyleVariant) -> SystemOutput:
        for ext in (".wav", ".flac"):
            path = self.dir / query.id / f"{style.name}{ext}"
            if path.is_file():
                return SystemOutput(str(path))
        raise ReplyError(f"no reply file {self.dir / query.id / style.name}.wav (or .flac)")


def _chat_text(runtime: Runtime, client, endpoint: Endpoint, role: str, messages: list) -> str:
    def compute():
        resp = client.chat.completions.create(model=endpoint.model, messages=messages,
                                              temperature=0)
        return {"text": resp.choices[0].message.content or ""}, usage_of(resp)

    return runtime.call(role, "openai-chat", endpoint.label(), {"messages": messages}, compute,
                        remote=True)["text"].strip()


PIPELINE_PROMPT = ("You are a friendly voice assistant. Reply to the user's message in one to "
                   "three short spoken sentences.")


class PipelineSystem:
    """Whisper -> GPT -> TTS: hears only the words, so it cannot adapt to the style."""

    def __init__(self, asr: ASR, chat: Endpoint, tts: TTS, runtime: Runtime):
        self.asr, self.chat, self.tts, self.runtime = asr, chat, tts, runtime
        self.name = f"pipeline/{asr.name}+{chat.label()}+{tts.name}"
        self._client = chat.client()

    def respond(self, query: Query, style: StyleVariant) -> SystemOutput:
        heard = self.asr.transcribe(style.audio)
        if not heard:
            raise ReplyError("pipeline ASR recognised no words in the prompt")
        text = _chat_text(self.runtime, self._client, self.chat, "system",
                          [{"role": "system", "content": PIPELINE_PROMPT},
                           {"role": "user", "content": heard}])
        if not text:
            raise ReplyError("pipeline text model returned an empty reply")
        audio = self.tts.synthesize(text)  # no instructions: the style was thrown away
        return SystemOutput(self.runtime.cache.put_blob(audio), text)


TOPLINE_PROMPT = (
    "You are an emotionally intelligent voice assistant. The user's words and the way they "
    "were spoken are given. Reply so that both content and voice fit the speaker. Answer with "
    'one JSON object: {"reply": "<one to three spoken sentences>", '
    '"voice": "<how to speak the reply: emotion, speed, volume>"}.'
)


class ToplineSystem:
    """GPT told the true style, speaking through an instructable TTS."""

    def __init__(self, chat: Endpoint, tts: TTS, runtime: Runtime):
        self.chat, self.tts, self.runtime = chat, tts, runtime
        self.name = f"topline/{chat.label()}+{tts.name}"
        self._client = chat.client()

    def respond(self, query: Query, style: StyleVariant) -> SystemOutput:
        user = f'The user said: "{query.text}"\nSpoken style: {style.description or style.name}'
        raw = _chat_text(self.runtime, self._client, self.chat, "system",
                         [{"role": "system", "content": TOPLINE_PROMPT},
                          {"role": "user", "content": user}])
        reply, voice = raw, ""
        m = re.search(r"\{.*\}", raw, re.S)
        if m:
            try:
                data = json.loads(m.group(0))
                reply, voice = str(data.get("reply", "")).strip(), str(data.get("voice", ""))
            except (json.JSONDecodeError, AttributeError):
                pass  # not JSON after all: the raw answer is the reply, default voice
        if not reply:
            raise ReplyError("topline text model returned an empty reply")
        audio = self.tts.synthesize(reply, voice)
        return SystemOutput(self.runtime.cache.put_blob(audio), reply)


class AudioChatSystem:
    """Chat completions with audio in and audio out (`modalities=["text", "audio"]`)."""

    def __init__(self, endpoint: Endpoint, runtime: Runtime, voice: str = "alloy",
                 system_prompt: str = ""):
        self.endpoint, self.runtime, self.voice = endpoint, runtime, voice
        self.system_prompt = system_prompt
        self.name = f"audio-chat/{endpoint.label()}"
        self._client = endpoint.client()

    def respond(self, query: Query, style: StyleVariant) -> SystemOutput:
        try:
            prompt_b64 = base64.b64encode(wav_bytes(load_audio(style.audio))).decode()
        except AudioError as err:
            raise ReplyError(f"prompt audio unusable: {err}") from None
        messages = ([{"role": "system", "content": self.system_prompt}]
                    if self.system_prompt else [])
        messages.append({"role": "user", "content": [
            {"type": "input_audio", "input_audio": {"data": prompt_b64, "format": "wav"}}]})

        def compute():
            resp = self._client.chat.completions.create(
                model=self.endpoint.model, modalities=["text", "audio"],
                audio={"voice": self.voice, "format": "wav"},
                messages=messages, temperature=0,
            )
            audio = getattr(resp.choices[0].message, "audio", None)
            data = base64.b64decode(audio.data) if audio is not None and audio.data else b""
            if not data:
                # Not cached: a retry later may get audio. The run records the item as failed.
                raise ReplyError(f"{self.name} returned no reply audio")
            try:
                decode_bytes(data, f"{self.name} reply")
            except AudioError as err:
                raise ReplyError(str(err)) from None
            text = getattr(audio, "transcript", None)
            return {"blob": self.runtime.cache.put_blob(data), "text": text}, usage_of(resp)

        inputs = {"audio": file_sha256(style.audio), "voice": self.voice,
                  "system_prompt": self.system_prompt}
        out = self.runtime.call("system", "audio-chat", self.endpoint.label(), inputs, compute,
                                remote=True)
        return SystemOutput(out["blob"], out.get("text"))


class CheckpointSystem:
    """Our own model from an Orbax checkpoint, answering speech with speech.

    Kimi-Audio: prompt wav -> GLM-4-Voice codes (+ Whisper features) -> dual-stream
    sampling -> reply codes -> detokenizer (the speech models of --system-speech);
    Qwen2.5-Omni: prompt wav -> log-mel -> thinker text, talker codes -> token2wav with a
    speaker preset (both inside the checkpoint). Either way a 24 kHz reply wav
    (`paras2s_jax.speech_checkpoint`). Replies are cached by (the fingerprints of the
    checkpoint and speech models, prompt audio, sampling, seed), so a re-run resumes
    without sampling an item twice.
    """

    def __init__(self, checkpoint: str | Path, speech_dir: str | Path | None, runtime: Runtime,
                 *, seed: int = 0, max_new_tokens: int = 256, audio_temperature: float = 0.8,
                 audio_top_k: int = 10, text_temperature: float = 0.0, text_top_k: int = 5,
                 speaker: str | None = None):
        path = Path(checkpoint)
        if not path.exists():
            raise ConfigError(f"--system-path: Orbax checkpoint not found: {path}")
        import threading

        from paras2s_jax.sampling import SamplingConfig
        from paras2s_jax.speech_checkpoint import needs_speech_models, open_speech_chat

        if needs_speech_models(path) and (speech_dir is None or not Path(speech_dir).is_dir()):
            raise ConfigError("--system checkpoint needs --system-speech DIR with "
                              "glm-4-voice-tokenizer/, audio_detokenizer/, vocoder/ (and "
                              f"whisper-large-v3/ when the model reads Whisper features); got "
                              f"{speech_dir}")
        self.runtime, self.seed = runtime, seed
        sampling = SamplingConfig(
            max_new_tokens=max_new_tokens, text_temperature=text_temperature,
            text_top_k=text_top_k, audio_temperature=audio_temperature,
            audio_top_k=audio_top_k, output_type="both", num_samples=1)
        try:
            self.chat = open_speech_chat(path, sampling, speech_dir, speaker)
        except (ValueError, KeyError, FileNotFoundError) as err:
            raise ConfigError(f"--system checkpoint {path}: {err}") from err
        self.sampling = self.chat.settings
        self.name = f"checkpoint/{path.resolve().name}"
        self.model_id = "+".join(fingerprint(p) for p in self.chat.sources)
        self._lock = threading.Lock()  # one model, one reply at a time

    def respond(self, query: Query, style: StyleVariant) -> SystemOutput:
        def compute():
            with self._lock:
                reply = self.chat.reply(style.audio, self.seed)[0]
            if reply.wav is None:  # not cached: nothing was spoken
                raise ReplyError(f"{self.name}: the reply holds no audio codes")
            blob = self.runtime.cache.put_blob(wav_bytes(reply.wav, self.chat.output_rate))
            return {"blob": blob, "text_ids": reply.text_ids, "codes": reply.codes}, {}

        inputs = {"audio": file_sha256(style.audio), "seed": self.seed,
                  "sampling": self.sampling}
        out = self.runtime.call("system", "checkpoint", self.model_id, inputs, compute,
                                remote=False)
        return SystemOutput(out["blob"])


def fingerprint(directory: Path) -> str:
    """A short hash of a checkpoint folder: every file's relative path and size, and the
    bytes of its small (metadata) files, so a replaced checkpoint gets new cache keys."""
    import hashlib

    h = hashlib.sha256()
    for f in sorted(p for p in directory.rglob("*") if p.is_file()):
        size = f.stat().st_size
        h.update(f"{f.relative_to(directory)}:{size};".encode())
        if size <= 1 << 16:
            h.update(f.read_bytes())
    return h.hexdigest()[:16]
