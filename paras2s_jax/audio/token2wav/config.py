"""Configs of Qwen2.5-Omni's token2wav: the flow-matching DiT and the BigVGAN vocoder.

Both are read from `token2wav_config.{dit_config, bigvgan_config}` of the published
`config.json`; a missing or unusable field raises `Token2WavConfigError` naming it. The
defaults (and `omni_7b()`) are the published Qwen/Qwen2.5-Omni-7B sizes.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from paras2s_jax.audio.detokenizer.vocoder import BigVGANConfig


class Token2WavConfigError(ValueError):
    """A token2wav config value the model cannot run; the message names the field."""


def _ints(values: Any) -> tuple[int, ...]:
    return tuple(int(v) for v in values)


@dataclasses.dataclass(frozen=True)
class OmniDiTConfig:
    """`token2wav_config.dit_config`: the DiT, its codec embedding and ECAPA speaker encoder."""

    hidden_size: int = 1024
    num_hidden_layers: int = 22
    num_attention_heads: int = 16
    head_dim: int = 64
    ff_mult: int = 2
    emb_dim: int = 512  # codec embedding width
    num_embeds: int = 8193  # codec ids; the table has one more row
    repeats: int = 2  # mel frames per codec id
    mel_dim: int = 80
    block_size: int = 24  # frames per attention block
    look_ahead_layers: tuple[int, ...] = (10,)
    look_backward_layers: tuple[int, ...] = (0, 20)
    rope_theta: float = 10000.0
    max_position_embeddings: int = 32768
    enc_emb_dim: int = 192  # speaker vector width
    enc_dim: int = 128  # ECAPA output width
    enc_channels: tuple[int, ...] = (256, 256, 256, 256, 768)
    enc_kernel_sizes: tuple[int, ...] = (5, 3, 3, 3, 1)
    enc_dilations: tuple[int, ...] = (1, 2, 3, 4, 1)
    enc_attention_channels: int = 64
    enc_res2net_scale: int = 2
    enc_se_channels: int = 64

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, int) and value <= 0:
                raise Token2WavConfigError(f"dit_config.{f.name} must be > 0, got {value}")
        if self.head_dim % 2:
            raise Token2WavConfigError(f"dit_config.head_dim={self.head_dim} must be even (RoPE)")
        n = len(self.enc_channels)
        if n < 3 or len(self.enc_kernel_sizes) != n or len(self.enc_dilations) != n:
            raise Token2WavConfigError(
                "dit_config.enc_channels, enc_kernel_sizes and enc_dilations must have one "
                f"common length >= 3, got {n}, {len(self.enc_kernel_sizes)}, "
                f"{len(self.enc_dilations)}")
        if sum(self.enc_channels[1:-1]) != self.enc_channels[-1]:
            raise Token2WavConfigError(
                f"dit_config.enc_channels[-1]={self.enc_channels[-1]} must equal the sum of the "
                f"SE-Res2Net widths {self.enc_channels[1:-1]} (the MFA layer concatenates them)")
        if len(set(self.enc_channels[:-1])) != 1:
            raise Token2WavConfigError(
                f"dit_config.enc_channels[:-1]={list(self.enc_channels[:-1])} must be equal "
                "(each SE-Res2Net block adds its input to its output)")
        if self.enc_channels[0] % self.enc_res2net_scale:
            raise Token2WavConfigError(
                f"dit_config.enc_channels[0]={self.enc_channels[0]} must be divisible by "
                f"enc_res2net_scale={self.enc_res2net_scale}")
        for name in ("look_ahead_layers", "look_backward_layers"):
            bad = [i for i in getattr(self, name) if not 0 <= i < self.num_hidden_layers]
            if bad:
                raise Token2WavConfigError(f"dit_config.{name} has layer {bad[0]} outside "
                                           f"0..{self.num_hidden_layers - 1}")

    @property
    def ff_width(self) -> int:
        return int(self.hidden_size * self.ff_mult)

    @property
    def input_width(self) -> int:
        """Width of [x_t ; ECAPA(ref mel) ; codec embedding ; speaker vector]."""
        return self.mel_dim + self.enc_dim + self.emb_dim + self.enc_emb_dim

    @classmethod
    def from_hf(cls, raw: dict[str, Any], source: str = "dit_config") -> OmniDiTConfig:
        """Build from `token2wav_config.dit_config`; unknown keys are ignored."""
        if not isinstance(raw, dict):
            raise Token2WavConfigError(f"{source}: expected a dict, got {type(raw).__name__}")
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name == "rope_theta":
                continue
            if f.name in raw:
                value = raw[f.name]
                try:
                    kwargs[f.name] = _ints(value) if isinstance(f.default, tuple) else \
                        type(f.default)(value)
                except (TypeError, ValueError) as e:
                    raise Token2WavConfigError(f"{source}.{f.name}: bad value {value!r}") from e
        rope = raw.get("rope_parameters") or {}
        if rope.get("rope_type", "default") != "default":
            raise Token2WavConfigError(
                f"{source}.rope_parameters.rope_type={rope['rope_type']!r}: only 'default'")
        kwargs["rope_theta"] = float(rope.get("rope_theta", raw.get("rope_theta", 10000.0)))
        return cls(**kwargs)

    @classmethod
    def omni_7b(cls) -> OmniDiTConfig:
        """The published Qwen2.5-Omni-7B DiT."""
        return cls()

    @classmethod
    def tiny(cls) -> OmniDiTConfig:
        """A few-thousand-parameter DiT for tests (3 layers, one look-ahead, two look-back)."""
        return cls(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, head_dim=16,
                   ff_mult=2, emb_dim=8, num_embeds=20, repeats=2, mel_dim=8, block_size=4,
                   look_ahead_layers=(1,), look_backward_layers=(0, 2), enc_emb_dim=6,
                   enc_dim=10, enc_channels=(8, 8, 8, 16), enc_kernel_sizes=(5, 3, 3, 1),
                   enc_dilations=(1, 2, 3, 1), enc_attention_channels=4, enc_res2net_scale=2,
                   enc_se_channels=4)


@dataclasses.dataclass(frozen=True)
class OmniBigVGANConfig:
    """`token2wav_config.bigvgan_config`: mel [T, mel_dim] -> 24 kHz wav [T * hop]."""

    mel_dim: int = 80
    upsample_initial_channel: int = 1536
    resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11)
    resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    upsample_rates: tuple[int, ...] = (5, 3, 2, 2, 2, 2)
    upsample_kernel_sizes: tuple[int, ...] = (11, 7, 4, 4, 4, 4)

    def __post_init__(self) -> None:
        for i, d in enumerate(self.resblock_dilation_sizes):
            if len(d) != 3:  # Omni's AMP block has exactly three dilated convs
                raise Token2WavConfigError(
                    f"bigvgan_config.resblock_dilation_sizes[{i}]={list(d)}: need 3 dilations")
        self.generator_config()  # the remaining checks

    @property
    def hop_size(self) -> int:
        return self.generator_config().hop_size

    def generator_config(self) -> BigVGANConfig:
        """The same generator in the detokenizer's BigVGAN terms (SnakeBeta in log scale,
        no bias on conv_post, clamp instead of tanh)."""
        try:
            return BigVGANConfig(
                num_mels=self.mel_dim, upsample_rates=self.upsample_rates,
                upsample_kernel_sizes=self.upsample_kernel_sizes,
                upsample_initial_channel=self.upsample_initial_channel,
                resblock_kernel_sizes=self.resblock_kernel_sizes,
                resblock_dilation_sizes=self.resblock_dilation_sizes, resblock="1",
                activation="snakebeta", snake_logscale=True, use_bias_at_final=False,
                use_tanh_at_final=False, sampling_rate=24000)
        except ValueError as e:
            raise Token2WavConfigError(f"bigvgan_config: {e}") from e

    @classmethod
    def from_hf(cls, raw: dict[str, Any], source: str = "bigvgan_config") -> OmniBigVGANConfig:
        """Build from `token2wav_config.bigvgan_config`; unknown keys are ignored."""
        if not isinstance(raw, dict):
            raise Token2WavConfigError(f"{source}: expected a dict, got {type(raw).__name__}")
        kwargs: dict[str, Any] = {}
        try:
            for name in ("mel_dim", "upsample_initial_channel"):
                if name in raw:
                    kwargs[name] = int(raw[name])
            for name in ("resblock_kernel_sizes", "upsample_rates", "upsample_kernel_sizes"):
                if name in raw:
                    kwargs[name] = _ints(raw[name])
            if "resblock_dilation_sizes" in raw:
                kwargs["resblock_dilation_sizes"] = tuple(
                    _ints(d) for d in raw["resblock_dilation_sizes"])
        except (TypeError, ValueError) as e:
            raise Token2WavConfigError(f"{source}.{name}: bad value {raw.get(name)!r}") from e
        return cls(**kwargs)

    @classmethod
    def omni_7b(cls) -> OmniBigVGANConfig:
        """The published Qwen2.5-Omni-7B vocoder (hop 240 at 24 kHz)."""
        return cls()

    @classmethod
    def tiny(cls) -> OmniBigVGANConfig:
        """Two stages (x3, x2), 16 channels, two AMP kernel sizes."""
        return cls(mel_dim=8, upsample_initial_channel=16, resblock_kernel_sizes=(3, 5),
                   resblock_dilation_sizes=((1, 3, 5), (1, 3, 5)), upsample_rates=(3, 2),
                   upsample_kernel_sizes=(7, 4))


@dataclasses.dataclass(frozen=True)
class Token2WavConfig:
    """`token2wav_config` of Qwen2.5-Omni's `config.json`."""

    dit: OmniDiTConfig = OmniDiTConfig()
    bigvgan: OmniBigVGANConfig = OmniBigVGANConfig()

    def __post_init__(self) -> None:
        if self.dit.mel_dim != self.bigvgan.mel_dim:
            raise Token2WavConfigError(
                f"dit_config.mel_dim={self.dit.mel_dim} != bigvgan_config.mel_dim="
                f"{self.bigvgan.mel_dim}")

    @classmethod
    def from_hf(cls, raw: dict[str, Any], source: str = "config.json") -> Token2WavConfig:
        """From the whole model's config (with `token2wav_config`) or the token2wav part."""
        t2w = raw.get("token2wav_config", raw) if isinstance(raw, dict) else None
        if not isinstance(t2w, dict):
            raise Token2WavConfigError(f"{source}: no token2wav_config dict")
        where = f"{source}: token2wav_config." if "token2wav_config" in raw else f"{source}: "
        try:  # the messages start with the field's dit_config. / bigvgan_config. path
            return cls(OmniDiTConfig.from_hf(t2w.get("dit_config", {})),
                       OmniBigVGANConfig.from_hf(t2w.get("bigvgan_config", {})))
        except Token2WavConfigError as e:
            raise Token2WavConfigError(f"{where}{e}") from e

    @classmethod
    def omni_7b(cls) -> Token2WavConfig:
        return cls(OmniDiTConfig.omni_7b(), OmniBigVGANConfig.omni_7b())

    @classmethod
    def tiny(cls) -> Token2WavConfig:
        return cls(OmniDiTConfig.tiny(), OmniBigVGANConfig.tiny())
