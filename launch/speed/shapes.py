"""Model shapes of the speed suites, FLOP and byte counts, and the PyTorch peer model.

Sizes: "minute" (tiny shapes, seconds; the smoke tests), "bench" (the published
comparison shapes on CPU: Qwen2-0.5B's layers) and "device" (Qwen2.5-7B-shaped layers
for an accelerator, as many layers as the suite's memory allows).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from paras2s_jax.model import KimiAudioConfig, tiny

SIZES = ("minute", "bench", "device")

# Qwen2-0.5B: hidden 896, 24 layers, 14 query / 2 kv heads, SwiGLU 4864, vocab 151,936.
QWEN2_0_5B = dict(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_layers=24,
                  num_heads=14, num_kv_heads=2, rope_theta=1_000_000.0, rms_norm_eps=1e-6)
# Qwen2.5-7B (Kimi-Audio's trunk).
QWEN2_5_7B = dict(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_layers=28,
                  num_heads=28, num_kv_heads=4, rope_theta=1_000_000.0, rms_norm_eps=1e-6)
MINUTE = dict(vocab_size=1280, hidden_size=64, intermediate_size=128, num_layers=2,
              num_heads=4, num_kv_heads=2, rope_theta=10000.0, rms_norm_eps=1e-6)
_BASE = {"minute": MINUTE, "bench": QWEN2_0_5B, "device": QWEN2_5_7B}


def trunk_config(size: str, **overrides: Any) -> KimiAudioConfig:
    """A text-only trunk (a plain Qwen2 model: no audio branch, no Whisper adaptor)."""
    fields = dict(_BASE[size])
    fields.update(overrides)
    v = fields["vocab_size"]
    return tiny(**fields, mimo_layers=0, use_whisper_feature=False, text_vocab_size=v,
                audio_token_offset=0, audio_codebook_size=0, max_position_embeddings=32768,
                special=_special_tokens(v))


def dual_config(size: str, mimo_layers: int, **overrides: Any) -> KimiAudioConfig:
    """The trunk plus Kimi-Audio's audio branch (leaving after 3/4 of the trunk, as the 7B)
    and its head; the vocabulary is split 90% text / 10% audio codes."""
    fields = dict(_BASE[size])
    fields.update(overrides)
    v, layers = fields["vocab_size"], fields["num_layers"]
    text = v - v // 10
    return tiny(**fields, mimo_layers=mimo_layers, mimo_from_layer=max(0, layers * 3 // 4 - 1),
                use_whisper_feature=False, text_vocab_size=text, audio_token_offset=text,
                audio_codebook_size=v - text, max_position_embeddings=32768,
                special=_special_tokens(text))


def _special_tokens(text_vocab: int):
    # The same relative layout as Kimi-Audio's (special ids at the top of the text ids).
    from paras2s_jax.model.config import SpecialTokens

    base = SpecialTokens()
    shift = text_vocab - 1 - base.pad
    return SpecialTokens(**{k: v + shift for k, v in dataclasses.asdict(base).items()})


def matmul_params(c: KimiAudioConfig) -> int:
    """Weights that take part in a matmul per token: every layer's projections + heads."""
    e, d = c.hidden_size, c.head_dim
    attn = e * c.num_heads * d * 2 + e * c.num_kv_heads * d * 2
    layer = attn + 3 * e * c.intermediate_size
    heads = (2 if c.mimo_layers else 1) * e * c.vocab_size
    return (c.num_layers + c.mimo_layers) * layer + heads


def decode_bytes(c: KimiAudioConfig, batch: int, context: int, bytes_per: int) -> int:
    """Bytes one decode step must read: all matmul weights + the KV cache in use."""
    kv = (c.num_layers + c.mimo_layers) * 2 * batch * context * c.num_kv_heads * c.head_dim
    return (matmul_params(c) + kv) * bytes_per


def decode_flops(c: KimiAudioConfig, batch: int, context: int) -> float:
    """FLOPs of one decode step: every matmul weight once per row, and attention of one
    query per row over `context` cached keys."""
    attention = 4 * (c.num_layers + c.mimo_layers) * c.hidden_size * context * batch
    return 2.0 * matmul_params(c) * batch + attention


def forward_flops(c: KimiAudioConfig, batch: int, length: int) -> float:
    """Model FLOPs of one forward pass (matmuls; attention scores at full S², the usual
    MFU convention)."""
    tokens = batch * length
    attention = 4 * (c.num_layers + c.mimo_layers) * c.hidden_size * length * tokens
    return 2.0 * matmul_params(c) * tokens + attention


def hf_peer(model, attn: str = "eager", dtype: str = "float32"):
    """transformers' `Qwen2ForCausalLM` holding exactly `model`'s weights (a trunk)."""
    import numpy as np
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from paras2s_jax.checkpoint import iter_hf_tensors

    c: KimiAudioConfig = model.config
    if c.mimo_layers or c.use_whisper_feature:
        raise ValueError("hf_peer needs a text-only trunk (trunk_config)")
    config = Qwen2Config(
        vocab_size=c.vocab_size, hidden_size=c.hidden_size, intermediate_size=c.intermediate_size,
        num_hidden_layers=c.num_layers, num_attention_heads=c.num_heads,
        num_key_value_heads=c.num_kv_heads, rms_norm_eps=c.rms_norm_eps,
        rope_theta=c.rope_theta, max_position_embeddings=c.max_position_embeddings,
        tie_word_embeddings=False, attn_implementation=attn, pad_token_id=0,
        bos_token_id=None, eos_token_id=None)
    peer = Qwen2ForCausalLM(config)
    # One tensor at a time: a second full copy of a 0.5B model would not fit next to
    # the suites' other contenders.
    params = dict(peer.named_parameters())
    copied = set()
    with torch.no_grad():
        for key, value in iter_hf_tensors(model):
            params[key].copy_(torch.from_numpy(np.array(value)))
            copied.add(key)
    if copied != set(params):
        raise ValueError(f"hf_peer: weights not set from the model: {sorted(set(params) - copied)}")
    return peer.to(getattr(torch, dtype)).eval()
