"""Tiny random Whisper references (transformers and openai-whisper) saved in their real layouts."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import whisper
from transformers import WhisperConfig, WhisperModel

from paras2s_jax.audio import WhisperEncoderConfig

TINY = WhisperEncoderConfig.tiny_test()


def randomize_(module: torch.nn.Module, seed: int) -> None:
    """Every parameter and buffer random: norms near 1, everything else ~N(0, 0.1²).

    Zero biases or unit norms would hide a mis-mapped tensor, so nothing keeps its init.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
            if not tensor.is_floating_point():
                continue
            noise = 0.1 * torch.randn(tensor.shape, generator=gen)
            is_norm_scale = name.endswith("weight") and ("ln" in name or "layer_norm" in name)
            tensor.copy_(1.0 + noise if is_norm_scale else noise)


def hf_tiny_config(cfg: WhisperEncoderConfig = TINY) -> WhisperConfig:
    # Small vocab: the special ids must be set explicitly or the config defaults overflow it.
    return WhisperConfig(
        vocab_size=64, num_mel_bins=cfg.n_mels, d_model=cfg.n_audio_state,
        encoder_layers=cfg.n_audio_layer, encoder_attention_heads=cfg.n_audio_head,
        encoder_ffn_dim=cfg.mlp_width, decoder_layers=1, decoder_attention_heads=4,
        decoder_ffn_dim=64, max_source_positions=cfg.n_audio_ctx, max_target_positions=8,
        pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=3,
    )


@pytest.fixture(scope="session")
def hf_whisper(tmp_path_factory):
    """(torch WhisperModel, directory with config.json + model.safetensors incl. decoder)."""
    model = WhisperModel(hf_tiny_config()).eval()
    randomize_(model, seed=0)
    directory = tmp_path_factory.mktemp("hf_whisper_tiny")
    model.save_pretrained(directory)
    return model, directory


def openai_dims(cfg: WhisperEncoderConfig = TINY) -> whisper.model.ModelDimensions:
    return whisper.model.ModelDimensions(
        n_mels=cfg.n_mels, n_audio_ctx=cfg.n_audio_ctx, n_audio_state=cfg.n_audio_state,
        n_audio_head=cfg.n_audio_head, n_audio_layer=cfg.n_audio_layer, n_vocab=64,
        n_text_ctx=8, n_text_state=16, n_text_head=2, n_text_layer=1,
    )


@pytest.fixture(scope="session")
def openai_whisper(tmp_path_factory):
    """(torch openai-whisper model, path of its .pt file in the published format)."""
    dims = openai_dims()
    model = whisper.model.Whisper(dims).eval()
    randomize_(model, seed=1)
    path = tmp_path_factory.mktemp("openai_whisper_tiny") / "tiny.pt"
    torch.save({"dims": dataclasses.asdict(dims), "model_state_dict": model.state_dict()}, path)
    return model, path
