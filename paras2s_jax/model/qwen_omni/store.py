"""Qwen2.5-Omni checkpoints: HF import/export through Orbax (`paras2s_jax.checkpoint.
orbax_io` saves and restores either family), and a small random checkpoint in the
published layout (no torch needed).

An imported Orbax directory holds, like a Kimi-Audio one (`paras2s_jax.checkpoint`):

    DIR/params/        the QwenOmni parameter tree (audio_encoder, thinker, talker)
    DIR/model_config/  {"family": "qwen25_omni", "thinker": ..., "audio": ..., "talker": ...}
    DIR/hf_files/      the source's non-weight files (config.json, tokenizer, spk_dict.pt,
                       ...) and `model.safetensors` with the tensors QwenOmni does not
                       hold (token2wav.*, the vision tower), kept as stored

so `export_hf_dir` writes the published layout back, byte-exact for untouched tensors.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flax import nnx
from jax.sharding import Mesh

from paras2s_jax.checkpoint.hf_assets import ASSETS_DIR, save_assets
from paras2s_jax.checkpoint.hf_io import SINGLE_FILE
from paras2s_jax.checkpoint.orbax_io import restore_model, save_model
from paras2s_jax.checkpoint.safetensors_io import write_safetensors
from paras2s_jax.model.qwen_omni.model import (
    QwenOmni,
    QwenOmniConfig,
    export_qwen_omni,
    load_qwen_omni,
    model_tensors,
    other_tensors,
    qwen25_omni_3b,
    qwen25_omni_7b,
    tiny,
    with_fields,
    write_shards,
)


def is_qwen_omni_hf(config: dict[str, Any]) -> bool:
    """Whether a HF `config.json` dict describes a Qwen2.5-Omni model."""
    names = [config.get("model_type", ""), *config.get("architectures", [])]
    return any(str(n).lower().startswith(("qwen2_5_omni", "qwen2_5omni")) for n in names)


def import_hf_dir(hf_dir: str | Path, out: str | Path, mesh: Mesh | None = None,
                  param_dtype: str | None = None) -> tuple[QwenOmni, int]:
    """HF directory -> Orbax checkpoint at `out` with its `hf_files/` (see the module
    docstring). Returns the model and the number of other tensors kept."""
    model = load_qwen_omni(hf_dir, mesh, param_dtype=param_dtype)
    save_model(out, model)
    save_assets(hf_dir, out)
    kept = other_tensors(model, hf_dir)
    write_safetensors(Path(out) / ASSETS_DIR / SINGLE_FILE,
                      ((k, produce()) for k, (_, _, produce) in kept.items()),
                      shapes={k: (shape, dtype) for k, (shape, dtype, _) in kept.items()},
                      metadata={"format": "pt"})
    return model, len(kept)


def export_hf_dir(checkpoint: str | Path, out: str | Path, assets: str | Path,
                  mesh: Mesh | None = None, max_shard_bytes: int = 5 * 1024**3
                  ) -> dict[str, str]:
    """Orbax checkpoint -> the published layout at `out`; `assets`: an imported
    checkpoint's `hf_files/` or the original HF directory. Returns the weight map."""
    return export_qwen_omni(restore_model(checkpoint, mesh), out, assets, max_shard_bytes)


def hf_config(config: QwenOmniConfig) -> dict[str, Any]:
    """A published-style `config.json` dict for `config` (thinker text + audio, talker;
    transformers fills the vision and token2wav parts with its defaults)."""
    th, au, tk = config.thinker, config.audio, config.talker

    def rope(c: Any) -> dict[str, Any]:
        return {"rope_type": "default", "rope_theta": c.rope_theta,
                "mrope_section": list(c.mrope_section)}

    text = dict(vocab_size=th.vocab_size, hidden_size=th.hidden_size,
                intermediate_size=th.intermediate_size, num_hidden_layers=th.num_layers,
                num_attention_heads=th.num_heads, num_key_value_heads=th.num_kv_heads,
                head_dim=th.head_dim, rms_norm_eps=th.rms_norm_eps, rope_parameters=rope(th),
                tie_word_embeddings=th.tie_word_embeddings)
    audio = {f: getattr(au, f) for f in ("num_mel_bins", "d_model", "encoder_layers",
                                          "encoder_attention_heads", "encoder_ffn_dim",
                                          "max_source_positions", "n_window", "output_dim")}
    thinker = dict(text_config=text, audio_config=audio,
                   audio_token_index=th.audio_token_index,
                   audio_start_token_id=th.audio_start_token_id,
                   audio_end_token_id=th.audio_end_token_id, bos_token_id=th.bos_token_id,
                   eos_token_id=th.eos_token_id, pad_token_id=th.pad_token_id,
                   position_id_per_seconds=th.position_id_per_seconds,
                   seconds_per_chunk=th.seconds_per_chunk)
    talker = dict(vocab_size=tk.vocab_size, embedding_size=tk.embedding_size,
                  hidden_size=tk.hidden_size, intermediate_size=tk.intermediate_size,
                  num_hidden_layers=tk.num_layers, num_attention_heads=tk.num_heads,
                  num_key_value_heads=tk.num_kv_heads, head_dim=tk.head_dim,
                  rms_norm_eps=tk.rms_norm_eps, rope_parameters=rope(tk),
                  tts_codec_start_token_id=tk.codec_start_token_id,
                  tts_codec_end_token_id=tk.codec_end_token_id,
                  tts_codec_pad_token_id=tk.codec_pad_token_id,
                  tts_codec_mask_token_id=tk.codec_mask_token_id,
                  tts_text_start_token_id=tk.text_start_token_id,
                  tts_text_end_token_id=tk.text_end_token_id,
                  tts_text_pad_token_id=tk.text_pad_token_id,
                  audio_token_index=th.audio_token_index)
    return dict(architectures=["Qwen2_5OmniModel"], model_type="qwen2_5_omni",
                enable_audio_output=True, torch_dtype=th.param_dtype,
                thinker_config=thinker, talker_config=talker)


def preset_config(name: str, param_dtype: str = "float32") -> QwenOmniConfig:
    """The named preset (tiny, qwen25_omni_3b, qwen25_omni_7b) with every part stored in
    `param_dtype`; an unknown name raises KeyError."""
    presets = {"tiny": tiny, "qwen25_omni_3b": qwen25_omni_3b, "qwen25_omni_7b": qwen25_omni_7b}
    if name not in presets:
        raise KeyError(f"no Qwen2.5-Omni preset {name!r}; choose from {sorted(presets)}")
    config = presets[name]()
    return with_fields(config, param_dtype=param_dtype)


def write_random_qwen_omni(out: str | Path, config: QwenOmniConfig, seed: int = 0,
                           max_shard_bytes: int = 5 * 1024**3) -> dict[str, str]:
    """A randomly initialised QwenOmni written in the published layout (config.json and
    safetensors shards of thinker.*, talker.*; no vision or token2wav tensors)."""
    out = Path(out)
    model = QwenOmni(config, rngs=nnx.Rngs(seed))
    weight_map = write_shards(out, model_tensors(model), max_shard_bytes)
    (out / "config.json").write_text(json.dumps(hf_config(config), indent=2))
    return weight_map
