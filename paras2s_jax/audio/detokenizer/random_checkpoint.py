"""Random detokenizer and vocoder checkpoints in Kimi-Audio's real file layout.

    audio_detokenizer/config.yaml   model.dit.* + normalize_mel / mel_mean / mel_std
    audio_detokenizer/model.pt      {"state_dict": {"speech_model.<key>": tensor}}
    vocoder/config.json             BigVGAN v2 hyper-parameters
    vocoder/model.pt                {"generator": state dict with weight_g / weight_v}

The files are written without torch (`torch_pickle.save_torch_file`) and load with
`torch.load(weights_only=True)` as well as with `load_detokenizer`. Weights are scaled so
that a random model produces audible, unclipped output; they carry no meaning.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from paras2s_jax.audio.detokenizer.checkpoint import (
    DIT_PREFIX,
    SINCOS_BUFFER,
    dit_tensor_map,
    vocoder_tensor_map,
)
from paras2s_jax.audio.detokenizer.dit import DiTConfig
from paras2s_jax.audio.detokenizer.vocoder import BigVGANConfig, kaiser_sinc_filter
from paras2s_jax.checkpoint.torch_pickle import save_torch_file

# Values of the published checkpoint where known (see docs/speech.md);
# mel_mean / mel_std / num_heads are third-party readings of config.yaml.
KIMI_DIT_YAML: dict[str, Any] = {
    "model": {"dit": {
        "input_size": 80, "semantic_vocab_size": 16384, "hidden_size": 2304, "depth": 16,
        "num_heads": 18, "mlp_ratio": 4.0, "ffn_type": "vanilla_mlp", "use_rope": True,
        "rope_params": {"max_position_embeddings": 4096, "rope_base": 10000.0,
                        "rope_interpolation_factor": 1.0},
        "position_embedding_type": "skip", "max_seq_len": 4096,
    }},
    "normalize_mel": True, "mel_mean": -4.479605, "mel_std": 3.4584913,
}
KIMI_VOCODER_JSON: dict[str, Any] = {
    "resblock": "1", "num_mels": 80, "sampling_rate": 24000, "hop_size": 480,
    "upsample_rates": [5, 2, 2, 2, 2, 3, 2], "upsample_kernel_sizes": [9, 4, 4, 4, 4, 5, 4],
    "upsample_initial_channel": 2048, "resblock_kernel_sizes": [3, 5, 7, 11],
    "resblock_dilation_sizes": [[1, 3, 5]] * 4, "activation": "snakebeta",
    "snake_logscale": True, "use_bias_at_final": False, "use_tanh_at_final": False,
}


def tiny_dit_yaml(**dit: Any) -> dict[str, Any]:
    """The Kimi config with a small width and depth (every structural feature kept)."""
    base = {**KIMI_DIT_YAML["model"]["dit"], "hidden_size": 64, "depth": 2, "num_heads": 4}
    return {**KIMI_DIT_YAML, "model": {"dit": {**base, **dit}}}


def tiny_vocoder_json(**changes: Any) -> dict[str, Any]:
    """A small BigVGAN with Kimi's hop (480 samples per frame, 24 kHz) in three stages."""
    return {**KIMI_VOCODER_JSON, "upsample_rates": [8, 6, 10],
            "upsample_kernel_sizes": [16, 12, 20], "upsample_initial_channel": 64,
            "resblock_kernel_sizes": [3, 5], "resblock_dilation_sizes": [[1, 3], [1, 2]],
            **changes}


def detokenizer_preset(preset: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(config.yaml, config.json) contents: "tiny" for CPU runs, "kimi_audio_7b" full size."""
    if preset == "tiny":
        return tiny_dit_yaml(), tiny_vocoder_json()
    if preset == "kimi_audio_7b":
        return KIMI_DIT_YAML, KIMI_VOCODER_JSON
    raise ValueError(f"unknown detokenizer preset {preset!r}; use 'tiny' or 'kimi_audio_7b'")


def random_dit_state(config: DiTConfig, seed: int = 0) -> dict[str, np.ndarray]:
    """`speech_model.*` tensors in PyTorch layout (float32), fan-in scaled, adaLN non-zero."""
    rng = np.random.default_rng(seed)
    state = {}
    for key, entry in dit_tensor_map(config).items():
        shape = entry.shape
        if key.endswith(".bias"):
            value = 0.02 * rng.standard_normal(shape)
        elif len(shape) == 2 and "embedding" not in key:
            value = rng.standard_normal(shape) / np.sqrt(shape[1])
        else:
            value = rng.standard_normal(shape)
        state[DIT_PREFIX + key] = value.astype(np.float32)
    if config.position_embedding_type == "sincos":
        state[DIT_PREFIX + SINCOS_BUFFER] = np.zeros(1, np.float32)
    return state


def random_vocoder_state(config: BigVGANConfig, seed: int = 0,
                         gain: float = 0.6) -> dict[str, np.ndarray]:
    """The `generator` state dict: weight-normed convs (g, v), Snake α/β, the fixed filters.

    gain sets ‖w‖ per output channel; ~0.6 keeps a random model's output in (-1, 1).
    """
    rng = np.random.default_rng(seed)
    convs, plain, filters = vocoder_tensor_map(config)
    state: dict[str, np.ndarray] = {}
    for base, entry in convs.items():
        state[f"{base}.weight_v"] = rng.standard_normal(entry.shape).astype(np.float32)
        g_shape = (entry.shape[0],) + (1,) * (len(entry.shape) - 1)
        state[f"{base}.weight_g"] = rng.uniform(0.5 * gain, 1.5 * gain, g_shape).astype(
            np.float32)
    for key, entry in plain.items():
        scale = 0.5 if key.endswith(("alpha", "beta")) else 0.05
        state[key] = (scale * rng.standard_normal(entry.shape)).astype(np.float32)
    taps = kaiser_sinc_filter().reshape(1, 1, -1)
    for key in filters:
        state[key] = taps.copy()
    return state


def write_random_detokenizer(root: str | Path, *, dit_yaml: dict[str, Any] | None = None,
                             vocoder_json: dict[str, Any] | None = None,
                             seed: int = 0) -> Path:
    """Write `audio_detokenizer/` and `vocoder/` under `root` (tiny sizes by default)."""
    root = Path(root)
    dit_yaml = dit_yaml or tiny_dit_yaml()
    vocoder_json = vocoder_json or tiny_vocoder_json()
    det, voc = root / "audio_detokenizer", root / "vocoder"
    det.mkdir(parents=True, exist_ok=True)
    voc.mkdir(parents=True, exist_ok=True)
    (det / "config.yaml").write_text(yaml.safe_dump(dit_yaml, sort_keys=False))
    dit_state = random_dit_state(DiTConfig.from_dict(dit_yaml), seed)
    # the real file is a training checkpoint: other top-level entries sit beside the weights
    save_torch_file(det / "model.pt", {"state_dict": dit_state, "global_step": 0})
    (voc / "config.json").write_text(json.dumps(vocoder_json, indent=2))
    vocoder_state = random_vocoder_state(BigVGANConfig.from_dict(vocoder_json), seed + 1)
    save_torch_file(voc / "model.pt", {"generator": vocoder_state, "steps": 0})
    return root
