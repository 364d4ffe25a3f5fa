"""Qwen2.5-Omni as one model: audio encoder + thinker + talker, and its published layout.

`QwenOmniConfig.from_hf` reads the whole published `config.json`; `load_qwen_omni`
reads the three parts from one checkpoint directory and `export_qwen_omni` writes them
back under the published key names (`thinker.audio_tower.*`, `thinker.model.*`,
`thinker.lm_head.*`, `talker.*`), copying every other tensor (`token2wav.*`, the vision
tower) and every other file of the source directory unchanged.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from paras2s_jax.checkpoint.hf_io import INDEX_FILE, SINGLE_FILE, shard_files
from paras2s_jax.checkpoint.hf_keys import CheckpointKeyError
from paras2s_jax.checkpoint.safetensors_io import SafetensorsFile
from paras2s_jax.model.qwen_omni import config as parts
from paras2s_jax.model.qwen_omni.audio_checkpoint import key_map, load_audio_encoder
from paras2s_jax.model.qwen_omni.audio_encoder import AudioEncoderConfig, Qwen2_5OmniAudioEncoder
from paras2s_jax.model.qwen_omni.checkpoint import (
    Producer,
    host_tensor,
    load_talker,
    load_thinker,
    param_entries,
    read_config,
    write_shards,
)
from paras2s_jax.model.qwen_omni.config import TalkerConfig, ThinkerTextConfig
from paras2s_jax.model.qwen_omni.rope import rope_index
from paras2s_jax.model.qwen_omni.talker import Talker
from paras2s_jax.model.qwen_omni.thinker import Thinker, ThinkerOutput


@dataclasses.dataclass(frozen=True)
class QwenOmniConfig:
    """The three parts' configs; the generation ids live in `thinker` (text bos/eos/pad,
    audio markers) and `talker` (codec and tts text ids, codec stop ids)."""

    thinker: ThinkerTextConfig
    audio: AudioEncoderConfig
    talker: TalkerConfig

    def __post_init__(self) -> None:
        if self.audio.output_dim != self.thinker.hidden_size:
            raise ValueError(f"audio_config.output_dim ({self.audio.output_dim}) must equal the "
                             f"thinker's hidden_size ({self.thinker.hidden_size})")
        if self.talker.embedding_size != self.thinker.hidden_size:
            raise ValueError(f"talker_config.embedding_size ({self.talker.embedding_size}) must "
                             f"equal the thinker's hidden_size ({self.thinker.hidden_size})")

    def _shared(self, field: str) -> jnp.dtype:
        values = {name: getattr(getattr(self, name), field) for name in PARTS}
        if len(set(values.values())) > 1:
            raise ValueError(f"the Qwen2.5-Omni parts' {field}s differ ({values}); the "
                             f"stages take one model-wide {field} (config.model.{field})")
        return jnp.dtype(values["thinker"])

    @property
    def compute_dtype(self) -> jnp.dtype:
        """The compute dtype every part shares (`config.model.dtype` sets all three)."""
        return self._shared("dtype")

    @property
    def storage_dtype(self) -> jnp.dtype:
        """The parameter dtype every part shares (`config.model.param_dtype`)."""
        return self._shared("param_dtype")

    @classmethod
    def from_hf(cls, config: dict[str, Any], **overrides: Any) -> QwenOmniConfig:
        """From the whole `config.json` dict; overrides (param_dtype, dtype) go to all parts."""
        for key in ("thinker_config", "talker_config"):
            if key not in config:
                raise ValueError(f"config.json lacks {key!r}: not a Qwen2.5-Omni config")
        return cls(ThinkerTextConfig.from_hf(config, **overrides),
                   AudioEncoderConfig.from_hf(config, **overrides),
                   TalkerConfig.from_hf(config, **overrides))


PARTS = {"thinker": ThinkerTextConfig, "audio": AudioEncoderConfig, "talker": TalkerConfig}


def with_fields(config: QwenOmniConfig, **fields: Any) -> QwenOmniConfig:
    """`config` with each of `fields` set on every part that has that field (`dtype` and
    `param_dtype`: all three parts; `remat`: the thinker and talker)."""
    unknown = set(fields) - {f.name for cls in PARTS.values() for f in dataclasses.fields(cls)}
    if unknown:
        raise ValueError(f"no Qwen2.5-Omni config part has the field(s) {sorted(unknown)}")

    def part(name: str) -> Any:
        current = getattr(config, name)
        own = {f.name for f in dataclasses.fields(current)}
        return dataclasses.replace(current, **{k: v for k, v in fields.items() if k in own})

    return QwenOmniConfig(**{name: part(name) for name in PARTS})


def config_to_json(config: QwenOmniConfig) -> dict[str, Any]:
    """A JSON-able dict of the three parts' configs (inverse: `config_from_json`)."""
    return dataclasses.asdict(config)


