"""Qwen2.5-Omni records as model inputs: chat layout, prompt audio, padded batches.

Record fields (JSONL, the ones every stage passes around):

- "prompt_mel": a .npy path (relative to the data file or absolute) holding float[128,
  frames], the processor's log-mel of the user's speech as
  `paras2s_jax.audio.mel.padded_log_mel` gives it, cut to the clip's frames; or
  "prompt_audio": toy speech codes, rendered to mel by `render_codes_to_mel`;
- "prompt_text" (optional): thinker ids following the audio in the user turn;
- "reply_text": thinker ids of the reply (no stop id); "reply_audio": talker codec ids
  of the reply (no codec stop).

A prompt is one user turn as transformers' processor lays it out:
`<|im_start|>user\\n<|audio_bos|><|AUDIO|> x n<|audio_eos|>[prompt_text]<|im_end|>\\n
<|im_start|>assistant\\n`, n = the clip's audio tokens (`rope.audio_token_count`).

Batches (numpy) share one layout for SFT and rollouts: "input_ids"/"attention_mask"
[B, P] (left padded), "mel" float32[B, 128, F] / "mel_mask" int32[B, F] (each row's
prompt clip; reward inputs hold k clips per row, [B, k, 128, F] / [B, k, F], in
placeholder order, and "audio_slots" [B, P]), "reply_text" [B, T] with "reply_text_attention" and
"text_lengths" (stop included), "reply_audio" [B, C] with "reply_audio_attention";
"text_mask"/"audio_mask" are the loss masks (the attention ones unless a stage masks
rows out).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from paras2s_jax.model.qwen_omni.model import QwenOmniConfig
from paras2s_jax.model.qwen_omni.rope import audio_token_count
from paras2s_jax.train.data import DataError, bucket_for, id_list

FRAMES_PER_CODE = 4  # one encoder audio token: stride-2 conv, then pair pooling
RENDER_SEED = 20_250_101


@dataclasses.dataclass(frozen=True)
class ChatIds:
    """Thinker ids of the chat template's role words and newline."""

    user: int
    assistant: int
    newline: int


QWEN2_CHAT = ChatIds(user=872, assistant=77091, newline=198)  # Qwen2 tokenizer's ids
SMALL_CHAT = ChatIds(user=1, assistant=2, newline=3)  # test-sized vocabularies


def is_test_sized(config: QwenOmniConfig) -> bool:
    """True for vocabularies too small for the real tokenizer's chat ids (tests, toys)."""
    return config.thinker.vocab_size <= max(dataclasses.astuple(QWEN2_CHAT))


def chat_ids(config: QwenOmniConfig) -> ChatIds:
    """The role-word ids: Qwen2's tokenizer, or `SMALL_CHAT` for test-sized vocabularies."""
    return SMALL_CHAT if is_test_sized(config) else QWEN2_CHAT


def render_codes_to_mel(codes: Sequence[int], n_mels: int) -> np.ndarray:
    """float32[n_mels, 4 * len(codes)]: toy speech codes as a log-mel, a fixed seeded
    pattern of 4 frames per code (4 mel frames = one audio token of the Omni encoder
    after its stride-2 convolution and pair pooling), values in [-1, 1)."""
    out = np.empty((n_mels, FRAMES_PER_CODE * len(codes)), np.float32)
    for i, code in enumerate(codes):
        rng = np.random.default_rng([RENDER_SEED, int(code)])
        out[:, i * FRAMES_PER_CODE:(i + 1) * FRAMES_PER_CODE] = rng.uniform(
            -1.0, 1.0, (n_mels, FRAMES_PER_CODE))
    return out


def prompt_mel(record: dict, n_mels: int) -> np.ndarray:
    """float32[n_mels, frames]: the record's prompt speech (its "prompt_mel" file, or its
    "prompt_audio" toy codes rendered)."""
    if "prompt_mel" in record:
        mel = np.load(record["prompt_mel"]).astype(np.float32)
        if mel.ndim != 2 or mel.shape[0] != n_mels or mel.shape[1] < 1:
            raise DataError(f"{record['prompt_mel']}: prompt_mel has shape {mel.shape}, "
                            f"expected ({n_mels}, frames)")
        return mel
    if "prompt_audio" in record:
        return render_codes_to_mel(record["prompt_audio"], n_mels)
    raise DataError(f"record {record.get('id', '?')}: no prompt speech ('prompt_mel' or "
                    "'prompt_audio')")


def audio_span(config: QwenOmniConfig, frames: int) -> list[int]:
    """audio_bos, the placeholders of a clip of `frames` mel frames, audio_eos."""
    c = config.thinker
    n = int(audio_token_count(np.asarray([frames]))[0])
    return [c.audio_start_token_id] + [c.audio_token_index] * n + [c.audio_end_token_id]


