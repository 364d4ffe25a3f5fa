"""A compact PyTorch reference of Kimi-Audio's detokenizer, for parity tests only.

Written independently from the maths of MoonshotAI/Kimi-Audio `kimia_infer/models/
detokenizer/` (DiTPrefix, StreamingODEWrapperForPrefix, StreamingSemanticFMWrapper,
PrefixStreamingFlowMatchingDetokenizer) and `kimia_infer/api/kimia.py::detokenize_audio`,
in the original's own structure: module names that load the `speech_model.` state dict
strictly, a per-layer `incremental_state` dict with prev/cur keys and values, complex RoPE,
torchdyn's time accumulation, in-place tensor slicing for the wav overlap. flash-attn's
varlen kernel is replaced by float32 attention over [prev ; cur] (non-causal).
The vocoder is the `bigvgan` package (use_cuda_kernel=False).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml
from torch import nn


def _ln(x: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(x, x.shape[-1:], eps=1e-6)


class RefAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, freqs_cis, incr):
        b, n, c = x.shape
        q, k, v = self.qkv(x).view(b * n, 3 * self.heads, self.head_dim).split(self.heads, 1)
        q, k, v = (t.reshape(b, n, self.heads, self.head_dim) for t in (q, k, v))
        if freqs_cis is not None:
            rot = freqs_cis[:, :, None, :]
            q = torch.view_as_real(torch.view_as_complex(
                q.float().reshape(b, n, self.heads, -1, 2)) * rot).flatten(3).type_as(x)
            k = torch.view_as_real(torch.view_as_complex(
                k.float().reshape(b, n, self.heads, -1, 2)) * rot).flatten(3).type_as(x)
        if "prev_k" in incr:
            k = torch.cat([incr["prev_k"], k], dim=1)
            v = torch.cat([incr["prev_v"], v], dim=1)
        incr["cur_k"], incr["cur_v"] = k, v
        scores = torch.einsum("bthd,bshd->bhts", q.float(), k.float()) / math.sqrt(self.head_dim)
        out = torch.einsum("bhts,bshd->bthd", scores.softmax(-1), v.float()).type_as(x)
        return self.proj(out.reshape(b, n, c))


class RefMlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


def _modulate(x, shift, scale):
    return x * (1 + scale) + shift


class RefBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.attn = RefAttention(dim, heads)
        self.mlp = RefMlp(dim, int(dim * mlp_ratio))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

    def forward(self, x, c, freqs_cis, incr):
        sm, cm, gm, sf, cf, gf = self.adaLN_modulation(c).chunk(6, dim=2)
        x = x + gm * self.attn(_modulate(_ln(x), sm, cm), freqs_cis, incr)
        return x + gf * self.mlp(_modulate(_ln(x), sf, cf))


class RefFinal(nn.Module):
    def __init__(self, dim: int, out: int):
        super().__init__()
        self.linear = nn.Linear(dim, out)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))

    def forward(self, x, c):
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=2)
        return self.linear(_modulate(_ln(x), shift, scale))


class RefSinCos(nn.Module):
    """fairseq SinusoidalPositionalEmbedding(dim, padding_idx=0)."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self.register_buffer("_float_tensor", torch.FloatTensor(1))

    def forward(self, position_ids):
        half = self.dim // 2
        freqs = torch.exp(torch.arange(half, dtype=torch.float) * -(math.log(10000) / (half - 1)))
        rows = position_ids.shape[1] + 1
        table = torch.arange(rows, dtype=torch.float)[:, None] * freqs[None]
        table = torch.cat([torch.sin(table), torch.cos(table)], 1)
        table[0] = 0
        mask = position_ids.ne(0).int()
        pos = (torch.cumsum(mask, 1) * mask).long()
        return table.to(self._float_tensor)[pos]


