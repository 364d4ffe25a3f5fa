"""BigVGAN v2 (Kimi-Audio's `vocoder/`) in Flax NNX: mel [T, num_mels] -> wav [T * hop].

conv_pre (k7) -> per stage: transposed-conv upsampling, then the mean of AMPBlock1
residual blocks (anti-aliased Snake/SnakeBeta activations around dilated convs) ->
anti-aliased activation -> conv_post (k7) -> tanh or clamp to [-1, 1].

Anti-aliasing (Activation1d): upsample x2 (replicate pad, transposed conv with a 12-tap
kaiser-windowed sinc, x2 gain, crop), the activation at the doubled rate, then low-pass
and decimate x2 (replicate pad, the same kind of filter, stride 2). The filters are fixed
by the architecture (cutoff 0.25, half width 0.3); the checkpoint's stored copies are
checked against them at load time.

Attribute names follow NVIDIA's `BigVGAN` so the checkpoint key map stays mechanical.
Activations are time-major: float[B, T, C].
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

_UP_DOWN_TAPS = 12  # Activation1d's up/down kernel size in BigVGAN v2
_DIMS = ("NWC", "WIO", "NWC")


class VocoderConfigError(ValueError):
    """A `vocoder/config.json` value the vocoder cannot run; the message names the field."""


@dataclasses.dataclass(frozen=True)
class BigVGANConfig:
    """The fields of BigVGAN's `config.json` that define the generator."""

    num_mels: int
    upsample_rates: tuple[int, ...]
    upsample_kernel_sizes: tuple[int, ...]
    upsample_initial_channel: int
    resblock_kernel_sizes: tuple[int, ...]
    resblock_dilation_sizes: tuple[tuple[int, ...], ...]
    resblock: str = "1"
    activation: str = "snakebeta"
    snake_logscale: bool = True
    use_bias_at_final: bool = True  # BigVGAN's defaults when the key is absent
    use_tanh_at_final: bool = True
    sampling_rate: int = 24000

    def __post_init__(self) -> None:
        if self.resblock != "1":
            raise VocoderConfigError(
                f"resblock={self.resblock!r}: only AMPBlock1 ('1') is supported (Kimi-Audio's "
                "copy of AMPBlock2 returns None, so its checkpoints use '1')"
            )
        if self.activation not in ("snake", "snakebeta"):
            raise VocoderConfigError(f"activation={self.activation!r}: 'snake' or 'snakebeta'")
        if len(self.upsample_rates) != len(self.upsample_kernel_sizes):
            raise VocoderConfigError("upsample_rates and upsample_kernel_sizes differ in length")
        if len(self.resblock_kernel_sizes) != len(self.resblock_dilation_sizes):
            raise VocoderConfigError(
                "resblock_kernel_sizes and resblock_dilation_sizes differ in length")
        if self.upsample_initial_channel % 2 ** len(self.upsample_rates):
            raise VocoderConfigError(
                f"upsample_initial_channel={self.upsample_initial_channel} must be divisible "
                f"by 2**{len(self.upsample_rates)} (channels halve at every stage)"
            )

    @property
    def hop_size(self) -> int:
        """Samples per mel frame (the product of the upsampling rates)."""
        return math.prod(self.upsample_rates)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "config") -> BigVGANConfig:
        """Build from a parsed `config.json`; training-only keys are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: raw[k] for k in names if k in raw}
        required = {f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING}
        missing = sorted(required - kwargs.keys())
        if missing:
            raise VocoderConfigError(f"{source}: missing field(s) {', '.join(missing)}")
        for key in ("upsample_rates", "upsample_kernel_sizes", "resblock_kernel_sizes"):
            kwargs[key] = tuple(int(v) for v in kwargs[key])
        kwargs["resblock_dilation_sizes"] = tuple(tuple(int(v) for v in d)
                                                  for d in kwargs["resblock_dilation_sizes"])
        kwargs["resblock"] = str(kwargs.get("resblock", "1"))
        config = cls(**kwargs)
        if "hop_size" in raw and int(raw["hop_size"]) != config.hop_size:
            raise VocoderConfigError(
                f"{source}: hop_size={raw['hop_size']} but the upsample_rates multiply to "
                f"{config.hop_size}"
            )
        return config

    @classmethod
    def from_json(cls, path: str | Path) -> BigVGANConfig:
        """Read `vocoder/config.json`."""
        path = Path(path)
        try:
            raw = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise VocoderConfigError(f"{path}: cannot read the vocoder config: {e}") from e
        return cls.from_dict(raw, str(path))


@functools.cache
def kaiser_sinc_filter(cutoff: float = 0.25, half_width: float = 0.3,
                       taps: int = _UP_DOWN_TAPS) -> np.ndarray:
    """float32[taps]: the kaiser-windowed sinc low-pass of BigVGAN's anti-aliasing, sum 1."""
    half = taps // 2
    attenuation = 2.285 * (half - 1) * math.pi * (4 * half_width) + 7.95
    if attenuation > 50.0:
        beta = 0.1102 * (attenuation - 8.7)
    elif attenuation >= 21.0:
        beta = 0.5842 * (attenuation - 21) ** 0.4 + 0.07886 * (attenuation - 21.0)
    else:
        beta = 0.0
    window = np.kaiser(taps, beta)
    time = np.arange(-half, half) + 0.5 if taps % 2 == 0 else np.arange(taps) - half
    filt = 2 * cutoff * window * np.sinc(2 * cutoff * time)
    return (filt / filt.sum()).astype(np.float32)


