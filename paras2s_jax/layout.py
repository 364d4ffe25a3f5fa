"""The dual-stream token layout of Kimi-Audio: prompts, replies, and batches.

Two id streams of equal length run side by side: the *audio* stream (fed as
`audio_ids`) and the *text* stream (`text_ids`); whichever stream has nothing to say
at a position carries `text_blank`.

Prompt (one user turn with speech, reply in text and audio)::

    audio: [user_start, media_begin, a1 .. aN, media_end, speech_ctd, msg_end, assistant_start]
    text : [blank,      blank,       blank ..  blank,     blank,      blank,   blank]

Reply columns (what the sampler emits step by step, and what SFT trains on)::

    step : 0   1  ..  n-1   n     ..  d   d+1 ..  d+m-1  d+m
    text : t0  t1 ..  tn-1  eos   blank ...
    audio: blank (for the first d = audio_delay steps) a0  ..  am-1   msg_end

Text leads audio by `audio_delay` (6 in Kimi-Audio). `text_mask` / `audio_mask` mark
the positions a model chose (t0..eos, a0..msg_end); forced blanks are not chosen and
carry no loss and no log-probability.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from paras2s_jax.model.config import KimiAudioConfig


@dataclasses.dataclass(frozen=True)
class Message:
    """One turn: `text` token ids and/or `audio` semantic codes (0-based, no offset)."""

    role: str  # "user" or "assistant"
    text: tuple[int, ...] = ()
    audio: tuple[int, ...] = ()


@dataclasses.dataclass(frozen=True)
class Streams:
    """Equal-length id streams; int32[L] each, plus bool[L] masks."""

    text: np.ndarray
    audio: np.ndarray
    text_mask: np.ndarray  # prompts: all False; replies: positions the model chose
    audio_mask: np.ndarray
    continuous: np.ndarray  # True on user audio codes (where Whisper features go)

    def __len__(self) -> int:
        return len(self.text)


def build_prompt(
    messages: Sequence[Message], config: KimiAudioConfig, output_type: str = "both"
) -> Streams:
    """Prompt streams for `messages`, ending with the assistant start token."""
    if output_type not in ("text", "both"):
        raise ValueError(f"output_type must be 'text' or 'both', got {output_type!r}")
    sp = config.special
    audio: list[int] = []
    text: list[int] = []
    cont: list[bool] = []

    def push(a: int, t: int, c: bool = False) -> None:
        audio.append(a)
        text.append(t)
        cont.append(c)

    role = None
    for i, msg in enumerate(messages):
        if msg.role not in ("user", "assistant"):
            raise ValueError(f"messages[{i}].role must be 'user' or 'assistant', got {msg.role!r}")
        if msg.role != role:
            push(sp.user_msg_start if msg.role == "user" else sp.assistant_msg_start, sp.text_blank)
            role = msg.role
        for t in msg.text:
            push(sp.text_blank, int(t))
        if msg.audio:
            push(sp.media_begin, sp.text_blank)
            for code in msg.audio:
                if not 0 <= code < config.audio_codebook_size:
                    raise ValueError(f"messages[{i}].audio: code {code} outside the codebook")
                push(int(code) + config.audio_token_offset, sp.text_blank, True)
            push(sp.media_end, sp.text_blank)
        last_of_role = i == len(messages) - 1 or messages[i + 1].role != msg.role
        if last_of_role:
            if msg.audio:
                push(sp.speech_ct if output_type == "text" else sp.speech_ctd, sp.text_blank)
            push(sp.msg_end, sp.text_blank)
    push(sp.assistant_msg_start, sp.text_blank)
    n = len(text)
    return Streams(
        text=np.asarray(text, np.int32),
        audio=np.asarray(audio, np.int32),
        text_mask=np.zeros(n, bool),
        audio_mask=np.zeros(n, bool),
        continuous=np.asarray(cont, bool),
    )


def record_prompt(record: dict, config: KimiAudioConfig) -> Streams:
    """Prompt streams of a data record: one user turn of `prompt_text` ids (optional) then
    `prompt_audio` codes, replying in text and speech."""
    msg = Message("user", text=tuple(record.get("prompt_text", ())),
                  audio=tuple(record["prompt_audio"]))
    return build_prompt([msg], config)


def build_reply(
    text_tokens: Sequence[int], audio_codes: Sequence[int], config: KimiAudioConfig
) -> Streams:
    """Reply columns for a text reply and its speech codes (see the module docstring)."""
    sp, delay = config.special, config.audio_delay
    n, m = len(text_tokens), len(audio_codes)
    end = max(delay + m, n + 1)  # position of the audio end token
    length = end + 1
    text = np.full(length, sp.text_blank, np.int32)
    text[:n] = text_tokens
    text[n] = sp.text_eos
    text_mask = np.zeros(length, bool)
    text_mask[: n + 1] = True
    audio = np.full(length, sp.text_blank, np.int32)
    audio[delay : delay + m] = np.asarray(audio_codes, np.int32) + config.audio_token_offset
    audio[end] = sp.msg_end
    audio_mask = np.zeros(length, bool)
    audio_mask[delay : delay + m] = True
    audio_mask[end] = True
    return Streams(text, audio, text_mask, audio_mask, np.zeros(length, bool))


def parse_reply(
    text: np.ndarray, audio: np.ndarray, config: KimiAudioConfig
) -> tuple[list[int], list[int]]:
    """(text tokens before EOS, audio codes) from generated reply columns.

    Mirrors Kimi-Audio's output rules: text is cut at the first EOS and keeps only text
    ids; audio keeps ids in the codebook range (dropping blanks and the end token).
    """
    sp = config.special
    text_out: list[int] = []
    for t in np.asarray(text).tolist():
        if t == sp.text_eos:
            break
        if t < config.text_vocab_size and t != sp.text_blank:
            text_out.append(t)
    lo, hi = config.audio_token_offset, config.audio_token_offset + config.audio_codebook_size
    audio_out = [a - lo for a in np.asarray(audio).tolist() if lo <= a < hi]
    return text_out, audio_out


def concat(*parts: Streams) -> Streams:
    """Streams laid end to end (e.g. prompt + reply for teacher forcing)."""
    return Streams(*(np.concatenate([getattr(p, f.name) for p in parts])
                     for f in dataclasses.fields(Streams)))


def left_pad(batch: Sequence[Streams], length: int, pad_id: int) -> dict[str, np.ndarray]:
    """Stack streams into [B, length] arrays, padded on the left (prompts for sampling)."""
    return _pad(batch, length, pad_id, left=True)


def right_pad(batch: Sequence[Streams], length: int, pad_id: int) -> dict[str, np.ndarray]:
    """Stack streams into [B, length] arrays, padded on the right (training sequences)."""
    return _pad(batch, length, pad_id, left=False)


def _pad(batch: Sequence[Streams], length: int, pad_id: int, left: bool) -> dict[str, np.ndarray]:
    b = len(batch)
    out = {
        "text": np.full((b, length), pad_id, np.int32),
        "audio": np.full((b, length), pad_id, np.int32),
        "text_mask": np.zeros((b, length), bool),
        "audio_mask": np.zeros((b, length), bool),
        "continuous": np.zeros((b, length), bool),
        "attention_mask": np.zeros((b, length), bool),
    }
    for row, s in enumerate(batch):
        n = len(s)
        if n > length:
            raise ValueError(f"sequence {row} has {n} tokens, more than the length {length}")
        cols = slice(length - n, length) if left else slice(0, n)
        for key in ("text", "audio", "text_mask", "audio_mask", "continuous"):
            out[key][row, cols] = getattr(s, key)
        out["attention_mask"][row, cols] = True
    return out
