"""Checkpoints: Hugging Face safetensors (import/export, key map) and Orbax."""

from paras2s_jax.checkpoint.hf_io import (
    CheckpointFileError,
    export_hf,
    import_hf,
    iter_tensors,
    load_hf_checkpoint,
    read_config,
)
from paras2s_jax.checkpoint.hf_keys import CheckpointKeyError, KeySpec, iter_hf_tensors, key_specs
from paras2s_jax.checkpoint.safetensors_io import SafetensorsError, SafetensorsFile

__all__ = [
    "CheckpointFileError", "CheckpointKeyError", "KeySpec", "SafetensorsError",
    "SafetensorsFile", "export_hf", "import_hf", "iter_hf_tensors", "iter_tensors", "key_specs",
    "load_hf_checkpoint", "read_config",
]