def max_frames(config: QwenOmniConfig, columns: int) -> int:
    """Mel frames of the longest clip whose placeholders fit a prompt of `columns`
    tokens (with the chat template's other ids), rounded up to the encoder's chunk as
    `stack_mels` pads: the widest "mel" a batch padded to `columns` holds."""
    room = max(columns - len(prompt_ids({}, config, 0)), 1)
    # audio_token_count(4n + 2) == n: the 2 frames a clip may have past its last token
    return -(-(FRAMES_PER_CODE * room + 2) // config.audio.chunk_frames) \
        * config.audio.chunk_frames


def prompt_ids(record: dict, config: QwenOmniConfig, frames: int) -> list[int]:
    """The thinker ids of the record's user turn and the assistant's header."""
    c, chat = config.thinker, chat_ids(config)
    return ([c.bos_token_id, chat.user, chat.newline] + audio_span(config, frames)
            + list(record.get("prompt_text", [])) + [c.eos_token_id, chat.newline,
                                                     c.bos_token_id, chat.assistant,
                                                     chat.newline])


def left_pad(rows: Sequence[Sequence[int]], length: int, pad: int
             ) -> tuple[np.ndarray, np.ndarray]:
    """(ids int32[B, length], mask bool[B, length]) of rows left padded with `pad`."""
    ids = np.full((len(rows), length), pad, np.int32)
    mask = np.zeros((len(rows), length), bool)
    for r, row in enumerate(rows):
        if len(row) > length:
            raise ValueError(f"a row of {len(row)} tokens does not fit {length} columns")
        if len(row):
            ids[r, length - len(row):] = row
            mask[r, length - len(row):] = True
    return ids, mask


def right_pad(rows: Sequence[Sequence[int]], length: int, pad: int
              ) -> tuple[np.ndarray, np.ndarray]:
    """(ids int32[B, length], mask bool[B, length]) of rows right padded with `pad`."""
    ids, mask = left_pad([row[::-1] for row in rows], length, pad)
    return ids[:, ::-1].copy(), mask[:, ::-1].copy()


def stack_mels(mels: Sequence[np.ndarray], multiple: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(mel float32[A, M, F], mel_mask int32[A, F]) of clips float[M, f_a], zero padded to
    F = the longest rounded up to `multiple` (the encoder's chunk: the same outputs, fewer
    compiled shapes)."""
    frames = -(-max(m.shape[1] for m in mels) // multiple) * multiple
    out = np.zeros((len(mels), mels[0].shape[0], frames), np.float32)
    mask = np.zeros((len(mels), frames), np.int32)
    for a, m in enumerate(mels):
        out[a, :, :m.shape[1]] = m
        mask[a, :m.shape[1]] = 1
    return out, mask


def read_records(paths: Sequence[str | Path], config: QwenOmniConfig) -> list[dict]:
    """Demonstration records of JSONL `paths`, checked (errors name file and record);
    "prompt_mel" paths are resolved against the data file's folder."""
    if not paths:
        raise DataError("no data files given (config.data.train_files / eval_files is empty)")
    records = []
    for path in map(Path, paths):
        if not path.exists():
            raise DataError(f"{path}: data file not found")
        for i, line in enumerate(path.read_text().splitlines()):
            where = f"{path}, record {i}"
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{where}: invalid JSON ({err})") from err
            if not isinstance(rec, dict):
                raise DataError(f"{where}: expected a JSON object")
            text_hi, codec_hi = config.thinker.vocab_size, config.talker.vocab_size
            rec["prompt_text"] = id_list(rec, "prompt_text", 0, text_hi, where, False)
            rec["reply_text"] = id_list(rec, "reply_text", 0, text_hi, where, True)
            rec["reply_audio"] = id_list(rec, "reply_audio", 0, codec_hi, where, True)
            if "prompt_mel" in rec:
                rec["prompt_mel"] = str((path.parent / rec["prompt_mel"]).resolve())
            elif not id_list(rec, "prompt_audio", 0, 2**31, where, True):
                raise DataError(f"{where}: empty 'prompt_audio'")
            records.append(rec)
    return records


def demo_batch(records: Sequence[dict], config: QwenOmniConfig, rows: int,
               buckets: Sequence[int]) -> dict[str, np.ndarray]:
    """An SFT batch of `rows` rows (past len(records): the first record, loss masks off);
    reply text gets the thinker stop id, reply codes the codec end id. P, T and C are
    each padded to the smallest of `buckets` that fits."""
    c = config
    filled = list(records) + [records[0]] * (rows - len(records))
    mels = [prompt_mel(r, c.audio.num_mel_bins) for r in filled]
    prompts = [prompt_ids(r, c, m.shape[1]) for r, m in zip(filled, mels, strict=True)]
    texts = [list(r["reply_text"]) + [c.thinker.eos_token_id] for r in filled]
    codes = [list(r["reply_audio"]) + [c.talker.codec_end_token_id] for r in filled]
    ids, mask = left_pad(prompts, bucket_for(max(map(len, prompts)), buckets),
                         c.thinker.pad_token_id)
    text, text_attn = right_pad(texts, bucket_for(max(map(len, texts)), buckets),
                                c.thinker.pad_token_id)
    audio, audio_attn = right_pad(codes, bucket_for(max(map(len, codes)), buckets),
                                  c.talker.codec_pad_token_id)
    mel, mel_mask = stack_mels(mels, c.audio.chunk_frames)
    real = (np.arange(rows) < len(records))[:, None]
    return {"input_ids": ids, "attention_mask": mask, "mel": mel, "mel_mask": mel_mask,
            "reply_text": text, "reply_text_attention": text_attn,
            "text_lengths": text_attn.sum(1).astype(np.int32), "reply_audio": audio,
            "reply_audio_attention": audio_attn, "text_mask": text_attn & real,
            "audio_mask": audio_attn & real}
