"""`KimiAudioConfig`: the frozen description of a Kimi-Audio model.

The 7B numbers are the published `config.json` values of Kimi-Audio-7B(-Instruct)
(Qwen2.5-7B trunk with 28 layers, a 6-layer audio "MIMO" branch that leaves the trunk
after layer index 21, and two full-vocabulary heads). `tiny()` keeps every structural
feature at a size that runs on a laptop CPU.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import jax.numpy as jnp


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field."""


NUM_SPECIAL_TOKENS = 421  # 293 + 128 reserved slots after the base BPE ranks
NUM_AUDIO_SPECIAL_TOKENS = 512  # audio-side slots the published config counts
# Offset of each `SpecialTokens` field from the first special id ([BOS] = num_base_tokens),
# as `tokenization_kimia.py` lays them out.
SPECIAL_TOKEN_OFFSETS = {
    "msg_end": 2, "media_begin": 18, "media_end": 20, "text_blank": 23, "text_eos": 24,
    "user_msg_start": 27, "assistant_msg_start": 28, "speech_ct": 32, "speech_ctd": 33,
    "pad": NUM_SPECIAL_TOKENS - 1,
}


@dataclasses.dataclass(frozen=True)
class SpecialTokens:
    """Ids of the dual-stream layout's special tokens (see `tokenization_kimia.py`)."""

    msg_end: int = 151645
    media_begin: int = 151661
    media_end: int = 151663
    text_blank: int = 151666
    text_eos: int = 151667
    user_msg_start: int = 151670
    assistant_msg_start: int = 151671
    speech_ct: int = 151675  # after user audio: reply in text only
    speech_ctd: int = 151676  # after user audio: reply in text and audio
    pad: int = 152063

    @classmethod
    def at_base(cls, num_base_tokens: int) -> SpecialTokens:
        """The layout whose specials follow `num_base_tokens` BPE ranks."""
        return cls(**{k: num_base_tokens + o for k, o in SPECIAL_TOKEN_OFFSETS.items()})

    @property
    def num_base_tokens(self) -> int:
        """The first special id ([BOS]), i.e. the number of BPE ranks before it."""
        return self.pad - SPECIAL_TOKEN_OFFSETS["pad"]


class Numerics:
    """Dtype helpers for frozen config dataclasses with `dtype` / `param_dtype` fields."""

    dtype: str
    param_dtype: str

    @property
    def compute_dtype(self) -> jnp.dtype:
        return jnp.dtype(self.dtype)

    @property
    def storage_dtype(self) -> jnp.dtype:
        return jnp.dtype(self.param_dtype)

    def replace(self, **changes: Any):
        """A copy with `changes` applied (and validated)."""
        return dataclasses.replace(self, **changes)


