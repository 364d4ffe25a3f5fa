"""Kimi-Audio answering speech with speech: prompt wav -> sampled reply -> reply wav.

    replies = reply_in_speech(model, speech, "question.wav", sampling, seed=0)
    replies[0].wav          # float32 at speech.output_rate; None when no audio codes

The prompt is one user turn (optional text ids, then the speech as codes with its
Whisper features when the model reads them); the reply's audio codes go through the
detokenizer. Used by `launch/sample.py --wav`, `bench.score --system checkpoint` and the
`bench` distillation scorer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np

from paras2s_jax.audio.features import place_features
from paras2s_jax.layout import Message, Streams, build_prompt, left_pad, parse_reply
from paras2s_jax.model import KimiAudio
from paras2s_jax.model.config import KimiAudioConfig
from paras2s_jax.sampling import SamplingConfig, generate
from paras2s_jax.speech import Speech, SpeechPrompt


@dataclasses.dataclass(frozen=True)
class SpokenReply:
    text_ids: list[int]  # text tokens before EOS
    codes: list[int]  # 0-based audio codes
    wav: np.ndarray | None  # the codes spoken (None when there are none)


def prompt_arrays(prompt: Streams, config: KimiAudioConfig,
                  features: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """`generate`'s prompt dict for one prompt, with Whisper features at its audio codes."""
    arrays = left_pad([prompt], len(prompt), config.special.pad)
    if features is not None:
        arrays["whisper_features"] = place_features(features, arrays["continuous"][0])[None]
    return arrays


def user_turn(heard: SpeechPrompt | None, text_ids: Sequence[int] = ()) -> list[Message]:
    """One user turn: optional text, then optional speech codes."""
    messages = [Message("user", text=tuple(text_ids))] if text_ids else []
    if heard is not None:
        messages.append(Message("user", audio=tuple(int(c) for c in heard.codes)))
    return messages


def reply_in_speech(model: KimiAudio, speech: Speech, audio: str | Path | np.ndarray,
                    sampling: SamplingConfig, seed: int = 0, sample_rate: int | None = None,
                    text_ids: Sequence[int] = ()) -> list[SpokenReply]:
    """`sampling.num_samples` replies to a spoken prompt, each spoken by the detokenizer."""
    config = model.config
    heard = speech.encode(audio, sample_rate, features=config.use_whisper_feature)
    prompt = build_prompt(user_turn(heard, text_ids), config, output_type=sampling.output_type)
    out = jax.device_get(generate(model, prompt_arrays(prompt, config, heard.features),
                                  jax.random.key(seed), sampling))
    replies = []
    for g in range(sampling.num_samples):
        text, codes = parse_reply(np.asarray(out.text[g]), np.asarray(out.audio[g]), config)
        wav = speech.decode(codes, seed=seed) if codes else None
        replies.append(SpokenReply(text, codes, wav))
    return replies
