"""Prompt Whisper features after SFT: distillation, the reward model and GRPO hear them.

An SFT model trained with `config.data.whisper_features` reads the prompt's continuous
Whisper features at the user-audio positions (`Streams.continuous`), added to the code
embeddings. Every later forward of that model and of models built on it (the sampler,
log-probabilities, the reward model) must read them the same way, so the stages share
one switch, `config.data.whisper_features`. It is recorded in every checkpoint's meta
record, and a stage whose init checkpoint or reward model was trained with the other
setting refuses to start (`check_trained_with`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from paras2s_jax import layout

FIELD = "config.data.whisper_features"
META_KEY = "whisper_features"  # the checkpoint meta record's key


def model_inputs(batch: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments of a model forward for `batch`'s features (none without them)."""
    if "whisper_features" not in batch:
        return {}
    return {"whisper_features": batch["whisper_features"],
            "continuous_mask": batch["continuous"]}


def load(record: Mapping[str, Any]) -> np.ndarray:
    """float32[len(prompt_audio), D]: the record's features, from its in-memory
    "whisper_features" or the .npy file its "prompt_features" names."""
    if "whisper_features" in record:
        return np.asarray(record["whisper_features"], np.float32)
    if "prompt_features" not in record:
        raise ValueError(f"record {record.get('id', record.get('query_id', '?'))!r} has no "
                         f"'prompt_features' (a .npy path; {FIELD} is on)")
    return np.asarray(np.load(record["prompt_features"], mmap_mode="r"), np.float32)


def resolve(record: dict, shard: str | Path) -> dict:
    """`record` with its "prompt_features" path made absolute (it is relative to `shard`)."""
    if "prompt_features" in record:
        record["prompt_features"] = str((Path(shard).parent / record["prompt_features"])
                                        .resolve())
    return record


def left_padded(seqs: Sequence[layout.Streams], features: Sequence[np.ndarray],
                length: int) -> np.ndarray:
    """float32[B, length, D]: each sequence's features at its `continuous` positions,
    left-padded like `layout.left_pad` (zero elsewhere)."""
    from paras2s_jax.audio.features import place_features

    out = np.zeros((len(seqs), length, features[0].shape[1]), np.float32)
    for i, (seq, feat) in enumerate(zip(seqs, features, strict=True)):
        out[i, length - len(seq):] = place_features(feat, seq.continuous)
    return out


def meta(cfg) -> dict[str, bool]:
    """The checkpoint meta entry recording what a stage's model hears."""
    return {META_KEY: bool(cfg.data.whisper_features)}


def check_trained_with(cfg, directory: str | Path, what: str) -> None:
    """Refuse `directory` (a checkpoint) if it was trained with the other setting of
    `config.data.whisper_features`; checkpoints without the record are not checked."""
    from paras2s_jax.checkpoint.orbax_io import read_meta
    from paras2s_jax.train.inputs import InputMismatch

    recorded = read_meta(directory).get(META_KEY)
    if recorded is not None and bool(recorded) != bool(cfg.data.whisper_features):
        raise InputMismatch(f"{FIELD}={bool(cfg.data.whisper_features)} but {what} {directory} "
                         f"was trained with whisper_features={bool(recorded)}; set "
                         f"--{FIELD[len('config.'):]}={bool(recorded)}")


def check_init(cfg) -> None:
    """`check_trained_with` on an Orbax init checkpoint (a missing one is reported when
    it is loaded)."""
    if cfg.init.source == "orbax" and cfg.init.path and Path(cfg.init.path).exists():
        check_trained_with(cfg, cfg.init.path, "the init checkpoint")
