"""Load Whisper encoder weights from a Hugging Face safetensors file or an openai-whisper `.pt`.

Both layouts are mapped onto the same `WhisperEncoder` parameters:

| WhisperEncoder            | HF `WhisperModel`                  | openai-whisper `.pt`          |
|---------------------------|------------------------------------|-------------------------------|
| conv1 / conv2             | encoder.conv{1,2}.{weight,bias}    | encoder.conv{1,2}.*           |
| embed_positions           | encoder.embed_positions.weight     | encoder.positional_embedding  |
| layers.i.self_attn.q_proj | encoder.layers.i.self_attn.q_proj  | encoder.blocks.i.attn.query   |
| ... k/v/out_proj          | ... k_proj / v_proj / out_proj     | ... key / value / out         |
| layers.i.*_layer_norm     | self_attn_layer_norm, final_layer_norm | attn_ln, mlp_ln           |
| layers.i.fc1 / fc2        | fc1 / fc2                          | mlp.0 / mlp.2                 |
| layer_norm                | encoder.layer_norm                 | encoder.ln_post               |

Decoder tensors in either file are ignored (Kimi-Audio's `whisper-large-v3/model.safetensors`
is a full `WhisperModel`; only its encoder is used). A missing or unexpected encoder
tensor, or one whose shape disagrees with the config, raises `WhisperCheckpointError`
naming the key and the file. Nothing is ever downloaded.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from paras2s_jax.audio.whisper_encoder import (
    WhisperConfigError,
    WhisperEncoder,
    WhisperEncoderConfig,
)
from paras2s_jax.checkpoint.placement import place_on_shards
from paras2s_jax.checkpoint.safetensors_io import SafetensorsFile
from paras2s_jax.sharding import PARAM_RULES, Rules

ParamPath = tuple[str | int, ...]


class WhisperCheckpointError(ValueError):
    """A Whisper checkpoint does not fit the encoder; the message names the key and file."""


@dataclasses.dataclass(frozen=True)
class _Tensor:
    """Where one checkpoint tensor goes: our path, its PyTorch shape, the layout map."""

    path: ParamPath
    torch_shape: tuple[int, ...]
    to_flax: Callable[[np.ndarray], np.ndarray]


# (our path, HF key, openai-whisper key, kind); keys are relative to the encoder
# (prefix "encoder." in both model files), layer keys relative to the block.
_STEM = (
    (("conv1", "kernel"), "conv1.weight", "conv1.weight", "conv1"),
    (("conv1", "bias"), "conv1.bias", "conv1.bias", "vector"),
    (("conv2", "kernel"), "conv2.weight", "conv2.weight", "conv2"),
    (("conv2", "bias"), "conv2.bias", "conv2.bias", "vector"),
    (("embed_positions",), "embed_positions.weight", "positional_embedding", "positions"),
)
_FINAL_NORM = (
    (("layer_norm", "weight"), "layer_norm.weight", "ln_post.weight", "vector"),
    (("layer_norm", "bias"), "layer_norm.bias", "ln_post.bias", "vector"),
)
_LAYER = (
    (("self_attn", "q_proj", "kernel"), "self_attn.q_proj.weight", "attn.query.weight", "qkv"),
    (("self_attn", "q_proj", "bias"), "self_attn.q_proj.bias", "attn.query.bias", "qkv_bias"),
    (("self_attn", "k_proj", "kernel"), "self_attn.k_proj.weight", "attn.key.weight", "qkv"),
    (("self_attn", "v_proj", "kernel"), "self_attn.v_proj.weight", "attn.value.weight", "qkv"),
    (("self_attn", "v_proj", "bias"), "self_attn.v_proj.bias", "attn.value.bias", "qkv_bias"),
    (("self_attn", "out_proj", "kernel"), "self_attn.out_proj.weight", "attn.out.weight", "out"),
    (("self_attn", "out_proj", "bias"), "self_attn.out_proj.bias", "attn.out.bias", "vector"),
    (("self_attn_layer_norm", "weight"), "self_attn_layer_norm.weight", "attn_ln.weight", "vector"),
    (("self_attn_layer_norm", "bias"), "self_attn_layer_norm.bias", "attn_ln.bias", "vector"),
    (("fc1", "kernel"), "fc1.weight", "mlp.0.weight", "fc1"),
    (("fc1", "bias"), "fc1.bias", "mlp.0.bias", "mlp_vector"),
    (("fc2", "kernel"), "fc2.weight", "mlp.2.weight", "fc2"),
    (("fc2", "bias"), "fc2.bias", "mlp.2.bias", "vector"),
    (("final_layer_norm", "weight"), "final_layer_norm.weight", "mlp_ln.weight", "vector"),
    (("final_layer_norm", "bias"), "final_layer_norm.bias", "mlp_ln.bias", "vector"),
)


def _kinds(c: WhisperEncoderConfig) -> dict[str, tuple[tuple[int, ...], Callable]]:
    """kind -> (PyTorch shape, map from the PyTorch array to our layout)."""
    e, n, d, m, f = c.n_audio_state, c.n_audio_head, c.head_dim, c.n_mels, c.mlp_width
    conv = lambda x: x.transpose(2, 1, 0)  # noqa: E731  [out, in, k] -> [k, in, out]
    keep = lambda x: x  # noqa: E731
    return {
        "conv1": ((e, m, 3), conv),
        "conv2": ((e, e, 3), conv),
        "positions": ((c.n_audio_ctx, e), keep),
        "vector": ((e,), keep),
        "mlp_vector": ((f,), keep),
        # Linear weights are [out, in]; heads get their own axis so they can be sharded.
        "qkv": ((e, e), lambda x: x.T.reshape(e, n, d)),
        "qkv_bias": ((e,), lambda x: x.reshape(n, d)),
        "out": ((e, e), lambda x: x.T.reshape(n, d, e)),
        "fc1": ((f, e), lambda x: x.T),
        "fc2": ((e, f), lambda x: x.T),
    }


def key_map(
    config: WhisperEncoderConfig, *, openai: bool = False, prefix: str = "encoder.",
    final_norm: bool = True,
) -> dict[str, _Tensor]:
    """Checkpoint key -> the parameter it fills, for one layout (HF or openai-whisper).

    prefix: what precedes the encoder's keys ("" in GLM-4-Voice's tokenizer file);
    final_norm: whether the encoder ends with `layer_norm` (the tokenizer's does not).
    """
    kinds = _kinds(config)
    top = _STEM + (_FINAL_NORM if final_norm else ())
    block = "blocks" if openai else "layers"
    entries = [(path, prefix + (oa if openai else hf), kind) for path, hf, oa, kind in top]
    for i in range(config.n_audio_layer):
        entries += [
            (("layers", i, *path), f"{prefix}{block}.{i}.{oa if openai else hf}", kind)
            for path, hf, oa, kind in _LAYER
        ]
    return {key: _Tensor(path, *kinds[kind]) for path, key, kind in entries}


def identity_tensor(path: ParamPath, shape: tuple[int, ...]) -> _Tensor:
    """A tensor stored exactly as the parameter is (embedding tables, codebooks)."""
    return _Tensor(path, shape, lambda x: x)


class Source:
    """Checkpoint tensors by key: shapes up front, arrays (PyTorch layout) on demand."""

    def __init__(self, name: str, shapes: Mapping[str, tuple[int, ...]], get: Callable):
        self.name, self.shapes, self.get = name, dict(shapes), get


def _check(source: Source, key_map: Mapping[str, _Tensor], owned: Callable[[str], bool]) -> None:
    """Every tensor present, none extra among the `owned` keys, each with the expected shape."""
    present = {k for k in source.shapes if owned(k)}
    missing = sorted(set(key_map) - present)
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise WhisperCheckpointError(
            f"{source.name}: missing encoder tensor {missing[0]!r}{more}; the file does not "
            "match the encoder config (wrong layer count, or not a Whisper checkpoint?)"
        )
    unexpected = sorted(present - set(key_map))
    if unexpected:
        more = f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""
        raise WhisperCheckpointError(
            f"{source.name}: unexpected encoder tensor {unexpected[0]!r}{more}"
        )
    for key, tensor in key_map.items():
        shape = tuple(source.shapes[key])
        if shape != tensor.torch_shape:
            raise WhisperCheckpointError(
                f"{source.name}: {key} has shape {shape}, the encoder config expects "
                f"{tensor.torch_shape}"
            )


def build_from_source(
    make: Callable[[], nnx.Module], source: Source, tensors: Mapping[str, _Tensor],
    owned: Callable[[str], bool], mesh: Mesh | None, rules: Rules,
) -> nnx.Module:
    """`make()`'s module with every parameter read from `source` (onto shards with a mesh).

    tensors: checkpoint key -> parameter; owned: which checkpoint keys must all be used.
    """
    _check(source, tensors, owned)
    abstract = nnx.eval_shape(make)
    # Strided views of memory maps: each device copies only its own slice.
    views = ((t.path, t.to_flax(source.get(key))) for key, t in tensors.items())
    return place_on_shards(abstract, views, mesh, rules)


def _build(
    config: WhisperEncoderConfig, source: Source, openai: bool, mesh: Mesh | None, rules: Rules
) -> WhisperEncoder:
    """A `WhisperEncoder` whose every parameter is read from `source` (onto shards with a mesh)."""
    return build_from_source(
        lambda: WhisperEncoder(config, rngs=nnx.Rngs(0)), source, key_map(config, openai=openai),
        lambda key: key.startswith("encoder."), mesh, rules,
    )


def read_hf_config(path: str | Path, **overrides: Any) -> WhisperEncoderConfig:
    """The encoder config from a HF `config.json` (or the directory holding it)."""
    path = Path(path)
    file = path / "config.json" if path.is_dir() else path
    try:
        raw = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise WhisperCheckpointError(f"{file}: cannot read the Whisper config ({err})") from err
    fields = dict(n_mels="num_mel_bins", n_audio_ctx="max_source_positions",
                  n_audio_state="d_model", n_audio_head="encoder_attention_heads",
                  n_audio_layer="encoder_layers")
    missing = [hf for hf in fields.values() if hf not in raw]
    if missing:
        raise WhisperCheckpointError(f"{file}: no {missing[0]!r}; is this a Whisper config?")
    # This encoder implements exact GELU only; refuse configs that differ.
    if raw.get("activation_function", "gelu") != "gelu":
        raise WhisperCheckpointError(
            f"{file}: activation_function={raw['activation_function']!r}, only 'gelu' is supported"
        )
    values = {ours: int(raw[hf]) for ours, hf in fields.items()}
    if raw.get("encoder_ffn_dim") is not None:  # HF's own default is 4 x d_model when absent
        values["n_audio_mlp"] = int(raw["encoder_ffn_dim"])
    try:
        return WhisperEncoderConfig(**{**values, **overrides})
    except WhisperConfigError as err:
        raise WhisperCheckpointError(f"{file}: {err}") from err


def load_hf_whisper_encoder(
    path: str | Path,
    config: WhisperEncoderConfig | None = None,
    *,
    mesh: Mesh | None = None,
    rules: Rules = PARAM_RULES,
    **overrides: Any,
) -> WhisperEncoder:
    """The encoder of a HF `WhisperModel` checkpoint (a directory or its model.safetensors).

    config: defaults to the `config.json` beside the weights. overrides: e.g.
    `dtype="bfloat16"` (compute) or `param_dtype="bfloat16"` (tensors are cast on load).
    Keys may carry a `model.` prefix (a `WhisperForConditionalGeneration` file).
    """
    path = Path(path)
    file = path / "model.safetensors" if path.is_dir() else path
    if not file.is_file():
        raise WhisperCheckpointError(f"{file}: no such safetensors file")
    if config is None:
        config = read_hf_config(file.parent, **overrides)
    elif overrides:
        config = config.replace(**overrides)
    handle = SafetensorsFile(file)
    keys = handle.keys()
    prefix = "model." if not any(k.startswith("encoder.") for k in keys) else ""
    shapes = {k[len(prefix):]: handle.shape(k) for k in keys if k.startswith(prefix)}
    source = Source(str(file), shapes, lambda key: handle.get(prefix + key))
    return _build(config, source, openai=False, mesh=mesh, rules=rules)


def _torch_to_numpy(tensor: Any) -> np.ndarray:
    import torch

    tensor = tensor.detach().cpu()
    if tensor.dtype == torch.bfloat16:  # NumPy has no bfloat16: reinterpret the bits
        return tensor.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return tensor.numpy()


def read_openai_checkpoint(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(dims, model_state_dict) of an openai-whisper `.pt` file, read on CPU, never fetched."""
    try:
        import torch
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError("reading an openai-whisper .pt file needs torch") from err
    path = Path(path)
    if not path.is_file():
        raise WhisperCheckpointError(f"{path}: no such openai-whisper checkpoint file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for corrupt or foreign files
        raise WhisperCheckpointError(f"{path}: not a readable torch checkpoint ({err})") from err
    if not isinstance(payload, dict) or not {"dims", "model_state_dict"} <= payload.keys():
        raise WhisperCheckpointError(
            f"{path}: expected a dict with 'dims' and 'model_state_dict' (openai-whisper format)"
        )
    return dict(payload["dims"]), dict(payload["model_state_dict"])


def load_openai_whisper_encoder(
    path: str | Path, *, mesh: Mesh | None = None, rules: Rules = PARAM_RULES, **overrides: Any
) -> WhisperEncoder:
    """The encoder of an openai-whisper `.pt` checkpoint ({"dims", "model_state_dict"})."""
    dims, state = read_openai_checkpoint(path)
    fields = ("n_mels", "n_audio_ctx", "n_audio_state", "n_audio_head", "n_audio_layer")
    missing = [f for f in fields if f not in dims]
    if missing:
        raise WhisperCheckpointError(f"{path}: dims has no {missing[0]!r}")
    config = WhisperEncoderConfig(**{**{f: int(dims[f]) for f in fields}, **overrides})
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    source = Source(str(path), shapes, lambda key: _torch_to_numpy(state[key]))
    return _build(config, source, openai=True, mesh=mesh, rules=rules)


def load_whisper_encoder(path: str | Path, **kwargs: Any) -> WhisperEncoder:
    """Either layout: `.pt` files are openai-whisper's, anything else is HF safetensors."""
    if Path(path).suffix == ".pt":
        return load_openai_whisper_encoder(path, **kwargs)
    return load_hf_whisper_encoder(path, **kwargs)
