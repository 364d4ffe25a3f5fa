"""An independent PyTorch Kimi-Audio, written from the published model description.

It reuses `transformers`' Qwen2 decoder layer, norm and rotary embedding (Kimi-Audio's
layers are Qwen2 layers) and adds the Kimi-specific parts: the shared embedding of the
two id streams, the Whisper-feature VQ adaptor with its sqrt(2) mixing, the audio
("MIMO") branch cloned after trunk layer `kimia_mimo_transformer_from_layer_index`, and
the two full-vocabulary heads. Module names equal the checkpoint's tensor names, so
`state_dict()` has the real Kimi-Audio keys.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from transformers import Qwen2Config
from transformers.models.qwen2.modeling_qwen2 import (
    Qwen2DecoderLayer,
    Qwen2RMSNorm,
    Qwen2RotaryEmbedding,
)


def reference_config(cfg) -> Qwen2Config:
    """A Qwen2Config carrying the Kimi fields of a `KimiAudioConfig`."""
    config = Qwen2Config(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads,
        rms_norm_eps=cfg.rms_norm_eps,
        rope_theta=cfg.rope_theta,
        max_position_embeddings=cfg.max_position_embeddings,
        tie_word_embeddings=False,
        attn_implementation="eager",
    )
    config.kimia_mimo_layers = cfg.mimo_layers
    config.kimia_mimo_transformer_from_layer_index = cfg.mimo_from_layer
    config.kimia_adaptor_input_dim = cfg.adaptor_input_dim
    return config


class VQAdaptor(nn.Module):
    def __init__(self, config: Qwen2Config):
        super().__init__()
        h = config.hidden_size
        self.layers = nn.Sequential(
            nn.Linear(config.kimia_adaptor_input_dim, h, bias=True),
            nn.SiLU(),
            nn.Dropout(0.0),
            nn.Linear(h, h, bias=True),
            nn.LayerNorm(h, eps=config.rms_norm_eps, bias=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class KimiAudioInner(nn.Module):
    def __init__(self, config: Qwen2Config):
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(
            Qwen2DecoderLayer(config, i) for i in range(config.num_hidden_layers)
        )
        self.mimo_layers = nn.ModuleList(
            Qwen2DecoderLayer(config, i) for i in range(config.kimia_mimo_layers)
        )
        self.norm = Qwen2RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.mimo_norm = Qwen2RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.vq_adaptor = VQAdaptor(config)
        self.rotary_emb = Qwen2RotaryEmbedding(config)
        self.branch_after = config.kimia_mimo_transformer_from_layer_index


class KimiAudioReference(nn.Module):
    """forward(...) -> (audio_logits, text_logits), the order of the original code."""

    def __init__(self, config: Qwen2Config):
        super().__init__()
        self.config = config
        self.model = KimiAudioInner(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.mimo_output = nn.Linear(config.hidden_size, config.vocab_size, bias=False)

    def forward(
        self,
        input_ids: torch.Tensor,  # the audio stream
        text_input_ids: torch.Tensor,
        attention_mask: torch.Tensor,  # [B, L] 1 = real token
        position_ids: torch.Tensor,
        whisper_input_feature: torch.Tensor | None = None,  # [B, L, 5120] aligned
        is_continuous_mask: torch.Tensor | None = None,  # [B, L] bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        m = self.model
        audio_emb = m.embed_tokens(input_ids)
        if whisper_input_feature is not None:
            whisper_emb = m.vq_adaptor(whisper_input_feature) * is_continuous_mask[..., None]
            mixed = (audio_emb + whisper_emb) * math.sqrt(2.0)
            audio_emb = torch.where(is_continuous_mask[..., None], mixed, audio_emb)
        hidden = audio_emb + m.embed_tokens(text_input_ids)

        length = input_ids.shape[1]
        causal = torch.tril(torch.ones(length, length, dtype=torch.bool))
        allowed = causal[None] & attention_mask.bool()[:, None, :]
        additive = torch.zeros(allowed.shape, dtype=hidden.dtype)
        additive = additive.masked_fill(~allowed, torch.finfo(hidden.dtype).min)[:, None]
        rope = m.rotary_emb(hidden, position_ids)

        mimo_hidden = None
        for i, layer in enumerate(m.layers):
            hidden = layer(hidden, attention_mask=additive, position_ids=position_ids,
                           position_embeddings=rope)
            if i == m.branch_after:
                mimo_hidden = hidden.clone()
        text_logits = self.lm_head(m.norm(hidden))
        for layer in m.mimo_layers:
            mimo_hidden = layer(mimo_hidden, attention_mask=additive, position_ids=position_ids,
                                position_embeddings=rope)
        audio_logits = self.mimo_output(m.mimo_norm(mimo_hidden))
        return audio_logits, text_logits


def randomize_(module: nn.Module, seed: int) -> None:
    """Fill every parameter with random values (biases and norm scales included)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if name.endswith("norm.weight") or name.endswith("layers.4.weight"):
                p.copy_(1.0 + 0.1 * noise)
            else:
                p.copy_(0.05 * noise)
