"""A model checkpoint answering speech with speech, whichever family it holds.

    chat = open_speech_chat("ckpt/omni", sampling)                  # Qwen2.5-Omni
    chat = open_speech_chat("ckpt/kimi", sampling, speech="/ckpt/speech")  # Kimi-Audio
    reply = chat.reply("question.wav", seed=0)[0]     # SpokenReply; .wav at chat.output_rate

The family is read from the checkpoint's stored config (`stored_family`). Kimi-Audio
speaks through the speech models of `paras2s_jax.speech` (a separate folder);
Qwen2.5-Omni through the token2wav and speaker presets kept in its `hf_files/`.
Used by `launch/sample.py --wav` and `bench.score --system checkpoint`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from paras2s_jax.checkpoint.orbax_io import read_stored_config
from paras2s_jax.model import families
from paras2s_jax.model.families import KIMI_AUDIO, QWEN25_OMNI
from paras2s_jax.sampling import SamplingConfig
from paras2s_jax.speech_chat import SpokenReply

KIMI_FAMILY, OMNI_FAMILY = KIMI_AUDIO.name, QWEN25_OMNI.name
Audio = str | Path | np.ndarray


@dataclasses.dataclass(frozen=True)
class SpeechChat:
    """`reply(audio, seed)` -> `sampling.num_samples` spoken replies (wav at `output_rate`).

    settings: every choice besides the weights and the prompt that shapes a reply (for
    cache keys); sources: the folders holding what the replies depend on; tokenizer: the
    checkpoint's text tokenizer (with `decode(ids)`), None when it holds none."""

    family: str
    reply: Callable[[Audio, int], list[SpokenReply]]
    output_rate: int
    settings: str
    sources: tuple[Path, ...]
    tokenizer: Any = None


def stored_family(checkpoint: str | Path) -> str | None:
    """The family tag of an Orbax model checkpoint (Kimi-Audio's configs carry none);
    None when `checkpoint` holds no stored config."""
    try:
        return families.stored_family(read_stored_config(checkpoint)).name
    except FileNotFoundError:
        return None


def needs_speech_models(checkpoint: str | Path) -> bool:
    """Whether the checkpoint speaks only with a separate speech-models folder (Kimi-Audio)."""
    return stored_family(checkpoint) != OMNI_FAMILY


def open_speech_chat(checkpoint: str | Path, sampling: SamplingConfig,
                     speech: str | Path | None = None,
                     speaker: str | None = None) -> SpeechChat:
    """Restore the checkpoint and what speaks its replies (`speech`: Kimi-Audio's speech
    models folder; `speaker`: a Qwen2.5-Omni voice of spk_dict.pt, default Chelsie)."""
    if stored_family(checkpoint) == OMNI_FAMILY:
        return _omni_chat(Path(checkpoint), sampling, speaker)
    if speaker is not None:
        raise ValueError(f"{checkpoint}: a speaker ({speaker!r}) is a Qwen2.5-Omni choice; "
                         "Kimi-Audio's detokenizer has one voice")
    return _kimi_chat(Path(checkpoint), sampling, speech)


def _kimi_chat(checkpoint: Path, sampling: SamplingConfig, speech_dir: str | Path | None
               ) -> SpeechChat:
    from paras2s_jax.checkpoint.orbax_io import restore_model
    from paras2s_jax.speech import Speech
    from paras2s_jax.speech_chat import reply_in_speech
    from paras2s_jax.tokenizer import KimiTextTokenizer

    if speech_dir is None:
        raise ValueError(f"{checkpoint}: a Kimi-Audio checkpoint speaks through the speech "
                         "models folder (glm-4-voice-tokenizer/, audio_detokenizer/, vocoder/)")
    model = restore_model(checkpoint)
    speech = Speech.load(speech_dir)
    if speech.detokenizer is None:
        raise ValueError(f"{speech_dir}: no audio_detokenizer/ (the replies must be spoken)")

    def reply(audio: Audio, seed: int) -> list[SpokenReply]:
        return reply_in_speech(model, speech, audio, sampling, seed=seed)

    tokenizer = checkpoint / "tokenizer"
    return SpeechChat(KIMI_FAMILY, reply, speech.output_rate, repr(sampling),
                      (checkpoint, Path(speech_dir)),
                      KimiTextTokenizer(tokenizer) if tokenizer.is_dir() else None)


def _omni_chat(checkpoint: Path, sampling: SamplingConfig, speaker: str | None
               ) -> SpeechChat:
    from paras2s_jax.checkpoint.hf_assets import find_assets
    from paras2s_jax.checkpoint.orbax_io import restore_model
    from paras2s_jax.model.qwen_omni import speech_chat as omni

    model = restore_model(checkpoint)
    voice = omni.OmniVoice.load(checkpoint)
    name = voice.speaker(speaker).name
    tokenizer = text_tokenizer(find_assets(checkpoint))
    system_ids = omni.system_turn_ids(tokenizer) if tokenizer is not None else []

    def reply(audio: Audio, seed: int) -> list[SpokenReply]:
        return omni.reply_in_speech(model, voice, audio, sampling, seed=seed, speaker=name,
                                    system_ids=system_ids)

    settings = omni.omni_policy(model, voice, name).settings(sampling)
    return SpeechChat(OMNI_FAMILY, reply, voice.output_rate,
                      f"{settings!r} speaker={name!r} system_ids={system_ids}", (checkpoint,),
                      tokenizer)


def text_tokenizer(directory: str | Path | None) -> Any:
    """The HF tokenizer saved in `directory` (e.g. a Qwen2.5-Omni checkpoint's hf_files/),
    or None when it holds none."""
    if directory is None or not any((Path(directory) / f).is_file() for f in
                                    ("tokenizer.json", "tokenizer_config.json", "vocab.json")):
        return None
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