def config_from_json(data: dict[str, Any], **fields: Any) -> QwenOmniConfig:
    """Rebuild a `QwenOmniConfig` from `config_to_json` output, then `with_fields(fields)`."""
    def part(name: str, cls: type) -> Any:
        if name not in data:
            raise ValueError(f"stored Qwen2.5-Omni config lacks its {name!r} part")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data[name].items()})

    return with_fields(QwenOmniConfig(**{n: part(n, cls) for n, cls in PARTS.items()}), **fields)


def _compose(thinker: ThinkerTextConfig, talker: TalkerConfig,
             audio: AudioEncoderConfig) -> QwenOmniConfig:
    return QwenOmniConfig(thinker, audio, talker)


def qwen25_omni_7b(param_dtype: str = "bfloat16", dtype: str = "bfloat16") -> QwenOmniConfig:
    """Qwen2.5-Omni-7B (sources: `config.py` and `audio_encoder.py`)."""
    thinker, talker = parts.qwen25_omni_7b(param_dtype, dtype)
    audio = AudioEncoderConfig.qwen2_5_omni_7b(param_dtype=param_dtype, dtype=dtype)
    return _compose(thinker, talker, audio)


def qwen25_omni_3b(param_dtype: str = "bfloat16", dtype: str = "bfloat16") -> QwenOmniConfig:
    """Qwen2.5-Omni-3B (its talker sizes are unverified: prefer `from_hf`)."""
    thinker, talker = parts.qwen25_omni_3b(param_dtype, dtype)
    audio = AudioEncoderConfig.qwen2_5_omni_3b(param_dtype=param_dtype, dtype=dtype)
    return _compose(thinker, talker, audio)


def tiny() -> QwenOmniConfig:
    """float32 test sizes: `config.tiny()` parts and a 128-bin audio encoder of width 32."""
    thinker, talker = parts.tiny()
    return _compose(thinker, talker, AudioEncoderConfig.tiny(output_dim=thinker.hidden_size))


def toy() -> QwenOmniConfig:
    """The toy world's model (`config.toy()` parts): a 2-layer audio encoder of width 64
    over 32 mel bins (the toy renderer's patterns need no more) in chunks of 64 frames,
    so a whole toy prompt (at most 12 codes, 48 frames) is one chunk."""
    thinker, talker = parts.toy()
    audio = AudioEncoderConfig.tiny(num_mel_bins=32, d_model=64, encoder_ffn_dim=128,
                                    n_window=32, output_dim=thinker.hidden_size)
    return _compose(thinker, talker, audio)


