"""ECAPA-TDNN speaker encoder of Qwen2.5-Omni's token2wav DiT: ref mel -> one vector.

Kimi-Audio's detokenizer has no counterpart (its DiT is conditioned on tokens and time
only); Omni encodes the reference mel into `enc_dim` features that are broadcast over
every frame of the DiT input.

    h0 = TDNN(mel)                                   (conv k0/d0 + ReLU)
    h_i = SE-Res2Net_i(h_{i-1}) + h_{i-1}             i = 1 .. n-2
    h = TDNN_mfa([h_1 ; ... ; h_{n-2}])              (channel concat)
    pooled = [μ ; σ] under attention over time        (attentive statistics pooling)
    out = fc(pooled)                                  float32[B, enc_dim]

Every conv pads "same" with reflection (left = total // 2). SE-Res2Net: TDNN(k1) ->
Res2Net (channel split into `scale` parts; part 0 passes, part 1 = TDNN(part 1), part
i = TDNN(part i + out i-1)) -> TDNN(k1) -> squeeze-excitation (time mean -> k1 conv ->
ReLU -> k1 conv -> sigmoid -> channel gate). The pooling's attention sees
[h ; global mean ; global std], runs TDNN -> tanh -> k1 conv and softmaxes over time (in
float32); std is sqrt(max(var, 1e-12)). There is no batch norm in this encoder.
Activations are time-major: float[B, T, C].
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from paras2s_jax.audio.detokenizer.vocoder import Conv1d
from paras2s_jax.audio.token2wav.config import OmniDiTConfig

_DIMS = ("NWC", "WIO", "NWC")
_STD_EPS = 1e-12


class ReflectConv1d(Conv1d):
    """Conv1d with torch's padding="same", padding_mode="reflect" (kernel [K, Cin, Cout])."""

    def __call__(self, x: jax.Array) -> jax.Array:
        total = self.dilation * (self.kernel.shape[0] - 1)
        if total:
            x = jnp.pad(x, ((0, 0), (total // 2, total - total // 2), (0, 0)), mode="reflect")
        y = jax.lax.conv_general_dilated(x, self.kernel[...], (1,), [(0, 0)],
                                         rhs_dilation=(self.dilation,), dimension_numbers=_DIMS)
        return y + self.bias[...]


class TDNN(nnx.Module):
    """ReLU(conv): torch's `TimeDelayNetBlock` (the conv sits under `.conv`)."""

    def __init__(self, cin: int, cout: int, width: int, dilation: int, *, dtype: jnp.dtype):
        self.conv = ReflectConv1d(cin, cout, width, dilation=dilation, dtype=dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        return jax.nn.relu(self.conv(x))


class Res2Net(nnx.Module):
    def __init__(self, channels: int, scale: int, width: int, dilation: int, *,
                 dtype: jnp.dtype):
        part = channels // scale
        self.scale = scale
        self.blocks = nnx.List([TDNN(part, part, width, dilation, dtype=dtype)
                                for _ in range(scale - 1)])

    def __call__(self, x: jax.Array) -> jax.Array:
        parts = jnp.split(x, self.scale, axis=-1)
        outs = [parts[0]]
        for i in range(1, self.scale):
            inp = parts[i] if i == 1 else parts[i] + outs[-1]
            outs.append(self.blocks[i - 1](inp))
        return jnp.concatenate(outs, axis=-1)


class SqueezeExcitation(nnx.Module):
    def __init__(self, channels: int, se_channels: int, *, dtype: jnp.dtype):
        self.conv1 = ReflectConv1d(channels, se_channels, 1, dtype=dtype)
        self.conv2 = ReflectConv1d(se_channels, channels, 1, dtype=dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        s = x.mean(axis=1, keepdims=True)
        return x * jax.nn.sigmoid(self.conv2(jax.nn.relu(self.conv1(s))))


class SERes2NetBlock(nnx.Module):
    def __init__(self, cin: int, cout: int, config: OmniDiTConfig, width: int, dilation: int,
                 *, dtype: jnp.dtype):
        self.tdnn1 = TDNN(cin, cout, 1, 1, dtype=dtype)
        self.res2net_block = Res2Net(cout, config.enc_res2net_scale, width, dilation,
                                     dtype=dtype)
        self.tdnn2 = TDNN(cout, cout, 1, 1, dtype=dtype)
        self.se_block = SqueezeExcitation(cout, config.enc_se_channels, dtype=dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.se_block(self.tdnn2(self.res2net_block(self.tdnn1(x)))) + x


def _weighted_stats(x: jax.Array, weights: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Per-channel mean and std of x [B, T, C] under time weights [B, T, C] (sum 1)."""
    mean = (weights * x).sum(axis=1)
    var = (weights * (x - mean[:, None]) ** 2).sum(axis=1)
    return mean, jnp.sqrt(jnp.maximum(var, _STD_EPS))


class AttentiveStatsPool(nnx.Module):
    """float[B, T, C] -> float[B, 2C]: attention-weighted [mean ; std] over time."""

    def __init__(self, channels: int, attention_channels: int, *, dtype: jnp.dtype):
        self.tdnn = TDNN(3 * channels, attention_channels, 1, 1, dtype=dtype)
        self.conv = ReflectConv1d(attention_channels, channels, 1, dtype=dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        t = x.shape[1]
        mean, std = _weighted_stats(x, jnp.full_like(x, 1.0 / t))
        context = jnp.concatenate(
            [x, jnp.broadcast_to(mean[:, None], x.shape), jnp.broadcast_to(std[:, None], x.shape)],
            axis=-1)
        scores = self.conv(jnp.tanh(self.tdnn(context)))
        weights = jax.nn.softmax(scores.astype(jnp.float32), axis=1).astype(x.dtype)
        mean, std = _weighted_stats(x, weights)
        return jnp.concatenate([mean, std], axis=-1)


class ECAPA(nnx.Module):
    """float[B, T_ref, mel_dim] reference mel -> float[B, enc_dim] (torch `ECAPA_TimeDelayNet`)."""

    def __init__(self, config: OmniDiTConfig, *, dtype: jnp.dtype = jnp.float32):
        ch, ks, ds = config.enc_channels, config.enc_kernel_sizes, config.enc_dilations
        blocks: list[nnx.Module] = [TDNN(config.mel_dim, ch[0], ks[0], ds[0], dtype=dtype)]
        blocks += [SERes2NetBlock(ch[i - 1], ch[i], config, ks[i], ds[i], dtype=dtype)
                   for i in range(1, len(ch) - 1)]
        self.blocks = nnx.List(blocks)
        self.mfa = TDNN(ch[-1], ch[-1], ks[-1], ds[-1], dtype=dtype)
        self.asp = AttentiveStatsPool(ch[-1], config.enc_attention_channels, dtype=dtype)
        self.fc = ReflectConv1d(2 * ch[-1], config.enc_dim, 1, dtype=dtype)

    def __call__(self, mel: jax.Array) -> jax.Array:
        h = mel.astype(self.fc.kernel.dtype)
        outs = []
        for block in self.blocks:
            h = block(h)
            outs.append(h)
        h = self.mfa(jnp.concatenate(outs[1:], axis=-1))
        return self.fc(self.asp(h)[:, None, :])[:, 0]