@dataclasses.dataclass(frozen=True)
class KimiAudioConfig(Numerics):
    """Sizes and numerics of a Kimi-Audio model. Validated on construction."""

    vocab_size: int = 168448  # one table for text (first 152064 ids) and audio tokens
    hidden_size: int = 3584
    intermediate_size: int = 18944  # SwiGLU width
    num_layers: int = 28  # shared trunk
    num_heads: int = 28
    num_kv_heads: int = 4  # grouped-query attention
    mimo_layers: int = 6  # audio branch depth; 0 disables the branch and the audio head
    mimo_from_layer: int = 21  # the branch reads the residual stream after this trunk layer
    adaptor_input_dim: int = 5120  # 4 stacked Whisper-large-v3 frames (4 x 1280)
    use_whisper_feature: bool = True  # build the continuous-feature adaptor
    rms_norm_eps: float = 1e-6
    rope_theta: float = 1_000_000.0  # Qwen2.5 value; the converter reads the checkpoint's own
    max_position_embeddings: int = 8192
    text_vocab_size: int = 152064  # ids below are text tokens
    audio_token_offset: int = 152064  # audio id = semantic code + offset
    audio_codebook_size: int = 16384
    audio_delay: int = 6  # text leads audio by this many steps when sampling
    special: SpecialTokens = dataclasses.field(default_factory=SpecialTokens)
    dtype: str = "float32"  # compute dtype: "float32" or "bfloat16"
    param_dtype: str = "float32"  # storage dtype of parameters
    remat: bool = False  # recompute each layer in the backward (else keep its matmul outputs)
    attention: str = "auto"  # "auto" (cuDNN flash on GPU in bf16, else XLA), "xla", "cudnn"
    scan_layers: bool = True  # one lax.scan per layer stack (calls over > 1 position)
    head_chunk: int = 512  # positions per chunk of the chunked heads (losses, log-probs)

    def __post_init__(self) -> None:
        positive = (
            "vocab_size", "hidden_size", "intermediate_size", "num_layers", "num_heads",
            "num_kv_heads", "adaptor_input_dim", "max_position_embeddings", "head_chunk",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"KimiAudioConfig.{name} must be > 0, got {getattr(self, name)}")
        if self.hidden_size % self.num_heads:
            raise ConfigError(
                f"KimiAudioConfig.num_heads={self.num_heads} must divide "
                f"hidden_size={self.hidden_size}"
            )
        if self.num_heads % self.num_kv_heads:
            raise ConfigError(
                f"KimiAudioConfig.num_kv_heads={self.num_kv_heads} must divide "
                f"num_heads={self.num_heads}"
            )
        if self.head_dim % 2:
            raise ConfigError(f"KimiAudioConfig: head_dim={self.head_dim} must be even for RoPE")
        if self.mimo_layers < 0:
            raise ConfigError(f"KimiAudioConfig.mimo_layers must be >= 0, got {self.mimo_layers}")
        if self.mimo_layers and not 0 <= self.mimo_from_layer < self.num_layers:
            raise ConfigError(
                f"KimiAudioConfig.mimo_from_layer={self.mimo_from_layer} must be in "
                f"[0, num_layers={self.num_layers})"
            )
        if self.text_vocab_size > self.vocab_size:
            raise ConfigError("KimiAudioConfig.text_vocab_size must be <= vocab_size")
        if self.audio_token_offset + self.audio_codebook_size > self.vocab_size:
            raise ConfigError(
                "KimiAudioConfig: audio_token_offset + audio_codebook_size exceeds vocab_size"
            )
        for field in ("dtype", "param_dtype"):
            if getattr(self, field) not in ("float32", "bfloat16"):
                raise ConfigError(
                    f"KimiAudioConfig.{field} must be 'float32' or 'bfloat16', "
                    f"got {getattr(self, field)!r}"
                )
        if self.attention not in ("auto", "xla", "cudnn"):
            raise ConfigError(f"KimiAudioConfig.attention must be 'auto', 'xla' or 'cudnn', "
                              f"got {self.attention!r}")
        for name, value in dataclasses.asdict(self.special).items():
            if not 0 <= value < self.text_vocab_size:
                raise ConfigError(
                    f"KimiAudioConfig.special.{name}={value} is outside the text vocabulary "
                    f"[0, {self.text_vocab_size})"
                )

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @classmethod
    def from_hf_config(cls, path: str | os.PathLike, **overrides: Any) -> KimiAudioConfig:
        """Read a Kimi-Audio (`moonshot_kimia`) or Qwen2 `config.json`."""
        try:
            with open(path) as f:
                raw = json.load(f)
        except (OSError, json.JSONDecodeError) as err:
            raise ConfigError(f"cannot read model config {path}: {err}") from err
        required = (
            "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
            "num_attention_heads", "num_key_value_heads",
        )
        missing = [k for k in required if k not in raw]
        if missing:
            raise ConfigError(f"{path}: missing field(s) {', '.join(missing)}")
        is_kimia = raw.get("model_type") == "moonshot_kimia"
        defaults = cls()
        fields: dict[str, Any] = dict(
            vocab_size=raw["vocab_size"],
            hidden_size=raw["hidden_size"],
            intermediate_size=raw["intermediate_size"],
            num_layers=raw["num_hidden_layers"],
            num_heads=raw["num_attention_heads"],
            num_kv_heads=raw["num_key_value_heads"],
            rms_norm_eps=raw.get("rms_norm_eps", defaults.rms_norm_eps),
            # Checkpoints written without rope_theta use the Qwen2 config-class default.
            rope_theta=float(raw.get("rope_theta", 10000.0)),
            max_position_embeddings=raw.get("max_position_embeddings", 8192),
            # Parameters keep the checkpoint's storage dtype unless overridden.
            param_dtype="bfloat16" if raw.get("torch_dtype") == "bfloat16" else "float32",
        )
        if is_kimia:
            fields.update(
                mimo_layers=raw.get("kimia_mimo_layers", defaults.mimo_layers),
                mimo_from_layer=raw.get(
                    "kimia_mimo_transformer_from_layer_index", defaults.mimo_from_layer
                ),
                adaptor_input_dim=raw.get("kimia_adaptor_input_dim", defaults.adaptor_input_dim),
                use_whisper_feature=raw.get("use_whisper_feature", True),
                text_vocab_size=raw.get("kimia_text_output_vocab", defaults.text_vocab_size),
                audio_token_offset=raw.get("kimia_token_offset", defaults.audio_token_offset),
                audio_delay=raw.get("kimia_mimo_audiodelaytokens", defaults.audio_delay),
            )
            fields["audio_codebook_size"] = fields["vocab_size"] - fields["audio_token_offset"]
            text_vocab = fields["text_vocab_size"]
        else:  # a plain Qwen2 model: the trunk alone
            fields.update(
                mimo_layers=0, use_whisper_feature=False, text_vocab_size=raw["vocab_size"],
                audio_token_offset=0, audio_codebook_size=0,
            )
            text_vocab = raw["vocab_size"]
        fields["special"] = special_tokens_from_hf(raw, text_vocab, str(path))
        fields.update(overrides)
        return cls(**fields)

    def to_hf_config(self, original: dict[str, Any] | None = None) -> dict[str, Any]:
        """The `config.json` dictionary of a Kimi-Audio checkpoint with these sizes.

        original: the `config.json` this model was read from; every field of it is kept
        (e.g. `auto_map`, `kimia_audio_output_vocab`), the ones this config describes
        updated. Without it, the fields the published checkpoint carries are filled in.
        """
        described = {
            "architectures": ["MoonshotKimiaForCausalLM"],
            "model_type": "moonshot_kimia",
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "hidden_act": "silu",
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": False,
            "torch_dtype": self.param_dtype,
            "kimia_mimo_layers": self.mimo_layers,
            "kimia_mimo_transformer_from_layer_index": self.mimo_from_layer,
            "kimia_adaptor_input_dim": self.adaptor_input_dim,
            "use_whisper_feature": self.use_whisper_feature,
            "kimia_text_output_vocab": self.text_vocab_size,
            "kimia_token_offset": self.audio_token_offset,
            "kimia_mimo_audiodelaytokens": self.audio_delay,
            "num_base_tokens": self.special.num_base_tokens,
            "kimia_media_begin": self.special.media_begin,
            "kimia_media_end": self.special.media_end,
        }
        if original is None:
            original = {
                # The published checkpoint loads through its own modeling code.
                "auto_map": {
                    "AutoConfig": "configuration_moonshot_kimia.KimiAudioConfig",
                    "AutoModel": "modeling_moonshot_kimia.MoonshotKimiaForCausalLM",
                    "AutoModelForCausalLM": "modeling_moonshot_kimia.MoonshotKimiaForCausalLM",
                },
                # Codebook plus audio special slots (16384 + 512 in the published config).
                "kimia_audio_output_vocab": self.audio_codebook_size + NUM_AUDIO_SPECIAL_TOKENS,
                "num_audio_special_tokens": NUM_AUDIO_SPECIAL_TOKENS,
            }
        return {**original, **described}