def place_audio(tokens: jax.Array, counts: jax.Array, is_audio: jax.Array) -> jax.Array:
    """Audio rows [B, S, D] for the placeholders of bool[B, S] (row-major order) from the
    clips' tokens [A, P, D] with counts int[A] (clip a's tokens are tokens[a, :counts[a]]).
    Jittable: entries off the placeholders are arbitrary rows of `tokens`."""
    rank = jnp.cumsum(is_audio.reshape(-1)).reshape(is_audio.shape) - 1  # [B, S]
    ends = jnp.cumsum(counts)
    clip = jnp.clip(jnp.searchsorted(ends, rank, side="right"), 0, tokens.shape[0] - 1)
    offset = jnp.clip(rank - (ends[clip] - counts[clip]), 0, tokens.shape[1] - 1)
    return tokens[clip, offset]


class QwenOmni(nnx.Module):
    """`audio_encoder`, `thinker` and `talker` of Qwen2.5-Omni."""

    def __init__(self, config: QwenOmniConfig, *, rngs: nnx.Rngs):
        self.config = config
        self.audio_encoder = Qwen2_5OmniAudioEncoder(config.audio, rngs=rngs)
        self.thinker = Thinker(config.thinker, rngs=rngs)
        self.talker = Talker(config.talker, rngs=rngs)

    def prompt_embeds(self, input_ids: jax.Array, mel: jax.Array | None = None,
                      mel_mask: jax.Array | None = None,
                      audio_slots: jax.Array | None = None) -> jax.Array:
        """Thinker input embeddings [B, S, E]: token embeddings of ids int[B, S], with the
        encoded clips placed at the audio placeholders (clips in order of appearance,
        row by row). mel: float[A, M, T] log-mel; mel_mask: int/bool[A, T] (a prefix);
        audio_slots: bool[B, S], where the clips go (default: every placeholder id; a
        sampled reply may hold that id as a plain token)."""
        embeds = self.thinker.embed(input_ids)
        if mel is None:
            return embeds
        lengths = jnp.asarray(mel_mask).astype(jnp.int32).sum(axis=1)
        tokens, counts = self.audio_encoder(jnp.asarray(mel), lengths)
        is_audio = (input_ids == self.config.thinker.audio_token_index
                    if audio_slots is None else jnp.asarray(audio_slots, bool))
        placed = place_audio(tokens, counts, is_audio).astype(embeds.dtype)
        return jnp.where(is_audio[..., None], placed, embeds)

    def thinker_forward(
        self, input_ids: jax.Array, attention_mask: jax.Array, mel: jax.Array | None = None,
        mel_mask: jax.Array | None = None, audio_slots: jax.Array | None = None,
        **kwargs: Any,
    ) -> ThinkerOutput:
        """The thinker over a text + audio prompt: audio encoder -> placement -> decoder
        with the prompt's TMRoPE positions (`rope_index`). input_ids: int[B, S];
        attention_mask: bool[B, S]; audio_slots: see `prompt_embeds`; kwargs:
        `Thinker.__call__`'s cache / last_only / logits_from.
        The placeholder runs must match the clips' token counts (`rope.check_audio_spans`)."""
        embeds = self.prompt_embeds(input_ids, mel, mel_mask, audio_slots)
        positions = rope_index(jnp.asarray(attention_mask, bool))[0]
        return self.thinker(input_ids, attention_mask=attention_mask, positions=positions,
                            inputs_embeds=embeds, **kwargs)


_FIRST_KEYS = {"audio": "thinker.audio_tower.conv1.weight",
               "thinker": "thinker.model.embed_tokens.weight",
               "talker": "talker.model.embed_tokens.weight"}


def stored_dtypes(directory: str | Path) -> dict[str, str]:
    """Part name (audio, thinker, talker) -> the dtype its tensors are stored in, read
    from one tensor of each part."""
    files = shard_files(directory)
    out = {}
    for part, key in _FIRST_KEYS.items():
        if key not in files:
            raise CheckpointKeyError(f"{directory}: missing tensor {key}")
        out[part] = str(SafetensorsFile(files[key]).dtype(key))
    return out


