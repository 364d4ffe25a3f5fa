"""Load Qwen2.5-Omni's token2wav from its published checkpoint directory, and export it.

The directory holds `config.json` (with `token2wav_config`) and safetensors shards listed
in `model.safetensors.index.json` (or one `model.safetensors`). Only the `token2wav.*`
tensors are read (thinker and talker weights are ignored):

| torch key (after `token2wav.`)                              | ours                       |
|-------------------------------------------------------------|----------------------------|
| code2wav_dit_model.time_embed.time_mlp.{0,2}                | dit.time_embed.fc{1,2}     |
| code2wav_dit_model.text_embed.codec_embed.weight            | dit.codec_embed            |
| code2wav_dit_model.input_embed.proj                         | dit.input_proj             |
| code2wav_dit_model.input_embed.spk_encoder.*                | dit.spk_encoder.*          |
| code2wav_dit_model.transformer_blocks.i.attn_norm.linear    | dit.layers.i.attn_norm     |
| code2wav_dit_model.transformer_blocks.i.attn.to_{q,k,v}     | dit.layers.i.attn.to_*     |
| code2wav_dit_model.transformer_blocks.i.attn.to_out.0       | dit.layers.i.attn.to_out   |
| code2wav_dit_model.transformer_blocks.i.ff.ff.{0,3}         | dit.layers.i.ff.fc{1,2}    |
| code2wav_dit_model.norm_out.linear, proj_out                | dit.norm_out, dit.proj_out |
| code2wav_bigvgan_model.*                                    | bigvgan.* (same names)     |

Linear weights are transposed, conv weights go [out, in, K] -> [K, in, out] and
transposed-conv weights [in, out, K] -> time-flipped [K, in, out]. A missing, unexpected
or misshapen `token2wav.*` tensor raises `Token2WavCheckpointError` naming the file and key.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from flax import nnx

from paras2s_jax.audio.detokenizer.checkpoint import assign
from paras2s_jax.audio.token2wav.config import Token2WavConfig, Token2WavConfigError
from paras2s_jax.audio.token2wav.model import Token2Wav
from paras2s_jax.checkpoint.hf_io import CONFIG_FILE, CheckpointFileError, shard_files
from paras2s_jax.checkpoint.safetensors_io import SafetensorsError, SafetensorsFile

PREFIX = "token2wav."
DIT = "code2wav_dit_model."
VOCODER = "code2wav_bigvgan_model."

# kind -> (torch -> ours, ours -> torch)
_LAYOUTS = {
    "keep": (lambda x: x, lambda x: x),
    "linear": (lambda x: x.T, lambda x: x.T),
    "conv": (lambda x: x.transpose(2, 1, 0), lambda x: x.transpose(2, 1, 0)),
    "conv_t": (lambda x: x[:, :, ::-1].transpose(2, 0, 1),
               lambda x: x.transpose(1, 2, 0)[:, :, ::-1]),
}


class Token2WavCheckpointError(ValueError):
    """A token2wav checkpoint does not fit the model; names the file and key."""


@dataclasses.dataclass(frozen=True)
class Entry:
    path: tuple[str | int, ...]  # attribute path in `Token2Wav`
    shape: tuple[int, ...]  # torch shape
    kind: str  # a key of _LAYOUTS


class _Map:
    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}

    def linear(self, key: str, path: tuple, din: int, dout: int) -> None:
        self.entries[f"{key}.weight"] = Entry((*path, "kernel"), (dout, din), "linear")
        self.entries[f"{key}.bias"] = Entry((*path, "bias"), (dout,), "keep")

    def conv(self, key: str, path: tuple, cin: int, cout: int, k: int, *, bias: bool = True,
             transpose: bool = False) -> None:
        shape = (cin, cout, k) if transpose else (cout, cin, k)
        self.entries[f"{key}.weight"] = Entry((*path, "kernel"), shape,
                                              "conv_t" if transpose else "conv")
        if bias:
            self.entries[f"{key}.bias"] = Entry((*path, "bias"), (cout,), "keep")

    def vector(self, key: str, path: tuple, n: int) -> None:
        self.entries[key] = Entry(path, (n,), "keep")


def _ecapa_map(m: _Map, config: Token2WavConfig) -> None:
    c = config.dit
    key, path = f"{DIT}input_embed.spk_encoder", ("dit", "spk_encoder")
    ch, ks = c.enc_channels, c.enc_kernel_sizes
    m.conv(f"{key}.blocks.0.conv", (*path, "blocks", 0, "conv"), c.mel_dim, ch[0], ks[0])
    part = ch[0] // c.enc_res2net_scale
    for i in range(1, len(ch) - 1):
        b, p = f"{key}.blocks.{i}", (*path, "blocks", i)
        m.conv(f"{b}.tdnn1.conv", (*p, "tdnn1", "conv"), ch[i - 1], ch[i], 1)
        for j in range(c.enc_res2net_scale - 1):
            m.conv(f"{b}.res2net_block.blocks.{j}.conv",
                   (*p, "res2net_block", "blocks", j, "conv"), part, part, ks[i])
        m.conv(f"{b}.tdnn2.conv", (*p, "tdnn2", "conv"), ch[i], ch[i], 1)
        m.conv(f"{b}.se_block.conv1", (*p, "se_block", "conv1"), ch[i], c.enc_se_channels, 1)
        m.conv(f"{b}.se_block.conv2", (*p, "se_block", "conv2"), c.enc_se_channels, ch[i], 1)
    m.conv(f"{key}.mfa.conv", (*path, "mfa", "conv"), ch[-1], ch[-1], ks[-1])
    m.conv(f"{key}.asp.tdnn.conv", (*path, "asp", "tdnn", "conv"), 3 * ch[-1],
           c.enc_attention_channels, 1)
    m.conv(f"{key}.asp.conv", (*path, "asp", "conv"), c.enc_attention_channels, ch[-1], 1)
    m.conv(f"{key}.fc", (*path, "fc"), 2 * ch[-1], c.enc_dim, 1)


def _dit_map(m: _Map, config: Token2WavConfig) -> None:
    c = config.dit
    e, inner = c.hidden_size, c.num_attention_heads * c.head_dim
    m.linear(f"{DIT}time_embed.time_mlp.0", ("dit", "time_embed", "fc1"), 256, e)
    m.linear(f"{DIT}time_embed.time_mlp.2", ("dit", "time_embed", "fc2"), e, e)
    m.entries[f"{DIT}text_embed.codec_embed.weight"] = Entry(
        ("dit", "codec_embed"), (c.num_embeds + 1, c.emb_dim), "keep")
    m.linear(f"{DIT}input_embed.proj", ("dit", "input_proj"), c.input_width, e)
    _ecapa_map(m, config)
    for i in range(c.num_hidden_layers):
        b, p = f"{DIT}transformer_blocks.{i}", ("dit", "layers", i)
        m.linear(f"{b}.attn_norm.linear", (*p, "attn_norm"), e, 6 * e)
        for name in ("to_q", "to_k", "to_v"):
            m.linear(f"{b}.attn.{name}", (*p, "attn", name), e, inner)
        m.linear(f"{b}.attn.to_out.0", (*p, "attn", "to_out"), inner, e)
        m.linear(f"{b}.ff.ff.0", (*p, "ff", "fc1"), e, c.ff_width)
        m.linear(f"{b}.ff.ff.3", (*p, "ff", "fc2"), c.ff_width, e)
    m.linear(f"{DIT}norm_out.linear", ("dit", "norm_out"), e, 2 * e)
    m.linear(f"{DIT}proj_out", ("dit", "proj_out"), e, c.mel_dim)


def _vocoder_map(m: _Map, config: Token2WavConfig) -> None:
    c = config.bigvgan
    ch0, path = c.upsample_initial_channel, ("bigvgan",)
    m.conv(f"{VOCODER}conv_pre", (*path, "conv_pre"), c.mel_dim, ch0, 7)
    for i, k in enumerate(c.upsample_kernel_sizes):
        m.conv(f"{VOCODER}ups.{i}.0", (*path, "ups", i), ch0 // 2 ** i, ch0 // 2 ** (i + 1), k,
               transpose=True)
    block = 0
    for i in range(len(c.upsample_rates)):
        ch = ch0 // 2 ** (i + 1)
        for k, dilations in zip(c.resblock_kernel_sizes, c.resblock_dilation_sizes, strict=True):
            b, p = f"{VOCODER}resblocks.{block}", (*path, "resblocks", block)
            for j in range(len(dilations)):
                m.conv(f"{b}.convs1.{j}", (*p, "convs1", j), ch, ch, k)
                m.conv(f"{b}.convs2.{j}", (*p, "convs2", j), ch, ch, k)
            for a in range(2 * len(dilations)):
                for name in ("alpha", "beta"):
                    m.vector(f"{b}.activations.{a}.act.{name}", (*p, "activations", a, name), ch)
            block += 1
    last = ch0 // 2 ** len(c.upsample_rates)
    for name in ("alpha", "beta"):
        m.vector(f"{VOCODER}activation_post.act.{name}", (*path, "activation_post", name), last)
    m.conv(f"{VOCODER}conv_post", (*path, "conv_post"), last, 1, 7, bias=False)


def tensor_map(config: Token2WavConfig) -> dict[str, Entry]:
    """Torch key (without the `token2wav.` prefix) -> where and how it goes in `Token2Wav`."""
    m = _Map()
    _dit_map(m, config)
    _vocoder_map(m, config)
    return m.entries


def read_config(directory: str | Path) -> Token2WavConfig:
    """The `Token2WavConfig` of a Qwen2.5-Omni directory (`config.json`)."""
    file = Path(directory) / CONFIG_FILE
    try:
        raw = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise Token2WavConfigError(f"{file}: cannot read the config: {e}") from e
    return Token2WavConfig.from_hf(raw, str(file))


def load_token2wav(directory: str | Path, *, dtype: jnp.dtype = jnp.float32) -> Token2Wav:
    """`Token2Wav` from a Qwen2.5-Omni checkpoint directory (config.json + safetensors)."""
    directory = Path(directory)
    config = read_config(directory)
    entries = tensor_map(config)
    try:
        files = {k[len(PREFIX):]: f for k, f in shard_files(directory).items()
                 if k.startswith(PREFIX)}
    except (CheckpointFileError, SafetensorsError) as e:
        raise Token2WavCheckpointError(str(e)) from e
    where = directory / "model.safetensors.index.json"
    for kind, keys in (("missing", entries.keys() - files.keys()),
                       ("unexpected", files.keys() - entries.keys())):
        if keys:
            more = f" (and {len(keys) - 1} more)" if len(keys) > 1 else ""
            raise Token2WavCheckpointError(
                f"{where if where.exists() else directory}: {kind} tensor "
                f"{PREFIX}{sorted(keys)[0]}{more}; the weights do not match {CONFIG_FILE}")
    model = Token2Wav(config, dtype=dtype)
    handles: dict[Path, SafetensorsFile] = {}
    for key, entry in entries.items():
        file = files[key]
        try:
            handle = handles.setdefault(file, SafetensorsFile(file))
            tensor = handle.get(PREFIX + key)
        except SafetensorsError as e:
            raise Token2WavCheckpointError(str(e)) from e
        if tuple(tensor.shape) != entry.shape:
            raise Token2WavCheckpointError(
                f"{file}: {PREFIX}{key} has shape {tuple(tensor.shape)}, {CONFIG_FILE} implies "
                f"{entry.shape}")
        value = _LAYOUTS[entry.kind][0](np.asarray(tensor, np.float32))
        assign(model, entry.path, np.ascontiguousarray(value))
    return model


def export_state_dict(model: Token2Wav) -> dict[str, np.ndarray]:
    """The published `token2wav.*` tensors (torch layouts, float32) of `model`."""
    out = {}
    for key, entry in tensor_map(model.config).items():
        node = model
        for part in entry.path:
            node = node[part] if isinstance(part, int) else getattr(node, part)
        value = np.asarray(node[...] if isinstance(node, nnx.Variable) else node, np.float32)
        out[PREFIX + key] = np.ascontiguousarray(_LAYOUTS[entry.kind][1](value))
    return out