def special_tokens_from_hf(raw: dict[str, Any], text_vocab_size: int, source: str) -> SpecialTokens:
    """Special-token ids of a `config.json`: its own where it has them.

    `num_base_tokens` places the whole layout; `kimia_media_begin` / `kimia_media_end`
    (what the PyTorch model reads to place Whisper features) take precedence for those
    two. A config with neither keeps Kimi's layout at the top of the text vocabulary.
    """
    if "num_base_tokens" in raw:
        base = raw["num_base_tokens"]
        if not isinstance(base, int) or base < 0 or base + NUM_SPECIAL_TOKENS > text_vocab_size:
            raise ConfigError(
                f"{source}: num_base_tokens={base!r} leaves no room for the "
                f"{NUM_SPECIAL_TOKENS} special tokens in the text vocabulary ({text_vocab_size})"
            )
    else:
        base = text_vocab_size - NUM_SPECIAL_TOKENS
    special = SpecialTokens.at_base(base)
    explicit = {f: raw[f"kimia_{f}"] for f in ("media_begin", "media_end") if f"kimia_{f}" in raw}
    for field, value in explicit.items():
        if not isinstance(value, int) or not 0 <= value < text_vocab_size:
            raise ConfigError(
                f"{source}: kimia_{field}={value!r} is outside the text vocabulary "
                f"[0, {text_vocab_size})"
            )
    return dataclasses.replace(special, **explicit)


def _special_for_text_vocab(text_vocab_size: int) -> SpecialTokens:
    """Special-token ids at the top of a small text vocabulary (same relative layout)."""
    return SpecialTokens.at_base(text_vocab_size - NUM_SPECIAL_TOKENS)


def kimi_audio_7b(**overrides: Any) -> KimiAudioConfig:
    """Kimi-Audio-7B(-Instruct): the published sizes, bf16 storage and compute."""
    overrides.setdefault("dtype", "bfloat16")
    overrides.setdefault("param_dtype", "bfloat16")
    return KimiAudioConfig(**overrides)


def tiny(**overrides: Any) -> KimiAudioConfig:
    """A few-hundred-thousand-parameter model with every structural feature of the 7B.

    The text vocabulary is 1024 ids (the 421 special tokens at its top, in Kimi's
    layout) and the audio codebook 256 codes, so vocab = 1280.
    """
    text_vocab = 1024
    fields: dict[str, Any] = dict(
        vocab_size=text_vocab + 256,
        hidden_size=64,
        intermediate_size=128,
        num_layers=4,
        num_heads=4,
        num_kv_heads=2,
        mimo_layers=2,
        mimo_from_layer=2,
        adaptor_input_dim=4 * 32,
        rope_theta=10000.0,
        max_position_embeddings=512,
        text_vocab_size=text_vocab,
        audio_token_offset=text_vocab,
        audio_codebook_size=256,
        special=_special_for_text_vocab(text_vocab),
    )
    fields.update(overrides)
    return KimiAudioConfig(**fields)
