"""Configurations of the Qwen2.5-Omni thinker language model and talker.

`from_hf` reads the published `config.json` (the whole file, or its `thinker_config` /
`talker_config` part). Both the older rotary layout (`rope_theta` plus
`rope_scaling.mrope_section`) and the newer one (`rope_parameters`) are accepted.

Sources of the preset numbers:
- thinker 7B: transformers' `Qwen2_5OmniTextConfig` defaults (hidden 3584, 28 layers,
  28 heads, 4 kv heads, MLP 18944, vocab 152064, theta 1e6, sections [16, 24, 24]) and
  `Qwen2_5OmniThinkerConfig` defaults for the special ids (audio 151646, audio start
  151647, audio end 151648, 25 positions per second, 2 s chunks); bos/eos/pad are the
  Qwen2 tokenizer's <|im_start|> 151644, <|im_end|> 151645 and <|endoftext|> 151643
  (`from_hf` reads them from `thinker_config` when it names them);
- talker 7B: the published Qwen/Qwen2.5-Omni-7B `talker_config` (hidden 896, 24 layers,
  12 heads, 4 kv heads, head_dim 128, MLP 18944, embedding 3584, codec vocab 8448) and
  transformers' `Qwen2_5OmniTalkerConfig` defaults for the codec/text ids;
- 3B: the Qwen2.5-3B language model the 3B thinker is built on (hidden 2048, 36 layers,
  16 heads, 2 kv heads, MLP 11008, vocab 151936, tied embeddings); its talker sizes
  (hidden 896, 24 layers, 14 heads, 2 kv heads, head_dim 64, MLP 4864) are from memory of
  the published config and unverified here: load the real `config.json` with `from_hf`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from paras2s_jax.model.config import Numerics

_DTYPES = ("float32", "bfloat16", "float16")


def _section(cfg: dict[str, Any], owner: str) -> tuple[float, tuple[int, ...]]:
    """(rope_theta, mrope_section) from either rotary layout of a HF sub-config."""
    params = cfg.get("rope_parameters") or {}
    scaling = cfg.get("rope_scaling") or {}
    theta = params.get("rope_theta", cfg.get("rope_theta", 1_000_000.0))
    section = params.get("mrope_section", scaling.get("mrope_section", (16, 24, 24)))
    kind = params.get("rope_type", scaling.get("rope_type", scaling.get("type", "default")))
    if kind not in ("default", "mrope"):
        raise ValueError(f"{owner}.rope_type: only the default multimodal rotary is "
                         f"supported, got {kind!r}")
    return float(theta), tuple(int(s) for s in section)


def _require(cfg: dict[str, Any], key: str, owner: str) -> Any:
    if key not in cfg:
        raise ValueError(f"{owner}: config.json lacks the field {key!r}")
    return cfg[key]


def _check_common(c: Any, name: str) -> None:
    for field in ("vocab_size", "hidden_size", "intermediate_size", "num_layers",
                  "num_heads", "num_kv_heads", "head_dim"):
        if getattr(c, field) <= 0:
            raise ValueError(f"{name}.{field} must be positive, got {getattr(c, field)}")
    if c.num_heads % c.num_kv_heads:
        raise ValueError(f"{name}.num_heads ({c.num_heads}) must be a multiple of "
                         f"num_kv_heads ({c.num_kv_heads})")
    if len(c.mrope_section) != 3 or 2 * sum(c.mrope_section) != c.head_dim:
        raise ValueError(f"{name}.mrope_section {c.mrope_section} must be 3 sections "
                         f"summing to head_dim / 2 = {c.head_dim // 2}")
    if c.rms_norm_eps <= 0 or c.rope_theta <= 0:
        raise ValueError(f"{name}.rms_norm_eps and rope_theta must be positive")
    for field in ("param_dtype", "dtype"):
        if getattr(c, field) not in _DTYPES:
            raise ValueError(f"{name}.{field} must be one of {_DTYPES}, got {getattr(c, field)!r}")


def _decoder_fields(section: dict[str, Any], owner: str) -> dict[str, Any]:
    """The Qwen2 decoder sizes and rotary settings of a config.json section."""
    theta, mrope = _section(section, owner)
    heads = int(_require(section, "num_attention_heads", owner))
    hidden = int(_require(section, "hidden_size", owner))
    return dict(
        vocab_size=int(_require(section, "vocab_size", owner)),
        hidden_size=hidden,
        intermediate_size=int(_require(section, "intermediate_size", owner)),
        num_layers=int(_require(section, "num_hidden_layers", owner)),
        num_heads=heads,
        num_kv_heads=int(section.get("num_key_value_heads") or heads),
        head_dim=int(section.get("head_dim") or hidden // heads),
        rms_norm_eps=float(section.get("rms_norm_eps", 1e-6)),
        rope_theta=theta,
        mrope_section=mrope,
    )


@dataclasses.dataclass(frozen=True)
class ThinkerTextConfig(Numerics):
    """The thinker's Qwen2 language model with its multimodal rotary and special ids."""

    vocab_size: int = 152064
    hidden_size: int = 3584
    intermediate_size: int = 18944
    num_layers: int = 28
    num_heads: int = 28
    num_kv_heads: int = 4
    head_dim: int = 128
    rms_norm_eps: float = 1e-6
    rope_theta: float = 1_000_000.0
    mrope_section: tuple[int, ...] = (16, 24, 24)
    tie_word_embeddings: bool = False
    audio_token_index: int = 151646
    audio_start_token_id: int = 151647
    audio_end_token_id: int = 151648
    bos_token_id: int = 151644  # <|im_start|>
    eos_token_id: int = 151645  # <|im_end|>
    pad_token_id: int = 151643  # <|endoftext|>
    position_id_per_seconds: int = 25
    seconds_per_chunk: int = 2
    param_dtype: str = "float32"  # storage dtype of the parameters
    dtype: str = "float32"  # compute dtype
    remat: bool = False  # recompute each layer in the backward pass (memory)

    def __post_init__(self) -> None:
        _check_common(self, "ThinkerTextConfig")
        for field in ("audio_token_index", "audio_start_token_id", "audio_end_token_id"):
            if not 0 <= getattr(self, field) < self.vocab_size:
                raise ValueError(f"ThinkerTextConfig.{field} ({getattr(self, field)}) is "
                                 f"outside the vocabulary (size {self.vocab_size})")
        if self.position_id_per_seconds <= 0 or self.seconds_per_chunk <= 0:
            raise ValueError("ThinkerTextConfig.position_id_per_seconds and seconds_per_chunk "
                             "must be positive")

    @classmethod
    def from_hf(cls, config: dict[str, Any], **overrides: Any) -> ThinkerTextConfig:
        """From a `config.json` dict (whole file or its `thinker_config`)."""
        thinker = config.get("thinker_config", config)
        text = _require(thinker, "text_config", "thinker_config")
        owner = "thinker_config.text_config"

        def special(key: str, default: int) -> int:
            value = thinker.get(key, text.get(key))
            value = value[0] if isinstance(value, list) else value
            return default if value is None else int(value)

        fields = dict(
            **_decoder_fields(text, owner),
            tie_word_embeddings=bool(text.get("tie_word_embeddings",
                                              thinker.get("tie_word_embeddings", False))),
            audio_token_index=special("audio_token_index", cls.audio_token_index),
            audio_start_token_id=special("audio_start_token_id", cls.audio_start_token_id),
            audio_end_token_id=special("audio_end_token_id", cls.audio_end_token_id),
            bos_token_id=special("bos_token_id", cls.bos_token_id),
            eos_token_id=special("eos_token_id", cls.eos_token_id),
            pad_token_id=special("pad_token_id", cls.pad_token_id),
            position_id_per_seconds=int(thinker.get("position_id_per_seconds", 25)),
            seconds_per_chunk=int(thinker.get("seconds_per_chunk", 2)),
        )
        return cls(**{**fields, **overrides})


