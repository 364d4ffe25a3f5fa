"""An independent PyTorch GLM-4-Voice tokenizer, written from the published description.

Reuses `transformers`' `WhisperEncoderLayer` (the tokenizer's layers are Whisper layers)
and HF `WhisperFeatureExtractor` (the front end the original calls), and adds the
tokenizer's own parts: causal convolutions, the 200-frame block mask as an additive
fp32-min bias, average pooling after the last kept layer, and the squared-L2 codebook
lookup in the `addmm` form. Module names equal the checkpoint's keys, so `state_dict()`
is a `glm-4-voice-tokenizer` `model.safetensors`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn
from transformers import WhisperConfig, WhisperFeatureExtractor
from transformers.models.whisper.modeling_whisper import WhisperEncoderLayer


class ReferenceVQEncoder(nn.Module):
    """`WhisperVQEncoder` in inference mode: (features, mask) -> (ids, pooled, last_hidden)."""

    def __init__(self, raw: dict, attn_implementation: str = "eager"):
        """raw: the tokenizer's config.json; attn_implementation: transformers' "eager"
        (the parity reference) or "sdpa" (torch's fused attention, the speed peer)."""
        super().__init__()
        d, ctx = raw["d_model"], raw["max_source_positions"]
        self.raw = raw
        config = WhisperConfig(
            d_model=d, encoder_attention_heads=raw["encoder_attention_heads"],
            encoder_ffn_dim=raw["encoder_ffn_dim"], num_mel_bins=raw["num_mel_bins"],
            max_source_positions=ctx, activation_function="gelu",
            attn_implementation=attn_implementation,
        )
        self.conv1 = nn.Conv1d(raw["num_mel_bins"], d, 3)
        self.conv2 = nn.Conv1d(d, d, 3, stride=2)
        self.embed_positions = nn.Embedding(ctx, d)
        self.layers = nn.ModuleList(
            WhisperEncoderLayer(config) for _ in range(raw["quantize_position"])
        )
        self.codebook = nn.Embedding(raw["quantize_vocab_size"], d)
        self.embed_positions2 = nn.Embedding(math.ceil(ctx / raw["pooling_kernel_size"]), d)
        self.register_buffer("ema_count", torch.ones(raw["quantize_vocab_size"]))
        self.register_buffer("ema_weight", torch.zeros(raw["quantize_vocab_size"], d))

    def _conv(self, conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
        if self.raw["encoder_causal_convolution"]:
            return conv(nn.functional.pad(x, (2, 0)))
        return nn.functional.conv1d(x, conv.weight, conv.bias, conv.stride, padding=1)

    def block_mask(self, valid: torch.Tensor) -> torch.Tensor:
        """Additive float [B, 1, C, C]: 0 where allowed, fp32 min elsewhere."""
        c = valid.shape[1]
        idx = torch.arange(c)
        block = self.raw["quantize_causal_block_size"]
        allowed = (idx[None, :] <= idx[:, None]) | (idx[:, None] // block == idx[None, :] // block)
        allowed = allowed[None] & valid[:, None, :].bool()
        return ((1.0 - allowed.float()) * torch.finfo(torch.float32).min)[:, None]

    def forward(self, features: torch.Tensor, attention_mask: torch.Tensor):
        valid = attention_mask[:, ::2]
        x = nn.functional.gelu(self._conv(self.conv1, features))
        x = nn.functional.gelu(self._conv(self.conv2, x)).permute(0, 2, 1)
        x = x + self.embed_positions.weight[: x.shape[1]]
        mask = self.block_mask(valid)
        for layer in self.layers:
            x = layer(x, mask)
        k = self.raw["pooling_kernel_size"]
        x = x.permute(0, 2, 1)
        if x.shape[-1] % k:
            x = nn.functional.pad(x, (0, k - x.shape[-1] % k))
        pooled = nn.functional.avg_pool1d(x, k).permute(0, 2, 1)
        flat = pooled.reshape(-1, pooled.shape[-1])
        book = self.codebook.weight
        distances = torch.addmm(
            (book**2).sum(1) + (flat**2).sum(1, keepdim=True), flat, book.t(), alpha=-2.0, beta=1.0
        )
        ids = distances.argmin(1).reshape(pooled.shape[:2])
        last_hidden = self.codebook(ids) + self.embed_positions2.weight[: ids.shape[1]]
        return ids, pooled, last_hidden


def load_reference(directory: Path, attn_implementation: str = "eager") -> ReferenceVQEncoder:
    raw = json.loads((directory / "config.json").read_text())
    model = ReferenceVQEncoder(raw, attn_implementation).eval()
    model.load_state_dict(load_file(directory / "model.safetensors"))
    return model


@torch.no_grad()
def reference_tokenize(
    model: ReferenceVQEncoder, extractor: WhisperFeatureExtractor, audio: np.ndarray,
    segment_samples: int = 480_000,
) -> tuple[np.ndarray, np.ndarray]:
    """One clip as Kimi-Audio tokenises it: (ids [T], pooled [T, E]) over its segments."""
    segments = [audio[s: s + segment_samples] for s in range(0, audio.size, segment_samples)]
    feats = extractor(segments, sampling_rate=16000, return_attention_mask=True,
                      return_tensors="pt", padding="longest", pad_to_multiple_of=1280)
    ids, pooled, _ = model(feats.input_features, feats.attention_mask)
    keep = feats.attention_mask[:, ::2][:, ::4].bool()
    return ids[keep].numpy(), pooled[keep].numpy()
