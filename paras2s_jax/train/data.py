"""Grain pipelines of SFT examples: JSONL / array-record shards -> bucketed batches.

An SFT record holds the speech prompt and the reply of both output streams::

    {"prompt_audio": [codes], "prompt_text": [ids] (optional),
     "reply_text": [ids], "reply_audio": [codes],
     "prompt_features": "clip.npy" (with whisper_features=True), ...}

`prompt_features` names a float[len(prompt_audio), adaptor_input_dim] `.npy` file (the
stacked Whisper-large-v3 frames of the prompt, `paras2s_jax.audio.extract_features`),
relative to its shard; it is memory-mapped and read only when its batch is built.

Each record becomes one teacher-forced sequence `build_prompt + build_reply` (see
`paras2s_jax.layout`). The order is a deterministic function of the seed and the step:
shuffle (a new permutation every epoch) -> repeat -> global batch -> this process's
rows (every P-th), so the `P` processes together read exactly the global batch one
process would read, all pad it to the same bucket (else they would compile different
programs and hang), and the iterator state (an index) restores the position exactly.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grain
import jax
import numpy as np

from paras2s_jax import layout
from paras2s_jax.model.config import KimiAudioConfig

BATCH_KEYS = ("text", "audio", "text_mask", "audio_mask", "continuous", "attention_mask")


class DataError(ValueError):
    """A training record is malformed; the message names the file, record and field."""


def id_list(record: dict, field: str, lo: int, hi: int, where: str, required: bool) -> list:
    """`record[field]` checked to be a list of ints in [lo, hi) (a `DataError` naming
    `where` and the field otherwise); [] when absent and not `required`."""
    if field not in record:
        if required:
            raise DataError(f"{where}: missing field {field!r}")
        return []
    value = record[field]
    if not isinstance(value, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        raise DataError(f"{where}: field {field!r} must be a list of ints")
    bad = [v for v in value if not lo <= v < hi]
    if bad:
        raise DataError(f"{where}: field {field!r} has id {bad[0]} outside [{lo}, {hi})")
    return value


def validate_record(record: Any, config: KimiAudioConfig, where: str) -> dict:
    """Check an SFT record's fields and id ranges; return it with defaults filled in."""
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(record).__name__}")
    text_hi, codes = config.special.msg_end, config.audio_codebook_size  # regular text ids only
    out = dict(record)
    out["prompt_text"] = id_list(record, "prompt_text", 0, text_hi, where, required=False)
    out["prompt_audio"] = id_list(record, "prompt_audio", 0, codes, where, required=True)
    out["reply_text"] = id_list(record, "reply_text", 0, text_hi, where, required=True)
    out["reply_audio"] = id_list(record, "reply_audio", 0, codes, where, required=True)
    if not out["prompt_audio"] and not out["prompt_text"]:
        raise DataError(f"{where}: empty prompt (both 'prompt_audio' and 'prompt_text')")
    return out


def _check_features(record: dict, config: KimiAudioConfig, shard: Path, where: str) -> None:
    """Resolve `prompt_features` against the shard and check its shape (header only)."""
    name = record.get("prompt_features")
    if not isinstance(name, str):
        raise DataError(f"{where}: missing field 'prompt_features' (a .npy path; "
                        "config.data.whisper_features is on)")
    path = (shard.parent / name).resolve()
    try:
        shape = np.load(path, mmap_mode="r").shape
    except (OSError, ValueError) as err:
        raise DataError(f"{where}: field 'prompt_features': cannot read {path} ({err})") from err
    want = (len(record["prompt_audio"]), config.adaptor_input_dim)
    if shape != want:
        raise DataError(f"{where}: field 'prompt_features': {path} has shape {shape}, "
                        f"expected {want} (one row per prompt audio code)")
    record["prompt_features"] = str(path)


def read_records(paths: Sequence[str | Path], config: KimiAudioConfig,
                 whisper_features: bool = False) -> list[dict]:
    """Every record of the JSONL (`*.jsonl`) or array-record (`*.array_record`) files.

    Array-record entries are the same JSON objects, UTF-8 encoded. With
    `whisper_features`, every record must name its prompt's feature file.
    """
    if not paths:
        raise DataError("no data files given (config.data.train_files / eval_files is empty)")
    records = []
    for path in map(Path, paths):
        if not path.exists():
            raise DataError(f"{path}: data file not found")
        if path.suffix == ".array_record":
            source = grain.sources.ArrayRecordDataSource([str(path)])
            lines = (source[i].decode() for i in range(len(source)))
        else:
            lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            where = f"{path}, record {i}"
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{where}: invalid JSON ({err})") from err
            record = validate_record(raw, config, where)
            if whisper_features:
                _check_features(record, config, path, where)
            records.append(record)
    return records


def sft_sequence(record: dict, config: KimiAudioConfig) -> layout.Streams:
    """Prompt + reply streams of one (validated) record."""
    reply = layout.build_reply(record["reply_text"], record["reply_audio"], config)
    return layout.concat(layout.record_prompt(record, config), reply)


def bucket_for(length: int, buckets: Sequence[int]) -> int:
    """The smallest bucket length >= `length`."""
    for b in sorted(buckets):
        if length <= b:
            return b
    raise DataError(f"a sequence of {length} tokens exceeds the largest bucket {max(buckets)} "
                    "(raise config.data.buckets)")


