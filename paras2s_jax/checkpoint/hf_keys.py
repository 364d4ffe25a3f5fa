"""The map between Kimi-Audio Hugging Face tensor names and the Flax parameter tree.

HF stores PyTorch `Linear.weight` as [out, in]; our `Dense.kernel` is [*in, *out] with
heads as their own axis (q_proj: [E, N, D], o_proj: [N, D, E]). The map is derived from
the model graph itself, so it covers every parameter and a new layer cannot be missed.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Mapping

import numpy as np
from flax import nnx

from paras2s_jax.model.layers import Dense

# Names that are not a plain "model." + flax path (with kernel/embedding -> weight).
_RENAMES = {
    "vq_adaptor.fc1": "vq_adaptor.layers.0",
    "vq_adaptor.fc2": "vq_adaptor.layers.3",
    "vq_adaptor.norm": "vq_adaptor.layers.4",
}
_TOP_LEVEL = ("lm_head", "mimo_output")  # stored without the "model." prefix
# Buffers some checkpoints carry that we recompute (RoPE inverse frequencies).
IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


class CheckpointKeyError(KeyError):
    """A checkpoint tensor is missing, unexpected, or has the wrong shape."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


@dataclasses.dataclass(frozen=True)
class KeySpec:
    """One parameter: its HF name and shape, and where it lives in the Flax state."""

    hf_key: str
    path: tuple[str | int, ...]
    shape: tuple[int, ...]  # Flax shape
    hf_shape: tuple[int, ...]
    num_in: int  # >0: a Dense kernel contracting this many leading axes

    def to_flax(self, tensor: np.ndarray) -> np.ndarray:
        """HF tensor -> Flax array layout."""
        if tuple(tensor.shape) != self.hf_shape:
            raise CheckpointKeyError(
                f"{self.hf_key}: shape {tuple(tensor.shape)} does not match the model's "
                f"{self.hf_shape}"
            )
        if self.num_in:
            tensor = tensor.T
        return tensor.reshape(self.shape)

    def to_hf(self, array: np.ndarray) -> np.ndarray:
        """Flax array -> HF tensor layout."""
        if self.num_in:
            n_in = math.prod(self.shape[: self.num_in])
            return np.ascontiguousarray(array.reshape(n_in, -1).T)
        return array.reshape(self.hf_shape)


def _hf_name(path: tuple[str | int, ...]) -> str:
    name = ".".join(map(str, path))
    for old, new in _RENAMES.items():
        if name.startswith(old + "."):
            name = new + name[len(old) :]
    stem, leaf = name.rsplit(".", 1)
    if leaf in ("kernel", "embedding"):
        leaf = "weight"
    name = f"{stem}.{leaf}"
    return name if name.startswith(_TOP_LEVEL) else "model." + name


def key_specs(model: nnx.Module,
              name: Callable[[tuple[str | int, ...]], str] | None = None) -> dict[str, KeySpec]:
    """HF key -> KeySpec for every `nnx.Param` of `model` (concrete or abstract);
    `name(path)` gives a parameter's key (default: Kimi-Audio's checkpoint names)."""
    name = name or _hf_name
    dense_in = {
        path: node.num_in for path, node in nnx.iter_graph(model) if isinstance(node, Dense)
    }
    specs: dict[str, KeySpec] = {}
    for path, variable in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        if type(variable) is not nnx.Param:  # e.g. LoRA adapters: not in HF checkpoints
            continue
        shape = tuple(variable.shape)
        num_in = dense_in.get(path[:-1], 0) if path[-1] == "kernel" else 0
        if num_in:
            hf_shape = (math.prod(shape[num_in:]), math.prod(shape[:num_in]))
        elif path[-1] == "embedding":
            hf_shape = shape
        else:  # biases and norm scales are flat vectors in HF
            hf_shape = (math.prod(shape),)
        spec = KeySpec(name(path), tuple(path), shape, hf_shape, num_in)
        specs[spec.hf_key] = spec
    return specs


def check_keys(specs: Mapping[str, KeySpec], available: list[str], source: str) -> None:
    """Raise naming every missing or unexpected key (RoPE buffers are ignored)."""
    present = {k for k in available if not k.endswith(IGNORED_SUFFIXES)}
    missing = sorted(set(specs) - present)
    unexpected = sorted(present - set(specs))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} key(s): {', '.join(missing[:8])}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} key(s): {', '.join(unexpected[:8])}")
        raise CheckpointKeyError(f"{source}: " + "; ".join(parts))


def iter_hf_tensors(model: nnx.Module) -> Iterator[tuple[str, np.ndarray]]:
    """(HF key, tensor) for every parameter, one at a time, in HF layout."""
    flat = dict(nnx.to_flat_state(nnx.state(model, nnx.Param)))
    for key, spec in key_specs(model).items():
        yield key, spec.to_hf(np.asarray(flat[spec.path][...]))