def _replicate_pad(x: jax.Array, left: int, right: int) -> jax.Array:
    return jnp.pad(x, ((0, 0), (left, right), (0, 0)), mode="edge")


def _taps_sum(x: jax.Array, taps: np.ndarray, start: int, count: int,
              stride: int = 1) -> jax.Array:
    """y[j] = Σ_k taps[k] · x[start + k + stride·j] for j < count (a fused FIR filter)."""
    out = None
    for k, tap in enumerate(taps):
        first = start + k
        term = x[:, first:first + stride * (count - 1) + 1:stride] * jnp.asarray(tap, x.dtype)
        out = term if out is None else out + term
    return out


def anti_aliased(act, x: jax.Array) -> jax.Array:
    """Activation1d: upsample x2, activate, low-pass and decimate x2 (length kept).

    BigVGAN's upsampler is a stride-2 transposed conv of the replicate-padded (5, 5) input
    with the 12-tap filter, times 2, cropped by 15 on both sides; here it is written in
    polyphase form (even outputs use the odd taps and vice versa). The downsampler is the
    same filter over the replicate-padded (5, 6) signal at stride 2.
    """
    taps = kaiser_sinc_filter()
    k, t = taps.size, x.shape[1]
    assert k == 12, "the polyphase indices below are written for 12 taps"
    padded = _replicate_pad(x, 5, 5)
    # output 2q uses padded[q + 7 - i] · f[2i + 1]; output 2q + 1 uses padded[q + 8 - i] · f[2i]
    even = _taps_sum(padded, taps[1::2][::-1], 2, t)
    odd = _taps_sum(padded, taps[0::2][::-1], 3, t)
    up = 2 * jnp.stack([even, odd], axis=2).reshape(x.shape[0], 2 * t, x.shape[2])
    y = _replicate_pad(act(up), 5, 6)
    return _taps_sum(y, taps, 0, t, stride=2)


class Snake(nnx.Module):
    """x + sin²(αx)/(β + 1e-9), α and β per channel (exp'ed when logscale); Snake: β = α."""

    def __init__(self, channels: int, *, beta: bool, logscale: bool, dtype: jnp.dtype):
        init = jnp.zeros if logscale else jnp.ones
        self.logscale = logscale
        self.alpha = nnx.Param(init((channels,), dtype))
        self.beta = nnx.Param(init((channels,), dtype)) if beta else None

    def __call__(self, x: jax.Array) -> jax.Array:
        alpha = self.alpha[...]
        beta = alpha if self.beta is None else self.beta[...]
        if self.logscale:
            alpha, beta = jnp.exp(alpha), jnp.exp(beta)
        return x + (1.0 / (beta + 1e-9)) * jnp.sin(x * alpha) ** 2


class Conv1d(nnx.Module):
    """Same-length 1-D convolution over [B, T, C]; kernel [K, Cin, Cout] (weight norm folded)."""

    def __init__(self, cin: int, cout: int, width: int, *, dilation: int = 1, bias: bool = True,
                 dtype: jnp.dtype):
        self.dilation = dilation
        self.kernel = nnx.Param(jnp.zeros((width, cin, cout), dtype))
        self.bias = nnx.Param(jnp.zeros((cout,), dtype)) if bias else None

    def __call__(self, x: jax.Array) -> jax.Array:
        width = self.kernel.shape[0]
        pad = (width * self.dilation - self.dilation) // 2
        y = jax.lax.conv_general_dilated(x, self.kernel[...], (1,), [(pad, pad)],
                                         rhs_dilation=(self.dilation,), dimension_numbers=_DIMS)
        return y if self.bias is None else y + self.bias[...]


