"""Read Hugging Face checkpoint directories (single file or sharded with an index)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from flax import nnx
from safetensors import SafetensorError, safe_open

from paras2s_jax.checkpoint.hf_keys import load_hf_tensors
from paras2s_jax.model.config import KimiAudioConfig
from paras2s_jax.model.kimi_audio import KimiAudio

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"


class CheckpointFileError(OSError):
    """A checkpoint file is missing, truncated or unreadable; the message names it."""


def shard_files(directory: str | Path) -> dict[str, Path]:
    """Tensor name -> shard file, from the index (or the single `model.safetensors`)."""
    directory = Path(directory)
    index = directory / INDEX_FILE
    if index.exists():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise CheckpointFileError(f"{index}: not a valid safetensors index ({err})") from err
        files = {name: directory / fname for name, fname in weight_map.items()}
        for path in sorted(set(files.values())):
            if not path.exists():
                raise CheckpointFileError(f"{path}: shard listed in {index} does not exist")
        return files
    single = directory / SINGLE_FILE
    if not single.exists():
        raise CheckpointFileError(f"{directory}: neither {INDEX_FILE} nor {SINGLE_FILE} found")
    return {name: single for name in _open(single).keys()}


def _open(path: Path) -> Any:
    try:
        return safe_open(str(path), framework="numpy")
    except (SafetensorError, OSError) as err:
        raise CheckpointFileError(f"{path}: unreadable safetensors file ({err})") from err


def iter_tensors(directory: str | Path) -> Iterator[tuple[str, np.ndarray]]:
    """(name, array) for every tensor, one shard file open at a time."""
    by_file: dict[Path, list[str]] = {}
    for name, path in shard_files(directory).items():
        by_file.setdefault(path, []).append(name)
    for path, names in by_file.items():
        handle = _open(path)
        for name in names:
            try:
                yield name, handle.get_tensor(name)
            except (SafetensorError, OSError) as err:
                raise CheckpointFileError(f"{path}: cannot read tensor {name} ({err})") from err


def load_hf_checkpoint(directory: str | Path, seed: int = 0, **config_overrides: Any) -> KimiAudio:
    """A `KimiAudio` (unsharded, on the default device) from a HF checkpoint directory."""
    directory = Path(directory)
    config = KimiAudioConfig.from_hf_config(directory / "config.json", **config_overrides)
    model = KimiAudio(config, rngs=nnx.Rngs(seed))
    load_hf_tensors(model, dict(iter_tensors(directory)), source=str(directory))
    return model