def load_features(record: dict) -> np.ndarray:
    """The prompt's Whisper features, float[T, D] (memory-mapped)."""
    return np.load(record["prompt_features"], mmap_mode="r")


def collate(streams: Sequence[layout.Streams], rows: int, buckets: Sequence[int],
            pad_id: int, features: Sequence[np.ndarray] | None = None,
            longest: int | None = None) -> dict[str, np.ndarray]:
    """[rows, bucket] arrays, right-padded; missing rows are all padding (no loss).

    longest: the longest sequence of the whole global batch (default: of `streams`).
    Every process must pad to the same bucket, or they compile different programs.
    With `features` (one float[T, D] per sequence), adds "whisper_features"
    float32[rows, bucket, D], each row's features at its `continuous` positions.
    """
    if longest is None:
        longest = max((len(s) for s in streams), default=1)
    length = bucket_for(longest, buckets)
    out = layout.right_pad(list(streams), length, pad_id)
    if len(streams) < rows:
        extra = rows - len(streams)
        for k in BATCH_KEYS:
            fill = pad_id if out[k].dtype == np.int32 else False
            out[k] = np.concatenate([out[k], np.full((extra, length), fill, out[k].dtype)])
    if features is not None:
        from paras2s_jax.audio.features import place_features

        dim = features[0].shape[1] if len(features) else 0
        placed = np.zeros((rows, length, dim), np.float32)
        for i, (seq, feat) in enumerate(zip(streams, features, strict=True)):
            placed[i, :len(seq)] = place_features(feat, seq.continuous)
        out["whisper_features"] = placed
    return out


def _check_lengths(records: list[dict], config: KimiAudioConfig, buckets: Sequence[int]) -> None:
    longest = max(buckets)
    for i, r in enumerate(records):
        n = len(sft_sequence(r, config))
        if n > longest:
            raise DataError(f"record {i} ({r.get('id', 'no id')}): {n} tokens exceed the "
                            f"largest bucket {longest} (raise config.data.buckets)")


def train_dataset(
    records: list[dict],
    config: KimiAudioConfig,
    global_batch: int,
    buckets: Sequence[int],
    seed: int,
    process_index: int | None = None,
    process_count: int | None = None,
    whisper_features: bool = False,
) -> grain.IterDataset:
    """Endless, shuffled, bucketed batches of this process's share of the global batch."""
    pi = jax.process_index() if process_index is None else process_index
    pc = jax.process_count() if process_count is None else process_count
    if global_batch % pc:
        raise DataError(f"config.data.global_batch={global_batch} is not divisible by "
                        f"{pc} processes")
    _check_lengths(records, config, buckets)
    rows = global_batch // pc

    def share(batch: Sequence[dict]) -> dict[str, np.ndarray]:
        # Every process lays out the whole global batch, so all pick the same bucket.
        seqs = [sft_sequence(r, config) for r in batch]
        mine = slice(pi, None, pc)  # row r of process p is global row r*P + p
        feats = [load_features(r) for r in batch[mine]] if whisper_features else None
        return collate(seqs[mine], rows, buckets, config.special.pad, feats,
                       longest=max(len(s) for s in seqs))

    ds = grain.MapDataset.source(records).shuffle(seed=seed).repeat(None)
    ds = ds.batch(global_batch, drop_remainder=True, batch_fn=list).map(share)
    return ds.to_iter_dataset()


def eval_batches(
    records: list[dict], config: KimiAudioConfig, batch: int, buckets: Sequence[int],
    whisper_features: bool = False, process_index: int | None = None,
    process_count: int | None = None,
) -> list[dict[str, np.ndarray]]:
    """All eval records once, in order, as full-size batches (this process's share)."""
    pi = jax.process_index() if process_index is None else process_index
    pc = jax.process_count() if process_count is None else process_count
    rows = batch // pc
    mine = records[pi::pc]
    every = [sft_sequence(r, config) for r in records]
    seqs = every[pi::pc]
    num = -(-len(records) // batch)  # every process yields the same number of batches
    out = []
    for i in range(num):
        part = slice(i * rows, (i + 1) * rows)
        feats = [load_features(r) for r in mine[part]] if whisper_features else None
        if feats is not None and not feats:  # an all-filler batch still needs the key
            feats = None
        # Process p's batch i holds global records i*batch + r*P + p: pad to their longest.
        longest = max(len(q) for q in every[i * batch:(i + 1) * batch])
        batch_i = collate(seqs[part], rows, buckets, config.special.pad, feats, longest)
        if whisper_features and "whisper_features" not in batch_i:
            length = batch_i["text"].shape[1]
            batch_i["whisper_features"] = np.zeros(
                (rows, length, config.adaptor_input_dim), np.float32)
        out.append(batch_i)
    return out


def to_global(local: dict[str, np.ndarray],
              where: jax.sharding.Mesh | jax.sharding.Sharding) -> dict:
    """Assemble each process's rows into one global array per key.

    `where`: a mesh (each array's batch axis split over data x fsdp, whatever its rank)
    or one sharding for every array.
    """
    def sharding_for(x: np.ndarray) -> jax.sharding.Sharding:
        if isinstance(where, jax.sharding.Mesh):
            from paras2s_jax.sharding import batch_sharding

            return batch_sharding(where, x.ndim)
        return where

    return {k: jax.make_array_from_process_local_data(sharding_for(v), v)
            for k, v in local.items()}
