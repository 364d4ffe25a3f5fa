"""The flow-matching sampler of Qwen2.5-Omni's token2wav: guided velocity + RK4 steps.

Time points: t_k = linspace(0, 1, num_steps), then "sway" t += s · (cos(π t / 2) - 1 + t)
(s = -1 gives t = 1 - cos(π t / 2): small steps near the noise end). The linspace is
bit-equal to torch's float32 one; the sway's cos may differ from torch's by a float32 ulp.
Between consecutive points (dt = t_{k+1} - t_k) the step is the Runge-Kutta 3/8 rule:

    k1 = f(t, x)
    k2 = f(t + dt/3, x + dt · k1/3)
    k3 = f(t + 2dt/3, x + dt · (k2 - k1/3))
    k4 = f(t + dt, x + dt · (k1 - k2 + k3))
    x += (k1 + 3 (k2 + k3) + k4) · dt / 8

so num_steps points cost 4 (num_steps - 1) velocity evaluations. With guidance scale
g >= 1e-5, f = v_c + g (v_c - v_u), where v_u is the DiT with the reference mel and speaker
vector zeroed and every codec id set to 0 (both halves run as one batch, as the reference
does); below 1e-5 f = v_c. The start x_0 (Gaussian noise float[B, T, mel]) is an input.

Kimi-Audio's detokenizer (`paras2s_jax.audio.detokenizer.flow`) instead takes Euler steps
on a uniform grid with its own CFG; nothing of it is shared here.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from paras2s_jax.audio.token2wav.dit import OmniDiT

Velocity = Callable[[jax.Array, jax.Array], jax.Array]


def time_points(num_steps: int, sway: float | None = -1.0) -> np.ndarray:
    """float32[num_steps]: the swayed time grid from 0 to 1."""
    if num_steps < 2:
        raise ValueError(f"num_steps must be >= 2, got {num_steps}")
    # torch's float32 linspace: a float32 step, the first half counted up from 0 and the
    # second half down from 1 in double, then rounded (np.linspace can differ by an ulp)
    i = np.arange(num_steps)
    step = np.float64(np.float32(1.0 / (num_steps - 1)))
    t = np.where(i < num_steps // 2, i * step, 1.0 - (num_steps - 1 - i) * step)
    t = t.astype(np.float32)
    if sway is not None:
        t = (t + np.float32(sway) * (np.cos(np.float32(np.pi / 2) * t) - 1 + t)).astype(np.float32)
    return t


def rk4_step(f: Velocity, t0: jax.Array, t1: jax.Array, x: jax.Array) -> jax.Array:
    """x at t1 from x at t0 by one 3/8-rule Runge-Kutta step of dx/dt = f(t, x).

    The four stages run as a scan over one traced `f` (so a solve compiles the DiT once);
    each stage's input is written exactly as in the formula of the module docstring.
    """
    dt = t1 - t0
    third, two_thirds = 1.0 / 3.0, 2.0 / 3.0
    stage_inputs = (
        lambda k: (t0, x),
        lambda k: (t0 + dt * third, x + dt * k[0] * third),
        lambda k: (t0 + dt * two_thirds, x + dt * (k[1] - k[0] * third)),
        lambda k: (t1, x + dt * (k[0] - k[1] + k[2])),
    )

    def stage(k, i):
        t, xi = jax.lax.switch(i, stage_inputs, k)
        return k.at[i].set(f(t, xi).astype(k.dtype)), None

    k, _ = jax.lax.scan(stage, jnp.zeros((4, *x.shape), x.dtype), jnp.arange(4))
    return x + (k[0] + 3 * (k[1] + k[2]) + k[3]) * dt / 8


def solve(f: Velocity, x0: jax.Array, times: np.ndarray) -> jax.Array:
    """Integrate from times[0] to times[-1] through every point; returns x at times[-1]."""
    ts = jnp.asarray(times, jnp.float32)

    def body(x, pair):
        return rk4_step(f, pair[0], pair[1], x), None

    x, _ = jax.lax.scan(body, x0, jnp.stack([ts[:-1], ts[1:]], axis=1))
    return x


def guided_velocity(dit: OmniDiT, ref_mel: jax.Array, speaker: jax.Array, codes: jax.Array,
                    guidance_scale: float) -> Velocity:
    """f(t, x) of the sampler: the DiT velocity with classifier-free guidance (the ECAPA
    features of the reference mel, and of its zeroed copy, are computed once here)."""
    if guidance_scale < 1e-5:
        features = dit.spk_encoder(ref_mel)
        return lambda t, x: dit.velocity(x, features, speaker, codes, t)
    features = dit.spk_encoder(jnp.concatenate([ref_mel, jnp.zeros_like(ref_mel)]))
    spk2 = jnp.concatenate([speaker, jnp.zeros_like(speaker)])
    codes2 = jnp.concatenate([codes, jnp.zeros_like(codes)])

    def f(t: jax.Array, x: jax.Array) -> jax.Array:
        cond, uncond = jnp.split(dit.velocity(jnp.concatenate([x, x]), features, spk2, codes2, t),
                                 2)
        return cond + (cond - uncond) * guidance_scale

    return f


def sample_mel(dit: OmniDiT, codes: jax.Array, ref_mel: jax.Array, speaker: jax.Array,
               noise: jax.Array, *, num_steps: int = 10, guidance_scale: float = 0.5,
               sway: float | None = -1.0) -> jax.Array:
    """float32[B, N · repeats, mel]: the mel solved from `noise` (same shape) at t = 1.

    codes int[B, N]; ref_mel float[B, T_ref, mel]; speaker float[B, enc_emb_dim].
    """
    want = (codes.shape[0], codes.shape[1] * dit.config.repeats, dit.config.mel_dim)
    if noise.shape != want:
        raise ValueError(f"noise has shape {noise.shape}; expected {want}")
    f = guided_velocity(dit, ref_mel, speaker, codes, guidance_scale)
    return solve(f, noise.astype(jnp.float32), time_points(num_steps, sway))
