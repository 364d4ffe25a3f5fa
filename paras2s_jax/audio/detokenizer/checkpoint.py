"""Load Kimi-Audio's `audio_detokenizer/` (DiT) and `vocoder/` (BigVGAN) from a checkpoint dir.

Both `model.pt` files are read with `paras2s_jax.checkpoint.torch_pickle`, which executes no
pickle code and reads only the tensors used (the 19 GB DiT file also holds optimizer state):

| file                       | payload                     | used keys                          |
|----------------------------|-----------------------------|------------------------------------|
| audio_detokenizer/model.pt | {"state_dict": {...}, ...}  | "speech_model.*" (prefix stripped) |
| vocoder/model.pt           | {"generator": {...}, ...}   | all (weight norm g/v folded)       |

Loading is strict like the originals (`load_state_dict(strict=True)`): a missing,
unexpected or misshapen tensor raises `DetokenizerCheckpointError` naming the file and key.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import nnx

from paras2s_jax.audio.detokenizer.dit import DiT, DiTConfig
from paras2s_jax.audio.detokenizer.vocoder import BigVGAN, BigVGANConfig, kaiser_sinc_filter
from paras2s_jax.checkpoint.torch_pickle import TorchFileError, TorchTensor, read_torch_file


class DetokenizerCheckpointError(ValueError):
    """A detokenizer or vocoder file does not fit the model; names the file and key."""


@dataclasses.dataclass(frozen=True)
class _Entry:
    path: tuple[str | int, ...]  # attribute path in our module
    shape: tuple[int, ...]  # PyTorch shape
    to_ours: Callable[[np.ndarray], np.ndarray]


def read_state_dict(file: Path, top_key: str, prefix: str = "") -> dict[str, TorchTensor]:
    """The tensors under `payload[top_key]` whose key starts with `prefix` (prefix stripped)."""
    try:
        payload = read_torch_file(file)
    except (TorchFileError, FileNotFoundError) as e:
        raise DetokenizerCheckpointError(str(e)) from e
    if not isinstance(payload, Mapping) or not isinstance(payload.get(top_key), Mapping):
        found = sorted(payload) if isinstance(payload, Mapping) else type(payload).__name__
        raise DetokenizerCheckpointError(f"{file}: expected a dict with {top_key!r}, got {found}")
    state = {k[len(prefix):]: v for k, v in payload[top_key].items() if k.startswith(prefix)}
    not_tensors = [k for k, v in state.items() if not isinstance(v, TorchTensor)]
    if not_tensors:
        raise DetokenizerCheckpointError(f"{file}: {top_key}[{not_tensors[0]!r}] is not a tensor")
    if not state:
        raise DetokenizerCheckpointError(f"{file}: no {prefix!r} tensors under {top_key!r}")
    return state


def _fail_on_mismatch(file: Path, wanted: set[str], present: set[str]) -> None:
    for kind, keys in (("missing", wanted - present), ("unexpected", present - wanted)):
        if keys:
            first = sorted(keys)[0]
            more = f" (and {len(keys) - 1} more)" if len(keys) > 1 else ""
            raise DetokenizerCheckpointError(
                f"{file}: {kind} tensor {first!r}{more}; the weights do not match the config"
            )


def _shape_checked(file: Path, key: str, tensor: TorchTensor, shape: tuple[int, ...]) -> None:
    if tuple(tensor.shape) != tuple(shape):
        raise DetokenizerCheckpointError(
            f"{file}: {key} has shape {tuple(tensor.shape)}, the config expects {tuple(shape)}"
        )


def assign(model: nnx.Module, path: tuple[str | int, ...], value: np.ndarray) -> None:
    """Set the parameter at `path` (attribute names / list indices) to `value`."""
    node: Any = model
    for part in path[:-1]:
        node = node[part] if isinstance(part, int) else getattr(node, part)
    param = getattr(node, path[-1])
    if param.shape != value.shape:  # a bug in a key map, not in the file
        raise AssertionError(f"{path}: {value.shape} vs parameter {param.shape}")
    param.set_value(jnp.asarray(value, dtype=param.dtype))


# --- vocoder -------------------------------------------------------------------------------

def _conv(x: np.ndarray) -> np.ndarray:  # torch Conv1d [out, in, k] -> [k, in, out]
    return x.transpose(2, 1, 0)


def _conv_transpose(x: np.ndarray) -> np.ndarray:  # torch [in, out, k] -> flipped [k, in, out]
    return x[:, :, ::-1].transpose(2, 0, 1)


def _keep(x: np.ndarray) -> np.ndarray:
    return x


def vocoder_tensor_map(c: BigVGANConfig) -> tuple[dict[str, _Entry], dict[str, _Entry], list[str]]:
    """(weights keyed by the base name of a weight-normed conv, plain tensors, filter keys)."""
    convs: dict[str, _Entry] = {}
    plain: dict[str, _Entry] = {}
    filters: list[str] = []
    ch0 = c.upsample_initial_channel

    def conv(base, path, cout, cin, k, bias=True, transpose=False):
        shape = (cin, cout, k) if transpose else (cout, cin, k)
        convs[base] = _Entry((*path, "kernel"), shape, _conv_transpose if transpose else _conv)
        if bias:
            plain[f"{base}.bias"] = _Entry((*path, "bias"), (cout,), _keep)

    def snake(base, path, ch):
        plain[f"{base}.act.alpha"] = _Entry((*path, "alpha"), (ch,), _keep)
        if c.activation == "snakebeta":
            plain[f"{base}.act.beta"] = _Entry((*path, "beta"), (ch,), _keep)
        filters.extend([f"{base}.upsample.filter", f"{base}.downsample.lowpass.filter"])

    conv("conv_pre", ("conv_pre",), ch0, c.num_mels, 7)
    for i, k in enumerate(c.upsample_kernel_sizes):
        conv(f"ups.{i}.0", ("ups", i), ch0 // 2 ** (i + 1), ch0 // 2 ** i, k, transpose=True)
    block = 0
    for i in range(len(c.upsample_rates)):
        ch = ch0 // 2 ** (i + 1)
        for k, dilations in zip(c.resblock_kernel_sizes, c.resblock_dilation_sizes,
                                strict=True):
            base, path = f"resblocks.{block}", ("resblocks", block)
            for j in range(len(dilations)):
                conv(f"{base}.convs1.{j}", (*path, "convs1", j), ch, ch, k)
                conv(f"{base}.convs2.{j}", (*path, "convs2", j), ch, ch, k)
            for a in range(2 * len(dilations)):
                snake(f"{base}.activations.{a}", (*path, "activations", a), ch)
            block += 1
    last = ch0 // 2 ** len(c.upsample_rates)
    snake("activation_post", ("activation_post",), last)
    conv("conv_post", ("conv_post",), 1, last, 7, bias=c.use_bias_at_final)
    return convs, plain, filters


def fold_weight_norm(g: np.ndarray, v: np.ndarray) -> np.ndarray:
    """torch weight_norm (dim 0): w = g * v / ||v||, the norm over every axis but the first."""
    v64 = v.astype(np.float64)
    norm = np.sqrt((v64 ** 2).sum(axis=tuple(range(1, v.ndim)), keepdims=True))
    return (g.astype(np.float64) * v64 / norm).astype(np.float32)


def load_vocoder(directory: str | Path, *, dtype: jnp.dtype = jnp.float32) -> BigVGAN:
    """BigVGAN from `directory/config.json` + `directory/model.pt` ("generator")."""
    directory = Path(directory)
    config = BigVGANConfig.from_json(directory / "config.json")
    file = directory / "model.pt"
    state = read_state_dict(file, "generator")
    convs, plain, filters = vocoder_tensor_map(config)
    # A conv is stored weight-normed (weight_g + weight_v) or plain (weight).
    wanted = set(plain) | set(filters)
    for base in convs:
        wanted |= {f"{base}.weight"} if f"{base}.weight" in state else \
            {f"{base}.weight_g", f"{base}.weight_v"}
    _fail_on_mismatch(file, wanted, set(state))
    model = BigVGAN(config, dtype=dtype)
    for base, entry in convs.items():
        if f"{base}.weight" in state:
            _shape_checked(file, f"{base}.weight", state[f"{base}.weight"], entry.shape)
            weight = state[f"{base}.weight"].numpy().astype(np.float32)
        else:
            _shape_checked(file, f"{base}.weight_v", state[f"{base}.weight_v"], entry.shape)
            g_shape = (entry.shape[0],) + (1,) * (len(entry.shape) - 1)
            _shape_checked(file, f"{base}.weight_g", state[f"{base}.weight_g"], g_shape)
            weight = fold_weight_norm(state[f"{base}.weight_g"].numpy(),
                                      state[f"{base}.weight_v"].numpy())
        assign(model, entry.path, entry.to_ours(weight))
    for key, entry in plain.items():
        _shape_checked(file, key, state[key], entry.shape)
        assign(model, entry.path, entry.to_ours(state[key].numpy().astype(np.float32)))
    expected = kaiser_sinc_filter()
    for key in filters:
        _shape_checked(file, key, state[key], (1, 1, expected.size))
        stored = state[key].numpy().astype(np.float32).reshape(-1)
        if not np.allclose(stored, expected, atol=1e-3):  # bf16-saved filters pass
            raise DetokenizerCheckpointError(
                f"{file}: {key} is not BigVGAN's anti-aliasing filter (max diff "
                f"{np.abs(stored - expected).max():.2e}); custom filters are not supported"
            )
    return model


# --- DiT -----------------------------------------------------------------------------------

def _linear(x: np.ndarray) -> np.ndarray:  # torch Linear [out, in] -> [in, out]
    return x.T


def dit_tensor_map(c: DiTConfig) -> dict[str, _Entry]:
    e, m = c.hidden_size, c.mlp_width
    entries: dict[str, _Entry] = {}

    def linear(key, path, din, dout):
        entries[f"{key}.weight"] = _Entry((*path, "kernel"), (dout, din), _linear)
        entries[f"{key}.bias"] = _Entry((*path, "bias"), (dout,), _keep)

    linear("t_embedder.mlp.0", ("t_embedder", "fc1"), 256, e)
    linear("t_embedder.mlp.2", ("t_embedder", "fc2"), e, e)
    entries["semantic_token_embedding.weight"] = _Entry(
        ("semantic_token_embedding",), (c.semantic_vocab_size + 1, e), _keep)
    linear("input_linear", ("input_linear",), c.input_size, e)
    if c.position_embedding_type == "learnable":
        entries["position_embedding.weight"] = _Entry(
            ("position_embedding",), (c.max_seq_len + 1, e), _keep)
    for i in range(c.depth):
        b, p = f"blocks.{i}", ("blocks", i)
        linear(f"{b}.attn.qkv", (*p, "attn", "qkv"), e, 3 * e)
        linear(f"{b}.attn.proj", (*p, "attn", "proj"), e, e)
        linear(f"{b}.mlp.fc1", (*p, "mlp", "fc1"), e, m)
        linear(f"{b}.mlp.fc2", (*p, "mlp", "fc2"), m, e)
        linear(f"{b}.adaLN_modulation.1", (*p, "adaLN_modulation"), e, 6 * e)
    linear("final_layer.adaLN_modulation.1", ("final_layer", "adaLN_modulation"), e, 2 * e)
    linear("final_layer.linear", ("final_layer", "linear"), e, c.input_size)
    return entries


DIT_PREFIX = "speech_model."
SINCOS_BUFFER = "position_embedding._float_tensor"


def load_dit(directory: str | Path, *, dtype: jnp.dtype = jnp.float32) -> DiT:
    """The DiT from `directory/config.yaml` + `directory/model.pt` ("state_dict",
    keys prefixed `speech_model.`), cast to `dtype`."""
    directory = Path(directory)
    config = DiTConfig.from_yaml(directory / "config.yaml")
    file = directory / "model.pt"
    state = read_state_dict(file, "state_dict", DIT_PREFIX)
    entries = dit_tensor_map(config)
    # sincos stores a 1-element buffer that only carries the module's dtype
    extra = {SINCOS_BUFFER} if config.position_embedding_type == "sincos" else set()
    _fail_on_mismatch(file, set(entries) | extra, set(state))
    model = DiT(config, dtype=dtype)
    for key, entry in entries.items():
        _shape_checked(file, DIT_PREFIX + key, state[key], entry.shape)
        assign(model, entry.path, entry.to_ours(state[key].numpy().astype(np.float32)))
    return model
