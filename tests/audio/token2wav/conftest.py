"""A tiny random transformers Qwen2.5-Omni (whole model) saved in its published layout."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from transformers import Qwen2_5OmniConfig, Qwen2_5OmniForConditionalGeneration

from paras2s_jax.audio.token2wav import Token2WavConfig, load_token2wav

TINY = Token2WavConfig.tiny()
_ROPE = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [1, 1, 2]}


def hf_config(config: Token2WavConfig = TINY) -> Qwen2_5OmniConfig:
    """A whole-model config: a minimal thinker and talker around the token2wav under test."""
    text = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                num_key_value_heads=1, vocab_size=64, rope_parameters=_ROPE)
    thinker = dict(
        text_config=text,
        audio_config=dict(d_model=16, encoder_layers=1, encoder_attention_heads=2,
                          encoder_ffn_dim=32, output_dim=16, num_mel_bins=8,
                          max_source_positions=16, n_window=4),
        vision_config=dict(depth=1, hidden_size=16, intermediate_size=32, num_heads=2,
                           out_hidden_size=16, fullatt_block_indexes=[0]))
    talker = dict(text, embedding_size=16, head_dim=8)
    dit = {k: list(v) if isinstance(v, tuple) else v
           for k, v in dataclasses.asdict(config.dit).items() if k != "rope_theta"}
    dit["rope_parameters"] = {"rope_type": "default", "rope_theta": config.dit.rope_theta}
    big = {k: [list(x) for x in v] if k == "resblock_dilation_sizes" else
           (list(v) if isinstance(v, tuple) else v)
           for k, v in dataclasses.asdict(config.bigvgan).items()}
    return Qwen2_5OmniConfig(thinker_config=thinker, talker_config=talker,
                             token2wav_config=dict(dit_config=dit, bigvgan_config=big))


def randomize_(module: torch.nn.Module, seed: int) -> None:
    """Every float parameter ~ N(0, 0.2²) (SnakeBeta's log α, log β ~ N(0, 0.1²); the
    vocoder's conv_post ~ N(0, 0.01²) so that the wav is not mostly the ±1 clamp).

    Zero-initialised adaLN / Snake parameters would hide mis-mapped tensors and make the
    modulations trivial, so nothing keeps its init.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            std = 0.1 if name.endswith((".alpha", ".beta")) else 0.2
            if "conv_post" in name:  # keep most of the wav inside the final clamp
                std = 0.01
            p.copy_(std * torch.randn(p.shape, generator=gen))


@pytest.fixture(scope="session")
def hf_omni(tmp_path_factory):
    """(torch Qwen2_5OmniToken2WavModel, directory with config.json + >1 safetensors shard)."""
    torch.manual_seed(0)
    model = Qwen2_5OmniForConditionalGeneration(hf_config()).eval()
    randomize_(model.token2wav, seed=1)
    directory = tmp_path_factory.mktemp("hf_omni_tiny")
    model.save_pretrained(directory, max_shard_size="20KB")
    index = json.loads((directory / "model.safetensors.index.json").read_text())
    shards = {f for k, f in index["weight_map"].items() if k.startswith("token2wav.")}
    assert len(shards) > 1, "the token2wav tensors should span several shards"
    return model.token2wav, directory


@pytest.fixture(scope="session")
def ours(hf_omni):
    return load_token2wav(hf_omni[1])
