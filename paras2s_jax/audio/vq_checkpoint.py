"""Load GLM-4-Voice's `glm-4-voice-tokenizer` directory, or write a random one in its layout.

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

import numpy as np
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
from paras2s_jax.checkpoint.safetensors_io import SafetensorsFile, write_safetensors
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


def _tensors(config: VQEncoderConfig) -> dict:
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
        lambda: VQEncoder(config, rngs=nnx.Rngs(0)), source, _tensors(config),
        lambda key: key not in TRAINING_BUFFERS, mesh, rules,
    )


def published_config(config: VQEncoderConfig) -> dict[str, Any]:
    """`config.json` with the published field names for a tokenizer of this shape."""
    return {
        "architectures": ["WhisperVQEncoder"], "model_type": "whisper",
        "d_model": config.n_audio_state, "encoder_attention_heads": config.n_audio_head,
        "encoder_ffn_dim": 4 * config.n_audio_state,
        # The published model was trained with twice the layers it keeps (32 -> 16).
        "encoder_layers": 2 * config.n_audio_layer, "num_mel_bins": config.n_mels,
        "max_source_positions": config.n_audio_ctx, "activation_function": "gelu",
        "scale_embedding": False, "pooling_kernel_size": config.pooling_kernel_size,
        "pooling_type": config.pooling_type, "pooling_position": config.n_audio_layer,
        "quantize_position": config.n_audio_layer, "quantize_vocab_size": config.codebook_size,
        "quantize_encoder_only": True, "quantize_causal_encoder": False,
        "quantize_causal_block_size": config.block_size,
        "encoder_causal_convolution": config.causal_conv, "encoder_causal_attention": False,
        "quantize_commit_coefficient": 0.25, "quantize_loss_scale": 10.0,
        "quantize_ema_decay": 0.99, "quantize_restart_interval": 100,
        "skip_language_detection": True, "torch_dtype": "float32",
    }


def preprocessor_config(n_mels: int) -> dict[str, Any]:
    """HF `WhisperFeatureExtractor` settings (`preprocessor_config.json`)."""
    return {
        "feature_extractor_type": "WhisperFeatureExtractor", "feature_size": n_mels,
        "sampling_rate": 16000, "hop_length": 160, "n_fft": 400, "chunk_length": 30,
        "n_samples": 480000, "nb_max_frames": 3000, "padding_side": "right",
        "padding_value": 0.0, "return_attention_mask": False,
    }


def write_random_vq_checkpoint(
    out: str | Path, config: VQEncoderConfig, seed: int = 0
) -> dict[str, tuple[int, ...]]:
    """A random tokenizer directory in the published layout; returns {key: shape}.

    Linear and conv weights ~N(0, 0.02²), biases ~N(0, 0.02²), norms near 1 and the
    codebook ~N(0, 1), so codes are spread; fp32 like the published file.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    tensors = {}
    for key, tensor in _tensors(config).items():
        shape = tensor.torch_shape
        if "layer_norm.weight" in key:
            value = 1.0 + 0.02 * rng.standard_normal(shape)
        elif key == "codebook.weight":
            value = rng.standard_normal(shape)
        else:
            value = 0.02 * rng.standard_normal(shape)
        tensors[key] = value.astype(np.float32)
    tensors["ema_count"] = np.ones((config.codebook_size,), np.float32)
    tensors["ema_weight"] = tensors["codebook.weight"].copy()
    write_safetensors(out / WEIGHTS_FILE, tensors.items(), metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(published_config(config), indent=2) + "\n")
    (out / "preprocessor_config.json").write_text(
        json.dumps(preprocessor_config(config.n_mels), indent=2) + "\n"
    )
    return {k: v.shape for k, v in tensors.items()}
