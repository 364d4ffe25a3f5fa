"""Qwen2.5-Omni's audio encoder <-> its published checkpoint layout.

A checkpoint directory holds `config.json` (read: `thinker_config.audio_config`) and
`model.safetensors` or shards listed in `model.safetensors.index.json`. Only the keys under
`thinker.audio_tower.` are read; every other tensor (thinker LM, vision, talker,
token2wav) is ignored. Keys, relative to that prefix:

| Qwen2_5OmniAudioEncoder         | checkpoint key (PyTorch layout)                       |
|---------------------------------|-------------------------------------------------------|
| conv1 / conv2 kernel, bias      | conv{1,2}.weight [E, in, 3], conv{1,2}.bias           |
| layers.i.self_attn.q/k/v_proj   | layers.i.self_attn.{q,k,v}_proj.weight [E, E] (+ bias; k none) |
| layers.i.self_attn.out_proj     | layers.i.self_attn.out_proj.{weight, bias}            |
| layers.i.*_layer_norm, fc1, fc2 | same names                                            |
| ln_post, proj                   | ln_post.{weight, bias}, proj.weight [D, E], proj.bias |
| audio_bos_eos_token             | audio_bos_eos_token.weight [2, D]                     |

The sinusoid table is a non-persistent buffer in the reference and is not stored. A missing
or mis-shaped audio tensor raises `AudioCheckpointError` naming the file and the key.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from flax import nnx
from jax.sharding import Mesh

from paras2s_jax.audio.whisper_checkpoint import Source, build_from_source
from paras2s_jax.checkpoint.hf_io import CONFIG_FILE, INDEX_FILE, SINGLE_FILE, shard_files
from paras2s_jax.checkpoint.safetensors_io import SafetensorsFile
from paras2s_jax.model.qwen_omni.audio_encoder import (
    AudioConfigError,
    AudioEncoderConfig,
    Qwen2_5OmniAudioEncoder,
)
from paras2s_jax.sharding import PARAM_RULES, Rules

PREFIX = "thinker.audio_tower."
ParamPath = tuple[str | int, ...]


class AudioCheckpointError(ValueError):
    """A checkpoint does not fit the audio encoder; the message names the file and key."""


@dataclasses.dataclass(frozen=True)
class AudioTensor:
    """One checkpoint tensor: our parameter path, its PyTorch shape, and both layout maps."""

    path: ParamPath
    torch_shape: tuple[int, ...]
    to_flax: Callable[[np.ndarray], np.ndarray]
    to_torch: Callable[[np.ndarray], np.ndarray]


_LAYER = (  # (our path, key relative to `layers.i.`, kind)
    (("self_attn", "q_proj", "kernel"), "self_attn.q_proj.weight", "qkv"),
    (("self_attn", "q_proj", "bias"), "self_attn.q_proj.bias", "qkv_bias"),
    (("self_attn", "k_proj", "kernel"), "self_attn.k_proj.weight", "qkv"),
    (("self_attn", "v_proj", "kernel"), "self_attn.v_proj.weight", "qkv"),
    (("self_attn", "v_proj", "bias"), "self_attn.v_proj.bias", "qkv_bias"),
    (("self_attn", "out_proj", "kernel"), "self_attn.out_proj.weight", "out"),
    (("self_attn", "out_proj", "bias"), "self_attn.out_proj.bias", "vector"),
    (("self_attn_layer_norm", "weight"), "self_attn_layer_norm.weight", "vector"),
    (("self_attn_layer_norm", "bias"), "self_attn_layer_norm.bias", "vector"),
    (("fc1", "kernel"), "fc1.weight", "fc1"),
    (("fc1", "bias"), "fc1.bias", "mlp_vector"),
    (("fc2", "kernel"), "fc2.weight", "fc2"),
    (("fc2", "bias"), "fc2.bias", "vector"),
    (("final_layer_norm", "weight"), "final_layer_norm.weight", "vector"),
    (("final_layer_norm", "bias"), "final_layer_norm.bias", "vector"),
)
_TOP = (
    (("conv1", "kernel"), "conv1.weight", "conv1"),
    (("conv1", "bias"), "conv1.bias", "vector"),
    (("conv2", "kernel"), "conv2.weight", "conv2"),
    (("conv2", "bias"), "conv2.bias", "vector"),
    (("ln_post", "weight"), "ln_post.weight", "vector"),
    (("ln_post", "bias"), "ln_post.bias", "vector"),
    (("proj", "kernel"), "proj.weight", "proj"),
    (("proj", "bias"), "proj.bias", "out_vector"),
    (("audio_bos_eos_token",), "audio_bos_eos_token.weight", "bos_eos"),
)


def _kinds(c: AudioEncoderConfig) -> dict[str, tuple[tuple[int, ...], Callable, Callable]]:
    """kind -> (PyTorch shape, PyTorch -> ours, ours -> PyTorch)."""
    e, n, m, f, d = (c.d_model, c.encoder_attention_heads, c.num_mel_bins,
                     c.encoder_ffn_dim, c.output_dim)
    h = e // n
    keep = lambda x: x  # noqa: E731
    flip = lambda x: x.transpose(2, 1, 0)  # noqa: E731  conv [out, in, k] <-> [k, in, out]
    t = lambda x: x.T  # noqa: E731  Linear [out, in] <-> [in, out]
    return {
        "conv1": ((e, m, 3), flip, flip),
        "conv2": ((e, e, 3), flip, flip),
        "vector": ((e,), keep, keep),
        "mlp_vector": ((f,), keep, keep),
        "out_vector": ((d,), keep, keep),
        "qkv": ((e, e), lambda x: x.T.reshape(e, n, h), lambda x: x.reshape(e, e).T),
        "qkv_bias": ((e,), lambda x: x.reshape(n, h), lambda x: x.reshape(e)),
        "out": ((e, e), lambda x: x.T.reshape(n, h, e), lambda x: x.reshape(e, e).T),
        "fc1": ((f, e), t, t),
        "fc2": ((e, f), t, t),
        "proj": ((d, e), t, t),
        "bos_eos": ((2, d), keep, keep),
    }


def key_map(config: AudioEncoderConfig, prefix: str = PREFIX) -> dict[str, AudioTensor]:
    """Checkpoint key -> the parameter it fills (and back): the load and export map."""
    kinds = _kinds(config)
    entries = [(path, prefix + key, kind) for path, key, kind in _TOP]
    for i in range(config.encoder_layers):
        entries += [(("layers", i, *path), f"{prefix}layers.{i}.{key}", kind)
                    for path, key, kind in _LAYER]
    return {key: AudioTensor(path, *kinds[kind]) for path, key, kind in entries}


def read_audio_config(directory: str | Path, **overrides: Any) -> AudioEncoderConfig:
    """The encoder config from a checkpoint directory's `config.json`."""
    file = Path(directory) / CONFIG_FILE
    try:
        raw = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise AudioCheckpointError(f"{file}: cannot read the config ({err})") from err
    if not isinstance(raw, dict):
        raise AudioCheckpointError(f"{file}: expected a JSON object")
    try:
        return AudioEncoderConfig.from_hf(raw, **overrides)
    except (AudioConfigError, TypeError) as err:
        raise AudioCheckpointError(f"{file}: {err}") from err