class ConvTranspose1d(nnx.Module):
    """torch ConvTranspose1d(k, stride, padding=(k - stride) // 2) over [B, T, C].

    The kernel is stored as [K, Cin, Cout] already flipped in time, so the layer is a
    convolution over the stride-dilated input.
    """

    def __init__(self, cin: int, cout: int, width: int, stride: int, *, dtype: jnp.dtype):
        self.stride = stride
        self.kernel = nnx.Param(jnp.zeros((width, cin, cout), dtype))
        self.bias = nnx.Param(jnp.zeros((cout,), dtype))

    def __call__(self, x: jax.Array) -> jax.Array:
        width = self.kernel.shape[0]
        edge = width - 1 - (width - self.stride) // 2
        y = jax.lax.conv_general_dilated(x, self.kernel[...], (1,), [(edge, edge)],
                                         lhs_dilation=(self.stride,), dimension_numbers=_DIMS)
        return y + self.bias[...]


class AMPBlock1(nnx.Module):
    """x += conv2(act(conv1_d(act(x)))) for each dilation d (conv2 has dilation 1)."""

    def __init__(self, config: BigVGANConfig, channels: int, width: int,
                 dilations: tuple[int, ...], *, dtype: jnp.dtype):
        conv = dict(dtype=dtype)
        self.convs1 = nnx.List([Conv1d(channels, channels, width, dilation=d, **conv)
                                for d in dilations])
        self.convs2 = nnx.List([Conv1d(channels, channels, width, **conv) for _ in dilations])
        self.activations = nnx.List([
            Snake(channels, beta=config.activation == "snakebeta",
                  logscale=config.snake_logscale, dtype=dtype)
            for _ in range(2 * len(dilations))
        ])

    def __call__(self, x: jax.Array) -> jax.Array:
        for i, (c1, c2) in enumerate(zip(self.convs1, self.convs2, strict=True)):
            h = c1(anti_aliased(self.activations[2 * i], x))
            x = x + c2(anti_aliased(self.activations[2 * i + 1], h))
        return x


class BigVGAN(nnx.Module):
    """float[B, T, num_mels] log-mel -> float[B, T * hop] waveform in [-1, 1]."""

    def __init__(self, config: BigVGANConfig, *, dtype: jnp.dtype = jnp.float32):
        self.config = config
        c = config
        self.conv_pre = Conv1d(c.num_mels, c.upsample_initial_channel, 7, dtype=dtype)
        self.ups = nnx.List([
            ConvTranspose1d(c.upsample_initial_channel // 2 ** i,
                            c.upsample_initial_channel // 2 ** (i + 1), k, u, dtype=dtype)
            for i, (u, k) in enumerate(zip(c.upsample_rates, c.upsample_kernel_sizes, strict=True))
        ])
        self.resblocks = nnx.List([
            AMPBlock1(c, c.upsample_initial_channel // 2 ** (i + 1), k, d, dtype=dtype)
            for i in range(len(c.upsample_rates))
            for k, d in zip(c.resblock_kernel_sizes, c.resblock_dilation_sizes, strict=True)
        ])
        last = c.upsample_initial_channel // 2 ** len(c.upsample_rates)
        self.activation_post = Snake(last, beta=c.activation == "snakebeta",
                                     logscale=c.snake_logscale, dtype=dtype)
        self.conv_post = Conv1d(last, 1, 7, bias=c.use_bias_at_final, dtype=dtype)

    def __call__(self, mel: jax.Array) -> jax.Array:
        c = self.config
        x = self.conv_pre(mel.astype(self.conv_pre.kernel.dtype))
        kinds = len(c.resblock_kernel_sizes)
        for i, up in enumerate(self.ups):
            with jax.named_scope(f"stage_{i}"):
                x = up(x)
                total = self.resblocks[i * kinds](x)
                for j in range(1, kinds):
                    total = total + self.resblocks[i * kinds + j](x)
                x = total / kinds
        x = self.conv_post(anti_aliased(self.activation_post, x))[..., 0]
        return jnp.tanh(x) if c.use_tanh_at_final else jnp.clip(x, -1.0, 1.0)
