"""Qwen2.5-Omni checkpoint directories <-> `Thinker` / `Talker`.

The published layout is a directory with `config.json` and (sharded) safetensors named
`thinker.model.*`, `thinker.lm_head.weight`, `talker.*`. The names follow the module
paths (`thinker.` / `talker.` + Flax path, `kernel`/`embedding` -> `weight`), with
PyTorch's [out, in] Linear layout (`paras2s_jax.checkpoint.hf_keys.KeySpec`). Tensors of
the audio tower, the vision tower and token2wav are left to their own loaders.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from paras2s_jax.checkpoint import hf_keys
from paras2s_jax.checkpoint.hf_io import CONFIG_FILE, INDEX_FILE, shard_files
from paras2s_jax.checkpoint.hf_keys import CheckpointKeyError, KeySpec
from paras2s_jax.checkpoint.placement import place_on_shards
from paras2s_jax.checkpoint.safetensors_io import SafetensorsFile, write_safetensors
from paras2s_jax.model.qwen_omni.config import TalkerConfig, ThinkerTextConfig
from paras2s_jax.model.qwen_omni.talker import Talker
from paras2s_jax.model.qwen_omni.thinker import Thinker

THINKER_PREFIX, TALKER_PREFIX = "thinker.", "talker."
LM_HEAD_KEY = "thinker.lm_head.weight"
EMBED_KEY = "thinker.model.embed_tokens.weight"


def key_specs(model: nnx.Module, prefix: str) -> dict[str, KeySpec]:
    """Checkpoint key -> KeySpec for every `nnx.Param` of a thinker or talker."""
    def name(path: tuple[str | int, ...]) -> str:
        leaf = "weight" if path[-1] in ("kernel", "embedding") else str(path[-1])
        return prefix + ".".join([*map(str, path[:-1]), leaf])

    return hf_keys.key_specs(model, name)


def read_config(directory: str | Path) -> dict[str, Any]:
    """The `config.json` of a checkpoint directory, as a dict."""
    path = Path(directory) / CONFIG_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointKeyError(f"{path}: unreadable config ({err})") from err


def _load(directory: Path, abstract: nnx.Module, prefix: str,
          fallbacks: dict[str, str], mesh: Mesh | None) -> nnx.Module:
    files = shard_files(directory)
    handles: dict[Path, SafetensorsFile] = {}

    def tensor(key: str, spec: KeySpec) -> tuple[tuple, np.ndarray]:
        source = key if key in files else fallbacks.get(key)
        if source not in files:
            raise CheckpointKeyError(f"{directory}: missing tensor {key}")
        path = files[source]
        handle = handles.setdefault(path, SafetensorsFile(path))
        if source not in handle.keys():
            raise CheckpointKeyError(f"{path}: the index lists {source}, the file lacks it")
        try:
            return spec.path, spec.to_flax(handle.get(source))
        except CheckpointKeyError as err:
            raise CheckpointKeyError(f"{path}: {err}") from err

    specs = key_specs(abstract, prefix)
    return place_on_shards(abstract, (tensor(k, s) for k, s in specs.items()), mesh)


def load_thinker(directory: str | Path, mesh: Mesh | None = None, **overrides: Any) -> Thinker:
    """The thinker language model of a checkpoint directory (audio/vision towers skipped).

    overrides: `ThinkerTextConfig` fields (e.g. param_dtype="bfloat16"). A missing or
    misshapen tensor raises `CheckpointKeyError` naming the file and key. With tied
    embeddings and no `thinker.lm_head.weight`, the head reads the embedding table.
    With `mesh`, each tensor goes straight onto its shards.
    """
    directory = Path(directory)
    config = ThinkerTextConfig.from_hf(read_config(directory), **overrides)
    abstract = nnx.eval_shape(lambda: Thinker(config, rngs=nnx.Rngs(0)))
    fallbacks = {LM_HEAD_KEY: EMBED_KEY} if config.tie_word_embeddings else {}
    return _load(directory, abstract, THINKER_PREFIX, fallbacks, mesh)


def load_talker(directory: str | Path, mesh: Mesh | None = None, **overrides: Any) -> Talker:
    """The talker of a checkpoint directory (overrides: `TalkerConfig` fields)."""
    directory = Path(directory)
    config = TalkerConfig.from_hf(read_config(directory), **overrides)
    abstract = nnx.eval_shape(lambda: Talker(config, rngs=nnx.Rngs(0)))
    return _load(directory, abstract, TALKER_PREFIX, {}, mesh)


def param_entries(thinker: Thinker | None, talker: Talker | None
                  ) -> Iterator[tuple[str, KeySpec, nnx.Variable]]:
    """(checkpoint key, KeySpec, parameter variable) of every thinker / talker param."""
    for model, prefix in ((thinker, THINKER_PREFIX), (talker, TALKER_PREFIX)):
        if model is not None:
            flat = dict(nnx.to_flat_state(nnx.state(model, nnx.Param)))
            for key, spec in key_specs(model, prefix).items():
                yield key, spec, flat[spec.path]


def host_tensor(spec: KeySpec, variable: nnx.Variable) -> np.ndarray:
    """A parameter fetched to the host in checkpoint layout."""
    return spec.to_hf(np.asarray(jax.device_get(variable[...])))


def iter_tensors(thinker: Thinker | None, talker: Talker | None
                 ) -> Iterator[tuple[str, np.ndarray]]:
    """(checkpoint key, tensor in checkpoint layout) of every parameter, one at a time."""
    for key, spec, variable in param_entries(thinker, talker):
        yield key, host_tensor(spec, variable)


# (shape, dtype, a function producing the tensor): written when its shard is
Producer = tuple[tuple[int, ...], np.dtype, Callable[[], np.ndarray]]


def export(directory: str | Path, thinker: Thinker | None, talker: Talker | None,
           config: dict[str, Any], max_shard_bytes: int = 5 * 1024**3) -> dict[str, str]:
    """Write the models' tensors (in the parameter dtype) as shards of at most
    `max_shard_bytes` + index, and `config` (the original `config.json` dict) beside
    them; tensors are fetched one at a time. Returns the weight map."""
    directory = Path(directory)
    tensors = {key: (spec.hf_shape, np.dtype(var.dtype),
                     lambda s=spec, v=var: host_tensor(s, v))
               for key, spec, var in param_entries(thinker, talker)}
    weight_map = write_shards(directory, tensors, max_shard_bytes)
    (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2))
    return weight_map


def write_shards(out_dir: Path, tensors: dict[str, Producer],
                 max_shard_bytes: int) -> dict[str, str]:
    """Write tensors (key -> (shape, dtype, producer), in order) as safetensors shards of
    at most `max_shard_bytes` plus their index; each tensor is produced when written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    shards: list[list[str]] = [[]]
    size = 0
    for key, (shape, dtype, _) in tensors.items():
        nbytes = math.prod(shape) * dtype.itemsize
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(key)
        size += nbytes
    weight_map: dict[str, str] = {}
    total = 0
    for i, keys in enumerate(shards, start=1):
        name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        shapes = {k: tensors[k][:2] for k in keys}
        total += write_safetensors(out_dir / name, ((k, tensors[k][2]()) for k in keys),
                                   shapes=shapes, metadata={"format": "pt"})
        weight_map.update({k: name for k in keys})
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (out_dir / INDEX_FILE).write_text(json.dumps(index, indent=2))
    return weight_map
