"""Checkpoint formats: Hugging Face safetensors key map (and, later, Orbax)."""

from paras2s_jax.checkpoint.hf_keys import (
    CheckpointKeyError,
    KeySpec,
    check_keys,
    iter_hf_tensors,
    key_specs,
    load_hf_tensors,
)

__all__ = [
    "CheckpointKeyError", "KeySpec", "check_keys", "iter_hf_tensors", "key_specs",
    "load_hf_tensors",
]