def load_qwen_omni(directory: str | Path, mesh: Mesh | None = None,
                   dtype: str | None = None, param_dtype: str | None = None,
                   remat: bool = False) -> QwenOmni:
    """All three parts of a published checkpoint directory (one tensor at a time).

    dtype: compute dtype of every part (default float32); param_dtype: storage dtype
    (default: each part's dtype in the checkpoint, so an export writes it back as is);
    remat: the thinker's and talker's layers recompute in the backward pass.
    Missing or misshapen tensors raise errors naming file and key.
    """
    stored = stored_dtypes(directory)

    def overrides(part: str) -> dict[str, str]:
        return {"param_dtype": param_dtype or stored[part], **({"dtype": dtype} if dtype else {})}

    audio = load_audio_encoder(directory, mesh=mesh, **overrides("audio"))
    thinker = load_thinker(directory, mesh, remat=remat, **overrides("thinker"))
    talker = load_talker(directory, mesh, remat=remat, **overrides("talker"))
    config = QwenOmniConfig(thinker.config, audio.config, talker.config)
    model = nnx.eval_shape(lambda: QwenOmni(config, rngs=nnx.Rngs(0)))
    model.audio_encoder, model.thinker, model.talker = audio, thinker, talker
    return model


def model_tensors(model: QwenOmni) -> dict[str, Producer]:
    """Checkpoint key -> (shape, dtype, host tensor in checkpoint layout) of our params."""
    out: dict[str, Producer] = {}
    for key, spec, variable in param_entries(model.thinker, model.talker):
        out[key] = (spec.hf_shape, np.dtype(variable.dtype),
                    lambda s=spec, v=variable: host_tensor(s, v))
    params = dict(nnx.to_flat_state(nnx.state(model.audio_encoder, nnx.Param)))
    for key, tensor in key_map(model.config.audio).items():
        variable = params[tensor.path]
        out[key] = (tensor.torch_shape, np.dtype(variable.dtype),
                    lambda t=tensor, v=variable: t.to_torch(np.asarray(jax.device_get(v[...]))))
    return out


def other_tensors(model: QwenOmni, source_dir: str | Path) -> dict[str, Producer]:
    """The tensors of a checkpoint directory that `model` does not hold (token2wav,
    vision tower), read lazily as stored."""
    ours = set(model_tensors(model))
    handles: dict[Path, SafetensorsFile] = {}
    out: dict[str, Producer] = {}
    for key, path in shard_files(source_dir).items():
        if key not in ours:
            handle = handles.setdefault(path, SafetensorsFile(path))
            out[key] = (handle.shape(key), handle.dtype(key),
                        lambda h=handle, k=key: np.asarray(h.get(k)))
    return out


def export_qwen_omni(model: QwenOmni, out_dir: str | Path, source_dir: str | Path,
                     max_shard_bytes: int = 5 * 1024**3) -> dict[str, str]:
    """Write `model` in the published layout at `out_dir`: our tensors in the parameter
    dtype, the source checkpoint's other tensors (token2wav, vision) as stored, sharded
    at most `max_shard_bytes` with an index, and every non-weight file of `source_dir`
    (config.json, tokenizer, spk_dict.pt, ...) copied unchanged. Returns the weight map."""
    out_dir, source_dir = Path(out_dir), Path(source_dir)
    read_config(source_dir)  # a Qwen2.5-Omni directory with a readable config.json
    files = shard_files(source_dir)
    tensors = {**model_tensors(model), **other_tensors(model, source_dir)}
    weight_map = write_shards(out_dir, tensors, max_shard_bytes)
    weights = {p.name for p in files.values()} | {INDEX_FILE, SINGLE_FILE}
    for entry in sorted(source_dir.iterdir()):
        if entry.name in weights:
            continue
        if entry.is_dir():
            shutil.copytree(entry, out_dir / entry.name, dirs_exist_ok=True)
        else:
            shutil.copy2(entry, out_dir / entry.name)
    return weight_map
