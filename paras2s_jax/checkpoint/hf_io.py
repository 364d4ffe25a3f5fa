"""Hugging Face checkpoint directories <-> `KimiAudio`, one tensor at a time.

Import reads the index (never guessing shard names: Kimi-Audio's are irregular),
memory-maps each tensor, and builds every parameter straight onto its shards of the
mesh; the host holds at most one tensor's pages at a time. Export writes shards of a
bounded size, the index, and `config.json`, with the original key names.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from paras2s_jax.checkpoint.hf_keys import check_keys, key_specs
from paras2s_jax.checkpoint.placement import place_on_shards
from paras2s_jax.checkpoint.safetensors_io import SafetensorsFile, write_safetensors
from paras2s_jax.model.config import KimiAudioConfig
from paras2s_jax.model.kimi_audio import KimiAudio
from paras2s_jax.sharding import PARAM_RULES, Rules

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


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
    return {name: single for name in SafetensorsFile(single).keys()}


def _by_file(files: dict[str, Path]) -> dict[Path, list[str]]:
    grouped: dict[Path, list[str]] = {}
    for name, path in files.items():
        grouped.setdefault(path, []).append(name)
    return grouped


def iter_tensors(directory: str | Path) -> Iterator[tuple[str, np.ndarray]]:
    """(name, memory-mapped array) for every tensor, one shard file open at a time."""
    for path, names in _by_file(shard_files(directory)).items():
        handle = SafetensorsFile(path)
        for name in names:
            if name not in handle.keys():
                raise CheckpointFileError(f"{path}: the index lists {name}, the file lacks it")
            yield name, handle.get(name)


def read_config(directory: str | Path, **overrides: Any) -> KimiAudioConfig:
    """The `KimiAudioConfig` of a checkpoint directory (its `config.json`)."""
    return KimiAudioConfig.from_hf_config(Path(directory) / CONFIG_FILE, **overrides)


def import_hf(
    directory: str | Path,
    mesh: Mesh | None = None,
    rules: Rules = PARAM_RULES,
    **config_overrides: Any,
) -> KimiAudio:
    """A `KimiAudio` whose parameters are read from `directory` onto their shards.

    config_overrides: e.g. `param_dtype="bfloat16"` (the dtype tensors are cast to on
    load) or `dtype` (compute). Every tensor is checked against the model: a missing,
    unexpected or misshapen tensor raises an error naming it.
    """
    directory = Path(directory)
    config = read_config(directory, **config_overrides)
    abstract = nnx.eval_shape(lambda: KimiAudio(config, rngs=nnx.Rngs(0)))
    specs = key_specs(abstract)
    check_keys(specs, list(shard_files(directory)), str(directory))

    views = (
        (specs[name].path, specs[name].to_flax(tensor))  # strided views of memory maps
        for name, tensor in iter_tensors(directory)
        if name in specs  # RoPE inverse-frequency buffers are recomputed, not loaded
    )
    return place_on_shards(abstract, views, mesh, rules)


def load_hf_checkpoint(directory: str | Path, **config_overrides: Any) -> KimiAudio:
    """A `KimiAudio` on the default device from a HF checkpoint directory."""
    return import_hf(directory, None, **config_overrides)


def rope_inv_freq(config: KimiAudioConfig) -> np.ndarray:
    """The `rotary_emb.inv_freq` buffer older checkpoints store per layer, as float32."""
    exponents = np.arange(0, config.head_dim, 2, dtype=np.int64).astype(np.float32)
    return 1.0 / (config.rope_theta ** (exponents / config.head_dim))


def rope_buffer_keys(config: KimiAudioConfig) -> list[str]:
    """Names of the per-layer RoPE buffers, trunk first, as Kimi-Audio stores them."""
    trunk = [f"model.layers.{i}.self_attn.rotary_emb.inv_freq" for i in range(config.num_layers)]
    mimo = [
        f"model.mimo_layers.{i}.self_attn.rotary_emb.inv_freq" for i in range(config.mimo_layers)
    ]
    return trunk + mimo


def export_hf(
    model: KimiAudio,
    directory: str | Path,
    max_shard_bytes: int = 5 * 1024**3,
    rope_buffers: bool = True,
    original_config: dict[str, Any] | None = None,
) -> dict[str, str]:
    """Write `model` as a HF checkpoint (shards + index + config.json); returns the weight map.

    Tensors keep the model's parameter dtype. With `rope_buffers`, the per-layer
    `rotary_emb.inv_freq` buffers of the original checkpoint are written too.
    original_config: the `config.json` the model was imported from; all its fields
    are written back (see `KimiAudioConfig.to_hf_config`).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config: KimiAudioConfig = model.config
    specs = key_specs(model)
    flat = dict(nnx.to_flat_state(nnx.state(model, nnx.Param)))
    dtype = np.dtype(config.storage_dtype)
    entries: dict[str, tuple[tuple[int, ...], np.dtype]] = {
        k: (s.hf_shape, dtype) for k, s in specs.items()
    }
    if rope_buffers:
        half = (config.head_dim // 2,)
        entries.update({k: (half, dtype) for k in rope_buffer_keys(config)})

    shards: list[list[str]] = [[]]
    size = 0
    for key, (shape, dt) in entries.items():
        nbytes = int(np.prod(shape)) * dt.itemsize
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(key)
        size += nbytes

    def tensor(key: str) -> np.ndarray:
        if key in specs:
            spec = specs[key]
            return spec.to_hf(np.asarray(jax.device_get(flat[spec.path].get_value())))
        return rope_inv_freq(config)

    weight_map: dict[str, str] = {}
    total = 0
    for i, keys in enumerate(shards, start=1):
        name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        total += write_safetensors(
            directory / name,
            ((k, tensor(k)) for k in keys),
            shapes={k: entries[k] for k in keys},
            metadata={"format": "pt"},
        )
        weight_map.update({k: name for k in keys})
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (directory / INDEX_FILE).write_text(json.dumps(index, indent=2))
    (directory / CONFIG_FILE).write_text(json.dumps(config.to_hf_config(original_config), indent=2))
    return weight_map