@dataclasses.dataclass(frozen=True)
class TalkerConfig(Numerics):
    """The talker: a Qwen2 decoder over codec tokens fed by thinker states."""

    vocab_size: int = 8448  # codec vocabulary
    embedding_size: int = 3584  # the thinker's hidden size (codec embeddings live there)
    hidden_size: int = 896
    intermediate_size: int = 18944
    num_layers: int = 24
    num_heads: int = 12
    num_kv_heads: int = 4
    head_dim: int = 128
    rms_norm_eps: float = 1e-6
    rope_theta: float = 1_000_000.0
    mrope_section: tuple[int, ...] = (16, 24, 24)
    codec_start_token_id: int = 8293  # tts_codec_start_token_id (codec BOS)
    codec_end_token_id: int = 8294
    codec_pad_token_id: int = 8292
    codec_mask_token_id: int = 8296
    text_start_token_id: int = 151860  # tts_text_*: thinker-vocabulary ids
    text_end_token_id: int = 151861
    text_pad_token_id: int = 151859
    talker_eos_token_id: tuple[int, ...] = (8292, 8294)  # generation stops on these
    param_dtype: str = "float32"
    dtype: str = "float32"
    remat: bool = False  # recompute each layer in the backward pass (memory)

    def __post_init__(self) -> None:
        _check_common(self, "TalkerConfig")
        if self.embedding_size <= 0:
            raise ValueError(f"TalkerConfig.embedding_size must be positive, "
                             f"got {self.embedding_size}")
        for field in ("codec_start_token_id", "codec_end_token_id", "codec_pad_token_id",
                      "codec_mask_token_id"):
            if not 0 <= getattr(self, field) < self.vocab_size:
                raise ValueError(f"TalkerConfig.{field} ({getattr(self, field)}) is outside "
                                 f"the codec vocabulary (size {self.vocab_size})")
        bad = [t for t in self.talker_eos_token_id if not 0 <= t < self.vocab_size]
        if not self.talker_eos_token_id or bad:
            raise ValueError(f"TalkerConfig.talker_eos_token_id must be non-empty codec ids, "
                             f"got {self.talker_eos_token_id}")

    @classmethod
    def from_hf(cls, config: dict[str, Any], **overrides: Any) -> TalkerConfig:
        """From a `config.json` dict (whole file or its `talker_config`)."""
        talker = config.get("talker_config", config)
        owner = "talker_config"
        fields = dict(**_decoder_fields(talker, owner),
                      embedding_size=int(_require(talker, "embedding_size", owner)))
        ids = dict(codec_start_token_id="tts_codec_start_token_id",
                   codec_end_token_id="tts_codec_end_token_id",
                   codec_pad_token_id="tts_codec_pad_token_id",
                   codec_mask_token_id="tts_codec_mask_token_id",
                   text_start_token_id="tts_text_start_token_id",
                   text_end_token_id="tts_text_end_token_id",
                   text_pad_token_id="tts_text_pad_token_id")
        fields.update({ours: int(talker[hf]) for ours, hf in ids.items() if hf in talker})
        # Not a config.json field: transformers' generate stops the talker on
        # [8292, 8294], the published codec pad and end ids; those of this config.
        eos = talker.get("talker_eos_token_id") or (
            fields.get("codec_pad_token_id", cls.codec_pad_token_id),
            fields.get("codec_end_token_id", cls.codec_end_token_id))
        fields["talker_eos_token_id"] = tuple(int(t) for t in eos)
        return cls(**{**fields, **overrides})


