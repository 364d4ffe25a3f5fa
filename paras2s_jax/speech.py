"""Speech in and out for Kimi-Audio: wav -> (audio codes, Whisper features), codes -> wav.

    from paras2s_jax.speech import Speech
    speech = Speech.load("/ckpt/Kimi-Audio-7B-Instruct",
                         tokenizer_dir="/ckpt/glm-4-voice-tokenizer")
    prompt = speech.encode("question.wav")     # codes int32[T], features float32[T, 5120]
    wav = speech.decode(reply_codes)           # float32 mono at speech.output_rate (24 kHz)

Codes are GLM-4-Voice semantic codes (0..16383); Kimi-Audio's audio stream holds
code + 152,064 (`layout.build_prompt` adds it). A checkpoint root holds
`whisper-large-v3/`, `audio_detokenizer/` and `vocoder/` (Kimi-Audio's layout); the
tokenizer is its own repository, looked for at `<root>/glm-4-voice-tokenizer` unless
given (`launch/convert.py random-speech` writes all of them with random weights).

Input audio handling (documented, not silent):
- files: anything libsndfile reads; unreadable or truncated files raise `AudioReadError`;
- channels are averaged to mono (as `librosa.load` does for Kimi-Audio);
- any rate of at least 8 kHz is resampled to 16 kHz with libsoxr's high-quality
  resampler, bit-equal to `librosa.load(path, sr=16000)` (the originals' loader); 8 kHz
  speech keeps no content above 4 kHz, so its codes differ from wideband speech;
  lower rates are refused;
- longer than 30 s: cut into independent 30 s segments, exactly as both references do
  (codes and features are concatenated; nothing is dropped);
- empty audio, NaN/Inf samples, or arrays that are not [samples] / [samples, channels]
  raise `ValueError`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from jax.sharding import Mesh

from paras2s_jax.audio.audio_io import read_audio, resample, to_mono
from paras2s_jax.audio.features import extract_features
from paras2s_jax.audio.mel import SAMPLE_RATE
from paras2s_jax.audio.random_speech import TOKENIZER_DIR, WHISPER_DIR
from paras2s_jax.audio.speech_tokenizer import SpeechTokenizer
from paras2s_jax.audio.vq_checkpoint import load_vq_encoder
from paras2s_jax.audio.whisper_checkpoint import load_hf_whisper_encoder
from paras2s_jax.audio.whisper_encoder import WhisperEncoder

MIN_SAMPLE_RATE = 8_000
MAX_CHANNELS = 8


class Detokenize(Protocol):
    """What `decode` needs: codes -> float32 wav at `sample_rate` (the detokenizer's API)."""

    sample_rate: int

    def detokenize(self, audio_ids: np.ndarray, *, seed: int = 0) -> np.ndarray: ...


@dataclasses.dataclass(frozen=True)
class SpeechPrompt:
    """One clip as Kimi-Audio reads it: a code and (optionally) a feature row per 80 ms."""

    codes: np.ndarray  # int32[T], 0-based semantic codes
    features: np.ndarray | None  # float32[T, 4 * E] Whisper features, or None


def as_16k_mono(audio: str | Path | np.ndarray, sample_rate: int | None = None) -> np.ndarray:
    """float32[N] 16 kHz mono from a file path or an array [N] / [N, channels] at `sample_rate`."""
    if isinstance(audio, str | Path):
        if sample_rate is not None:
            raise ValueError("sample_rate is read from the file; pass it only with an array")
        return _checked(read_audio(audio), str(audio))
    if sample_rate is None:
        raise ValueError("an audio array needs its sample_rate")
    if sample_rate < MIN_SAMPLE_RATE:
        raise ValueError(f"sample_rate {sample_rate} Hz is below {MIN_SAMPLE_RATE} Hz; "
                         "speech this narrow-band cannot be tokenised meaningfully")
    array = np.asarray(audio, np.float32)
    if array.ndim == 2 and array.shape[1] > MAX_CHANNELS:
        raise ValueError(f"audio of shape {array.shape}: expected [samples, channels] with at "
                         f"most {MAX_CHANNELS} channels (channels-first arrays need .T)")
    if array.ndim not in (1, 2):
        raise ValueError(f"audio must be [samples] or [samples, channels], got {array.shape}")
    return _checked(resample(to_mono(array), sample_rate, SAMPLE_RATE), "audio array")


def _checked(audio: np.ndarray, name: str) -> np.ndarray:
    if audio.size == 0:
        raise ValueError(f"{name}: no audio samples")
    if not np.isfinite(audio).all():
        raise ValueError(f"{name}: audio holds NaN or Inf samples")
    return audio


class Speech:
    """The speech front and back end of Kimi-Audio (see the module docstring)."""

    def __init__(self, tokenizer: SpeechTokenizer, whisper: WhisperEncoder | None = None,
                 detokenizer: Detokenize | None = None):
        self.tokenizer, self.whisper, self.detokenizer = tokenizer, whisper, detokenizer

    @classmethod
    def load(cls, root: str | Path | None = None, *, tokenizer_dir: str | Path | None = None,
             whisper_dir: str | Path | None = None, detokenizer: bool = True,
             mesh: Mesh | None = None, batch_size: int = 8, **detok_options: Any) -> Speech:
        """Loads what is present: tokenizer (required), Whisper encoder, detokenizer.

        root: a Kimi-Audio checkpoint directory (or `random-speech` output). The Whisper
        encoder and the detokenizer are optional; `decode` / features need them.
        detok_options: passed to `load_detokenizer` (e.g. dtype="float32").
        """
        root = Path(root) if root is not None else None
        tokenizer_dir = Path(tokenizer_dir) if tokenizer_dir else (root and root / TOKENIZER_DIR)
        if tokenizer_dir is None:
            raise ValueError("give the glm-4-voice-tokenizer directory (or a root holding it)")
        tokenizer = SpeechTokenizer(load_vq_encoder(tokenizer_dir, mesh=mesh), batch_size)
        whisper_dir = Path(whisper_dir) if whisper_dir else (root and root / WHISPER_DIR)
        whisper = None
        if whisper_dir is not None and whisper_dir.is_dir():
            whisper = load_hf_whisper_encoder(whisper_dir, mesh=mesh)
        detok = None
        if detokenizer and root is not None and (root / "audio_detokenizer").is_dir():
            from paras2s_jax.audio.detokenizer import load_detokenizer

            detok = load_detokenizer(root, **detok_options)
        return cls(tokenizer, whisper, detok)

    @property
    def output_rate(self) -> int:
        """Sample rate of `decode`'s wav (24 kHz for Kimi-Audio's vocoder)."""
        return self._detokenizer().sample_rate

    def encode(self, audio: str | Path | np.ndarray, sample_rate: int | None = None,
               features: bool = True) -> SpeechPrompt:
        """Codes (and Whisper features when an encoder is loaded and `features`) of one clip."""
        return self.encode_batch([audio], [sample_rate], features)[0]

    def encode_batch(self, clips: Sequence[str | Path | np.ndarray],
                     sample_rates: Sequence[int | None] | None = None,
                     features: bool = True) -> list[SpeechPrompt]:
        """`encode` for many clips; the tokenizer batches their segments together."""
        rates = list(sample_rates) if sample_rates is not None else [None] * len(clips)
        if len(rates) != len(clips):
            raise ValueError(f"{len(clips)} clips but {len(rates)} sample rates")
        audio = [as_16k_mono(clip, rate) for clip, rate in zip(clips, rates, strict=True)]
        codes = self.tokenizer.tokenize_batch(audio)
        out = []
        for clip, code in zip(audio, codes, strict=True):
            feats = None
            if features and self.whisper is not None:
                feats = extract_features(self.whisper, clip)
                if feats.shape[0] != code.size:  # both are ceil(L / 1280) per 30 s segment
                    raise RuntimeError(f"{code.size} codes but {feats.shape[0]} feature rows")
            out.append(SpeechPrompt(code.astype(np.int32), feats))
        return out

    def _detokenizer(self) -> Detokenize:
        if self.detokenizer is None:
            raise RuntimeError("no detokenizer loaded: the checkpoint root needs "
                               "audio_detokenizer/ and vocoder/")
        return self.detokenizer

    def decode(self, codes: Sequence[int] | np.ndarray, seed: int = 0) -> np.ndarray:
        """float32 mono wav at `output_rate`, 4 x 480 samples per code, for 0-based codes.

        Zero codes (a reply without speech) raise `ValueError` rather than crash.
        """
        detok = self._detokenizer()
        codes = np.asarray(codes, np.int64).reshape(-1)
        if codes.size == 0:
            raise ValueError("the reply holds no audio codes; there is nothing to speak")
        size = self.tokenizer.encoder.config.codebook_size
        bad = codes[(codes < 0) | (codes >= size)]
        if bad.size:
            raise ValueError(f"audio code {int(bad[0])} is outside the codebook [0, {size}); "
                             "subtract the 152064 offset from Kimi-Audio stream ids first")
        return np.asarray(detok.detokenize(codes, seed=seed), np.float32)