class RefDiT(nn.Module):
    def __init__(self, dit: dict):
        super().__init__()
        d = dit["hidden_size"]
        self.t_embedder = nn.Module()
        self.t_embedder.mlp = nn.Sequential(nn.Linear(256, d), nn.SiLU(), nn.Linear(d, d))
        self.semantic_token_embedding = nn.Embedding(dit["semantic_vocab_size"] + 1, d)
        self.input_linear = nn.Linear(dit["input_size"], d)
        kind = dit["position_embedding_type"]
        self.position_embedding = {"sincos": lambda: RefSinCos(d), "skip": lambda: None,
                                   "learnable": lambda: nn.Embedding(dit["max_seq_len"] + 1, d)
                                   }[kind]()
        self.blocks = nn.ModuleList(RefBlock(d, dit["num_heads"], dit["mlp_ratio"])
                                    for _ in range(dit["depth"]))
        self.final_layer = RefFinal(d, dit["input_size"])
        self.freqs_cis = None
        if dit.get("use_rope"):
            rope = dit["rope_params"]
            hd = d // dit["num_heads"]
            freqs = 1.0 / (rope["rope_base"] ** (torch.arange(0, hd, 2)[: hd // 2].float() / hd))
            t = torch.arange(rope["max_position_embeddings"]).float()
            t *= 1.0 / float(rope["rope_interpolation_factor"])
            angles = torch.outer(t, freqs).float()
            self.freqs_cis = torch.polar(torch.ones_like(angles), angles)[: dit["max_seq_len"]]

    def forward(self, x, position_ids, t, condition, incremental_state):
        cond = self.semantic_token_embedding(condition)
        x = self.input_linear(x)
        if self.position_embedding is not None:
            x = x + self.position_embedding(position_ids)
        half = 128
        freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
        args = t[:, None].float() * freqs[None]
        t_freq = torch.cat([torch.cos(args), torch.sin(args)], -1)
        c = self.t_embedder.mlp(t_freq.to(self.input_linear.weight.dtype))[:, None] + cond
        rope = None if self.freqs_cis is None else self.freqs_cis[position_ids]
        for i, block in enumerate(self.blocks):
            x = block(x, c, rope, incremental_state.setdefault(i, {}))
        return self.final_layer(x, c)


def load_reference_dit(directory: Path, dtype=torch.float32) -> tuple[RefDiT, dict]:
    raw = yaml.safe_load((directory / "config.yaml").read_text())
    model = RefDiT(raw["model"]["dit"])
    state = torch.load(directory / "model.pt", map_location="cpu", weights_only=True)
    sd = {k.replace("speech_model.", ""): v for k, v in state["state_dict"].items()
          if "speech_model" in k}
    model.load_state_dict(sd, strict=True)
    return model.to(dtype).eval(), raw


def load_reference_vocoder(directory: Path, dtype=torch.float32):
    from bigvgan.bigvgan import BigVGAN
    from bigvgan.env import AttrDict

    h = AttrDict(json.loads((directory / "config.json").read_text()))
    model = BigVGAN(h, use_cuda_kernel=False)
    model.load_state_dict(torch.load(directory / "model.pt", map_location="cpu",
                                     weights_only=True)["generator"])
    return model.to(dtype).eval()


class RefStreamer:
    """detokenize_streaming + infer_chunk + the KV-cache bookkeeping + the wav overlap."""

    def __init__(self, dit: RefDiT, raw: dict, vocoder, dtype, noise, look_ahead=12,
                 max_kv=900, max_pos=4096):
        self.dit, self.vocoder, self.dtype, self.noise = dit, vocoder, dtype, noise
        self.norm = (raw["mel_mean"], raw["mel_std"]) if raw.get("normalize_mel") else None
        self.look_ahead, self.max_kv, self.max_pos = look_ahead, max_kv, max_pos
        self.prev_left = self.pre_mel = self.pre_wav = None
        self.clear_fm()

    def clear_fm(self):
        self.start, self.incr = 0, {}

    def net(self, t, x, tokens):
        t_int = torch.zeros(1, dtype=torch.long) + (t * 1000).long()
        pos = torch.arange(self.start, self.start + tokens.shape[0])[None]
        return self.dit(x, pos, t_int, tokens[None], self.incr)

    def euler(self, x, tokens, points=30):  # torchdyn _fixed_odeint with solver "euler"
        t_span = torch.linspace(0, 1, points)
        t, dt = t_span[0], t_span[1] - t_span[0]
        for step in range(1, points):
            x = x + dt * self.net(t, x, tokens)
            t = t + dt
            if step < points - 1:
                dt = t_span[step + 1] - t
        return x

    def infer_chunk(self, tokens, look_ahead):
        x0 = torch.as_tensor(self.noise(tokens.shape[0])).to(self.dtype)[None]
        x = self.euler(x0, tokens)
        if look_ahead > 0:
            self.prev_left = tokens[-look_ahead:]
            x = x[:, :-look_ahead]
            self.net(torch.tensor([0.999]), x, tokens[:-look_ahead])  # writes cur_k/cur_v
        if self.norm is not None:
            x = x * self.norm[1] + self.norm[0]
        return x[0]

    def update_cache(self):
        for layer in self.incr.values():
            layer["prev_k"] = layer.pop("cur_k")[:, -self.max_kv:]
            layer["prev_v"] = layer.pop("cur_v")[:, -self.max_kv:]

    def vocode(self, mel):
        return self.vocoder(mel.transpose(0, 1)[None].to(self.dtype))[0]

    def chunk(self, ids, final):
        tokens = ids.repeat_interleave(4)
        if self.prev_left is not None:
            tokens = torch.cat([self.prev_left, tokens])
        mel = self.infer_chunk(tokens, 0 if final else self.look_ahead * 4)
        n = mel.shape[0]
        self.start += n
        self.update_cache()
        if self.pre_mel is None:
            wav = self.vocode(mel)
            if final:
                ret = wav
            else:
                ret = wav[:, : 480 * n // 2]
                self.pre_wav, self.pre_mel = wav[:, -(480 * n // 2):], mel[-n // 2:]
        else:
            wav = self.vocode(torch.cat([self.pre_mel, mel]))
            if final:
                ret = wav
            else:
                prev = self.pre_wav.shape[1]
                gen = prev * 2 if wav.shape[1] > prev * 2 else wav.shape[1] // 2
                ret = wav[:, :gen]
                w = torch.hamming_window(gen).to(self.dtype)[None]
                ret[:, : gen // 2] = (self.pre_wav[:, : gen // 2] * w[:, -(gen // 2):]
                                      + ret[:, : gen // 2] * w[:, : gen // 2])
                rest = wav.shape[1] - gen
                self.pre_wav, self.pre_mel = wav[:, -rest:], mel[-(rest // 480):]
        if not final and self.start + 2 * n > self.max_pos:
            self.clear_fm()
        return ret.float()

    @torch.inference_mode()
    def detokenize(self, ids: torch.Tensor, chunk=30) -> torch.Tensor:
        pieces = [self.chunk(ids[:chunk], final=ids.shape[0] <= chunk)]
        rest = ids[chunk:]
        for i in range(0, rest.shape[0], chunk):
            pieces.append(self.chunk(rest[i:i + chunk], final=i + chunk >= rest.shape[0]))
        return torch.cat(pieces, -1)[0]