def qwen25_omni_7b(param_dtype: str = "bfloat16",
                   dtype: str = "bfloat16") -> tuple[ThinkerTextConfig, TalkerConfig]:
    """Qwen2.5-Omni-7B: the thinker language model and the talker."""
    dt = dict(param_dtype=param_dtype, dtype=dtype)
    return ThinkerTextConfig(**dt), TalkerConfig(**dt)


def qwen25_omni_3b(param_dtype: str = "bfloat16",
                   dtype: str = "bfloat16") -> tuple[ThinkerTextConfig, TalkerConfig]:
    """Qwen2.5-Omni-3B (sizes and sources: see the module docstring)."""
    dt = dict(param_dtype=param_dtype, dtype=dtype)
    thinker = ThinkerTextConfig(
        vocab_size=151936, hidden_size=2048, intermediate_size=11008, num_layers=36,
        num_heads=16, num_kv_heads=2, head_dim=128, tie_word_embeddings=True, **dt)
    talker = TalkerConfig(
        embedding_size=2048, hidden_size=896, intermediate_size=4864, num_layers=24,
        num_heads=14, num_kv_heads=2, head_dim=64, mrope_section=(8, 12, 12), **dt)
    return thinker, talker


def tiny() -> tuple[ThinkerTextConfig, TalkerConfig]:
    """A few-thousand-parameter float32 pair for tests; ids sit inside the tiny vocabularies."""
    thinker = ThinkerTextConfig(
        vocab_size=128, hidden_size=32, intermediate_size=48, num_layers=2, num_heads=4,
        num_kv_heads=2, head_dim=8, rope_theta=10_000.0, mrope_section=(1, 1, 2),
        audio_token_index=120, audio_start_token_id=123, audio_end_token_id=124,
        bos_token_id=100, eos_token_id=101, pad_token_id=102)
    talker = TalkerConfig(
        vocab_size=64, embedding_size=32, hidden_size=24, intermediate_size=40, num_layers=2,
        num_heads=2, num_kv_heads=1, head_dim=16, rope_theta=10_000.0, mrope_section=(2, 3, 3),
        codec_start_token_id=60, codec_end_token_id=61, codec_pad_token_id=62,
        codec_mask_token_id=63, text_start_token_id=110, text_end_token_id=111,
        text_pad_token_id=112, talker_eos_token_id=(62, 61))
    return thinker, talker


def toy() -> tuple[ThinkerTextConfig, TalkerConfig]:
    """The toy world's pair (`configs/*.py:toy_omni`), sized like Kimi-Audio's `tiny`:
    a 4-layer thinker of width 64 over 1024 text ids (the toy words at the bottom, the
    reward model's digits and suffix at 595-600, the specials at the top) and a 2-layer
    talker of width 64 (Kimi's 2 audio-branch layers) over the 256 toy speech codes plus
    its four codec specials."""
    thinker = ThinkerTextConfig(
        vocab_size=1024, hidden_size=64, intermediate_size=128, num_layers=4, num_heads=4,
        num_kv_heads=2, head_dim=16, rope_theta=10_000.0, mrope_section=(2, 3, 3),
        audio_token_index=1010, audio_start_token_id=1011, audio_end_token_id=1012,
        bos_token_id=1000, eos_token_id=1001, pad_token_id=1002)
    talker = TalkerConfig(
        vocab_size=260, embedding_size=64, hidden_size=64, intermediate_size=128,
        num_layers=2, num_heads=4, num_kv_heads=2, head_dim=16, rope_theta=10_000.0,
        mrope_section=(2, 3, 3), codec_start_token_id=256, codec_end_token_id=257,
        codec_pad_token_id=258, codec_mask_token_id=259, text_start_token_id=1020,
        text_end_token_id=1021, text_pad_token_id=1022, talker_eos_token_id=(258, 257))
    return thinker, talker
