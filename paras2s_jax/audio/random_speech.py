"""Random speech checkpoints in the published layouts, for runs without the real weights.

`write_random_speech(root)` writes what Kimi-Audio's speech front end reads:

    root/glm-4-voice-tokenizer/   config.json, preprocessor_config.json, model.safetensors
                                  (unprefixed fp32 keys + ema buffers, as published)
    root/whisper-large-v3/        config.json, model.safetensors (`encoder.*` keys)
    root/audio_detokenizer/       config.yaml, model.pt (flow-matching DiT, `speech_model.*`)
    root/vocoder/                 config.json, model.pt (BigVGAN `generator`, weight_g/v)

Linear and conv weights ~N(0, 0.02²), norms near 1, the codebook ~N(0, 1); the
detokenizer's weights are described in `paras2s_jax.audio.detokenizer.random_checkpoint`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from paras2s_jax.audio.vq_checkpoint import TRAINING_BUFFERS, WEIGHTS_FILE, checkpoint_tensors
from paras2s_jax.audio.vq_encoder import VQEncoderConfig
from paras2s_jax.audio.whisper_checkpoint import key_map
from paras2s_jax.audio.whisper_encoder import WhisperEncoderConfig
from paras2s_jax.checkpoint.safetensors_io import write_safetensors

TOKENIZER_DIR = "glm-4-voice-tokenizer"
WHISPER_DIR = "whisper-large-v3"


def _random(shapes: Mapping[str, tuple[int, ...]], seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for key, shape in shapes.items():
        if "layer_norm.weight" in key:
            value = 1.0 + 0.02 * rng.standard_normal(shape)
        elif key == "codebook.weight":
            value = rng.standard_normal(shape)
        else:
            value = 0.02 * rng.standard_normal(shape)
        out[key] = value.astype(np.float32)
    return out


def tokenizer_config_json(config: VQEncoderConfig) -> dict[str, Any]:
    """`config.json` with the published field names for a tokenizer of this shape."""
    return {
        "architectures": ["WhisperVQEncoder"], "model_type": "whisper",
        "d_model": config.n_audio_state, "encoder_attention_heads": config.n_audio_head,
        "encoder_ffn_dim": config.mlp_width,
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


def preprocessor_config_json(n_mels: int) -> dict[str, Any]:
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
    """A random `glm-4-voice-tokenizer` directory; returns {key: shape}."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tensors = _random({k: t.torch_shape for k, t in checkpoint_tensors(config).items()}, seed)
    count, weight = TRAINING_BUFFERS
    tensors[count] = np.ones((config.codebook_size,), np.float32)
    tensors[weight] = tensors["codebook.weight"].copy()
    write_safetensors(out / WEIGHTS_FILE, tensors.items(), metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(tokenizer_config_json(config), indent=2) + "\n")
    (out / "preprocessor_config.json").write_text(
        json.dumps(preprocessor_config_json(config.n_mels), indent=2) + "\n"
    )
    return {k: v.shape for k, v in tensors.items()}


def write_random_whisper_encoder(
    out: str | Path, config: WhisperEncoderConfig, seed: int = 0
) -> dict[str, tuple[int, ...]]:
    """A random HF Whisper directory holding the encoder's tensors (`encoder.*`)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tensors = _random({k: t.torch_shape for k, t in key_map(config).items()}, seed)
    write_safetensors(out / "model.safetensors", tensors.items(), metadata={"format": "pt"})
    raw = {"architectures": ["WhisperForConditionalGeneration"], "model_type": "whisper",
           "num_mel_bins": config.n_mels, "max_source_positions": config.n_audio_ctx,
           "d_model": config.n_audio_state, "encoder_attention_heads": config.n_audio_head,
           "encoder_layers": config.n_audio_layer, "encoder_ffn_dim": config.mlp_width,
           "activation_function": "gelu", "torch_dtype": "float32"}
    (out / "config.json").write_text(json.dumps(raw, indent=2) + "\n")
    return {k: v.shape for k, v in tensors.items()}


def speech_presets(preset: str) -> tuple[VQEncoderConfig, WhisperEncoderConfig]:
    """(tokenizer, Whisper encoder) configs: "tiny" fits `model.config.tiny()` (256 codes,
    4 x 32 feature width, 30 s windows); "kimi_audio_7b" is the published pair."""
    if preset == "kimi_audio_7b":
        return VQEncoderConfig.glm4_voice(), WhisperEncoderConfig.large_v3()
    if preset == "tiny":
        return (VQEncoderConfig.tiny_test(codebook_size=256, block_size=200, n_audio_ctx=1500),
                WhisperEncoderConfig.tiny_test(n_mels=128, n_audio_ctx=1500))
    raise ValueError(f"unknown speech preset {preset!r}; use 'tiny' or 'kimi_audio_7b'")


def write_random_speech(root: str | Path, preset: str = "tiny", seed: int = 0) -> dict[str, Path]:
    """Random tokenizer, Whisper encoder, detokenizer and vocoder under `root`;
    returns {name: directory}."""
    from paras2s_jax.audio.detokenizer import DETOKENIZER_DIR, VOCODER_DIR
    from paras2s_jax.audio.detokenizer.random_checkpoint import (
        detokenizer_preset,
        write_random_detokenizer,
    )

    root = Path(root)
    tokenizer, whisper = speech_presets(preset)
    dirs = {"tokenizer": root / TOKENIZER_DIR, "whisper": root / WHISPER_DIR,
            "detokenizer": root / DETOKENIZER_DIR, "vocoder": root / VOCODER_DIR}
    write_random_vq_checkpoint(dirs["tokenizer"], tokenizer, seed)
    write_random_whisper_encoder(dirs["whisper"], whisper, seed + 1)
    dit_yaml, vocoder_json = detokenizer_preset(preset)
    write_random_detokenizer(root, dit_yaml=dit_yaml, vocoder_json=vocoder_json, seed=seed + 2)
    return dirs
