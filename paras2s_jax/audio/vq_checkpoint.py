"""Load GLM-4-Voice's `glm-4-voice-tokenizer` directory (the random writer: `random_speech`).

The directory holds `config.json` (a `WhisperVQConfig`: Whisper fields plus pooling_*,
quantize_*, encoder_causal_*), `model.safetensors` with **unprefixed** fp32 keys
(`conv1.weight`, `layers.{i}.…`, `codebook.weight`, `embed_positions2.weight`; the
training-only buffers `ema_count` / `ema_weight` are ignored) and
`preprocessor_config.json` (HF `WhisperFeatureExtractor`, 128 mel bins). Weights are
placed straight onto their shards; nothing is downloaded.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from flax import nnx
from jax.sharding import Mesh

from paras2s_jax.audio.vq_encoder import VQEncoder, VQEncoderConfig
from paras2s_jax.audio.whisper_checkpoint import (
    Source,
    WhisperCheckpointError,
    build_from_source,
    identity_tensor,
    key_map,
    read_hf_config,
)
from paras2s_jax.checkpoint.safetensors_io import SafetensorsFile
from paras2s_jax.sharding import PARAM_RULES, Rules

WEIGHTS_FILE = "model.safetensors"
TRAINING_BUFFERS = ("ema_count", "ema_weight")


def read_vq_config(path: str | Path, **overrides: Any) -> VQEncoderConfig:
    """The tokenizer config from its `config.json` (or the directory holding it).

    Only the published inference setting is accepted: the encoder is cut at
    `quantize_position` (= `pooling_position`, `quantize_encoder_only` true) and its
    layers are not causal; anything else is refused with the field named.
    """
    file = Path(path) / "config.json" if Path(path).is_dir() else Path(path)
    base = read_hf_config(file)
    raw = json.loads(file.read_text())

    def need(field: str) -> Any:
        if raw.get(field) is None:
            raise WhisperCheckpointError(f"{file}: no {field!r}; is this a WhisperVQ config?")
        return raw[field]

    kept = int(need("quantize_position"))
    if raw.get("pooling_position") != kept:
        raise WhisperCheckpointError(
            f"{file}: pooling_position={raw.get('pooling_position')} must equal "
            f"quantize_position={kept} (pool right before the quantiser)"
        )
    if not raw.get("quantize_encoder_only", False):
        raise WhisperCheckpointError(f"{file}: quantize_encoder_only must be true (a tokenizer "
                                     "checkpoint holds only the layers before the quantiser)")
    for field in ("encoder_causal_attention", "quantize_causal_encoder"):
        if raw.get(field, False):
            raise WhisperCheckpointError(f"{file}: {field}=true is not supported (the published "
                                         "tokenizer uses the block mask instead)")
    values = dict(
        n_audio_layer=kept,
        pooling_kernel_size=int(need("pooling_kernel_size")),
        pooling_type=raw.get("pooling_type", "max"),  # WhisperVQConfig's default
        codebook_size=int(need("quantize_vocab_size")),
        block_size=raw.get("quantize_causal_block_size"),
        causal_conv=bool(raw.get("encoder_causal_convolution", False)),
    )
    try:
        return VQEncoderConfig(**{**dataclasses.asdict(base), **values, **overrides})
    except ValueError as err:
        raise WhisperCheckpointError(f"{file}: {err}") from err


def checkpoint_tensors(config: VQEncoderConfig) -> dict:
    """Checkpoint key -> parameter (with its PyTorch shape) for a tokenizer of this shape."""
    tensors = key_map(config, prefix="", final_norm=False)
    e = config.n_audio_state
    tensors["codebook.weight"] = identity_tensor(("codebook",), (config.codebook_size, e))
    tensors["embed_positions2.weight"] = identity_tensor(
        ("embed_positions2",), (config.n_tokens, e)
    )
    return tensors


def load_vq_encoder(
    path: str | Path, *, mesh: Mesh | None = None, rules: Rules = PARAM_RULES, **overrides: Any
) -> VQEncoder:
    """The tokenizer of a `glm-4-voice-tokenizer` directory, born sharded with a mesh.

    overrides: e.g. `dtype="bfloat16"` (compute). The reference runs in fp32.
    """
    directory = Path(path)
    file = directory / WEIGHTS_FILE
    if not file.is_file():
        raise WhisperCheckpointError(f"{file}: no such safetensors file (expected a "
                                     "glm-4-voice-tokenizer directory)")
    config = read_vq_config(directory, **overrides)
    handle = SafetensorsFile(file)
    source = Source(str(file), {k: handle.shape(k) for k in handle.keys()}, handle.get)
    return build_from_source(
        lambda: VQEncoder(config, rngs=nnx.Rngs(0)), source, checkpoint_tensors(config),
        lambda key: key not in TRAINING_BUFFERS, mesh, rules,
    )