def load_audio_encoder(
    directory: str | Path,
    config: AudioEncoderConfig | None = None,
    *,
    mesh: Mesh | None = None,
    rules: Rules = PARAM_RULES,
    **overrides: Any,
) -> Qwen2_5OmniAudioEncoder:
    """The audio encoder of a Qwen2.5-Omni checkpoint directory, read one tensor at a time.

    config: defaults to the directory's `config.json`; overrides: e.g. `dtype="bfloat16"`
    (tensors are cast to `param_dtype` on load).
    """
    directory = Path(directory)
    if config is None:
        config = read_audio_config(directory, **overrides)
    elif overrides:
        config = config.replace(**overrides)
    files = {k: v for k, v in shard_files(directory).items() if k.startswith(PREFIX)}
    tensors = key_map(config)
    listing = directory / (INDEX_FILE if (directory / INDEX_FILE).exists() else SINGLE_FILE)
    for key in tensors:
        if key not in files:
            raise AudioCheckpointError(f"{listing}: missing audio encoder tensor {key!r}")
    handles: dict[Path, SafetensorsFile] = {}
    shapes = {}
    for key, file in files.items():
        handle = handles.setdefault(file, SafetensorsFile(file))
        if key not in handle.keys():
            raise AudioCheckpointError(f"{file}: the index lists {key!r}, the file lacks it")
        shapes[key] = tuple(handle.shape(key))
        if key not in tensors:
            raise AudioCheckpointError(f"{file}: unexpected audio encoder tensor {key!r}")
        if shapes[key] != tensors[key].torch_shape:
            raise AudioCheckpointError(
                f"{file}: {key} has shape {shapes[key]}, the audio config expects "
                f"{tensors[key].torch_shape}"
            )
    source = Source(str(listing), shapes, lambda key: handles[files[key]].get(key))
    return build_from_source(
        lambda: Qwen2_5OmniAudioEncoder(config, rngs=nnx.Rngs(0)), source, tensors,
        lambda key: key.startswith(PREFIX), mesh, rules,
    )


def iter_audio_tensors(
    encoder: Qwen2_5OmniAudioEncoder, prefix: str = PREFIX
) -> Iterator[tuple[str, np.ndarray]]:
    """(checkpoint key, host array in PyTorch layout) for every parameter: the export map."""
    params = dict(nnx.to_flat_state(nnx.state(encoder, nnx.Param)))
    for key, tensor in key_map(encoder.config, prefix).items():
        yield key, tensor.to_torch(np.asarray(params[tensor.path].get_value()))
