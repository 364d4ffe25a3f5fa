"""Speech recognition back ends: the content half of the scoring pipeline.

The paper uses Whisper-large-v3. Here: any OpenAI-compatible transcription endpoint,
openai-whisper from a local checkpoint file (never downloads), and pocketsphinx with
the English model its wheel ships (fully offline, weaker).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Protocol

import numpy as np

from bench.backends.remote import ConfigError, Endpoint
from bench.backends.runtime import Runtime
from bench.data.audio import SAMPLE_RATE, file_sha256, load_audio, wav_bytes


class ASR(Protocol):
    """Turns a speech file into text."""

    name: str  # "backend/model", recorded in every judgement

    def identity(self) -> dict[str, str]:
        """What shapes the transcripts (the model), for the run fingerprint."""
        ...

    def transcribe(self, audio_path: str) -> str: ...


class OpenAIASR:
    """`audio.transcriptions` of an OpenAI-compatible server (whisper-1, vLLM Whisper, ...)."""

    def __init__(self, endpoint: Endpoint, runtime: Runtime, language: str = "en"):
        self.endpoint, self.runtime, self.language = endpoint, runtime, language
        self.name = f"openai-asr/{endpoint.label()}"
        self._client = endpoint.client()

    def identity(self) -> dict[str, str]:
        return {"model": self.endpoint.label(), "language": self.language}

    def transcribe(self, audio_path: str) -> str:
        samples = load_audio(audio_path)
        # Re-encoded at 16 kHz mono so odd inputs (stereo, 48 kHz) reach the server clean.
        data = wav_bytes(samples)

        def compute():
            text = self._client.audio.transcriptions.create(
                model=self.endpoint.model, file=("audio.wav", data, "audio/wav"),
                language=self.language, response_format="text",
            )
            text = text if isinstance(text, str) else getattr(text, "text", "")
            return {"text": text.strip()}, {"audio_seconds": len(samples) / SAMPLE_RATE}

        inputs = {"audio": file_sha256(audio_path), "language": self.language}
        return self.runtime.call("asr", "openai-asr", self.endpoint.label(), inputs, compute,
                                 remote=True)["text"]


class WhisperLocalASR:
    """openai-whisper loaded from a checkpoint *file*; a model name would download, so refuse."""

    def __init__(self, checkpoint: str, runtime: Runtime, language: str = "en"):
        path = Path(checkpoint)
        if not path.is_file():
            raise ConfigError(f"--asr-checkpoint: whisper checkpoint file not found: {path} "
                              "(openai-whisper model names are not accepted: they download)")
        import whisper  # heavy import (torch); only when this back end is chosen

        self.runtime, self.language = runtime, language
        self._model = whisper.load_model(str(path), device="cpu")
        stat = path.stat()
        # Identify the weights by name+size+mtime: hashing GBs on every start is too slow.
        self.model_id = f"{path.name}:{stat.st_size}:{int(stat.st_mtime)}"
        self.name = f"whisper-local/{path.name}"
        self._lock = threading.Lock()

    def identity(self) -> dict[str, str]:
        return {"model": self.model_id, "language": self.language}

    def transcribe(self, audio_path: str) -> str:
        def compute():
            samples = load_audio(audio_path)
            with self._lock:  # one model, one decode at a time
                out = self._model.transcribe(samples, language=self.language, fp16=False,
                                             temperature=0.0, condition_on_previous_text=False)
            return {"text": out["text"].strip()}, {}

        inputs = {"audio": file_sha256(audio_path), "language": self.language}
        return self.runtime.call("asr", "whisper-local", self.model_id, inputs, compute,
                                 remote=False)["text"]


class PocketSphinxASR:
    """CMU pocketsphinx with its bundled en-US model: offline, no download, modest accuracy."""

    def __init__(self, runtime: Runtime):
        from pocketsphinx import Decoder, get_model_path

        self.runtime = runtime
        self._decoder = Decoder(samprate=SAMPLE_RATE, loglevel="FATAL", logfn=os.devnull)
        self._model_dir = get_model_path()
        self.name = "pocketsphinx/en-us"
        self._lock = threading.Lock()

    def identity(self) -> dict[str, str]:
        from importlib.metadata import version

        return {"model": f"pocketsphinx {version('pocketsphinx')} en-us", "decoder": "v2"}

    def transcribe(self, audio_path: str) -> str:
        def compute():
            samples = load_audio(audio_path)
            pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()
            with self._lock:  # the decoder holds per-utterance state
                # Live CMN carries over between utterances, which made transcripts depend on
                # the order files were decoded in; reset it so each file is decoded alone.
                self._decoder.reinit_feat()
                self._decoder.start_utt()
                self._decoder.process_raw(pcm, full_utt=True)
                self._decoder.end_utt()
                hyp = self._decoder.hyp()
            return {"text": hyp.hypstr.strip() if hyp else ""}, {}

        # "v2": decoded with a reset front end; v1 entries were order-dependent.
        inputs = {"audio": file_sha256(audio_path), "decoder": "v2"}
        return self.runtime.call("asr", "pocketsphinx", "en-us", inputs, compute,
                                 remote=False)["text"]
