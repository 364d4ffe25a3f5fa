"""Parity of the token2wav port with transformers' Qwen2.5-Omni (tiny random, float32)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from paras2s_jax.audio.token2wav import export_state_dict

from .conftest import TINY

ATOL = 1e-4
B, CODES, REF_FRAMES = 2, 10, 16  # 20 mel frames = 5 attention blocks of 4


def _inputs(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    c = TINY.dit
    codes = torch.randint(0, c.num_embeds + 1, (B, CODES), generator=gen)
    ref = torch.randn(B, REF_FRAMES, c.mel_dim, generator=gen)
    speaker = torch.randn(B, c.enc_emb_dim, generator=gen)
    return codes, ref, speaker


def _j(x: torch.Tensor) -> jnp.ndarray:
    return jnp.asarray(x.detach().numpy())


def _jit(fn):
    """fn(module, *arrays) compiled once (faster than op-by-op on CPU)."""
    return nnx.jit(fn)


def _err(ours, ref: torch.Tensor) -> float:
    ref = ref.detach().numpy()
    assert np.shape(ours) == ref.shape
    return float(np.abs(np.asarray(ours) - ref).max())


def test_ecapa_embedding(hf_omni, ours):
    torch_t2w, _ = hf_omni
    _, ref, _ = _inputs()
    with torch.no_grad():
        want = torch_t2w.code2wav_dit_model.input_embed.spk_encoder(ref)
    err = _err(_jit(lambda m, r: m(r))(ours.dit.spk_encoder, _j(ref)), want)
    print(f"ECAPA max abs err {err:.2e} (|ref| max {want.abs().max():.2f})")
    assert err <= ATOL


def test_dit_velocity(hf_omni, ours):
    torch_t2w, _ = hf_omni
    codes, ref, speaker = _inputs(1)
    frames = CODES * TINY.dit.repeats
    x = torch.randn(B, frames, TINY.dit.mel_dim, generator=torch.Generator().manual_seed(2))
    t = torch.tensor([0.3, 0.85])
    with torch.no_grad():
        want = torch_t2w.code2wav_dit_model(
            hidden_states=x, condition_vector=ref,
            speaker_embedding=speaker[:, None].repeat(1, frames, 1), quantized_code=codes,
            time_step=t, apply_cfg=False)
    got = _jit(lambda m, *a: m(*a))(ours.dit, _j(x), _j(ref), _j(speaker), _j(codes), _j(t))
    err = _err(got, want)
    print(f"DiT velocity max abs err {err:.2e} (|v| max {want.abs().max():.2f})")
    assert err <= ATOL


@pytest.mark.parametrize("guidance", [0.5, pytest.param(0.0, marks=pytest.mark.slow)])
def test_rk4_mel(hf_omni, ours, guidance):
    torch_t2w, _ = hf_omni
    codes, ref, speaker = _inputs(3)
    shape = (B, CODES * TINY.dit.repeats, TINY.dit.mel_dim)
    torch.manual_seed(7)
    noise = torch.randn(shape)
    torch.manual_seed(7)  # the reference draws its start noise with the same call
    with torch.no_grad():
        want = torch_t2w.code2wav_dit_model.sample(speaker, ref, codes, num_steps=4,
                                                   guidance_scale=guidance, sway_coefficient=-1.0)
    got = _jit(lambda m, *a: m.mel(*a, num_steps=4, guidance_scale=guidance, sway=-1.0))(
        ours, _j(codes), _j(ref), _j(speaker), _j(noise))
    err = _err(np.asarray(got).transpose(0, 2, 1), want)  # theirs is [B, mel, T]
    moved = (want.transpose(1, 2) - noise).abs().max()
    print(f"RK4 mel (guidance {guidance}) max abs err {err:.2e} (|mel| max "
          f"{want.abs().max():.2f}, |mel - noise| max {moved:.2f})")
    assert err <= ATOL


def test_bigvgan_wav(hf_omni, ours):
    torch_t2w, _ = hf_omni
    gen = torch.Generator().manual_seed(4)
    mel = 2.0 * torch.randn(B, 12, TINY.bigvgan.mel_dim, generator=gen) - 5.0  # log amplitude
    mel[0, :3] = -20.0  # below the -115 dB floor: exercises the clamp
    with torch.no_grad():
        want = torch_t2w.code2wav_bigvgan_model(mel.transpose(1, 2))
    got = _jit(lambda m, x: m(x))(ours.bigvgan, _j(mel))
    err = _err(got, want)
    inside = float((want.abs() < 0.99).float().mean())
    print(f"BigVGAN wav max abs err {err:.2e} (|wav| max {want.abs().max():.2f}, "
          f"std {want.std():.3f}, {inside:.0%} unclamped)")
    assert err <= ATOL
    assert inside > 0.5  # mostly a real signal, not the clamp's ±1


@pytest.mark.slow
def test_token2wav_end_to_end(hf_omni, ours):
    torch_t2w, _ = hf_omni
    codes, ref, speaker = _inputs(5)
    shape = (1, CODES * TINY.dit.repeats, TINY.dit.mel_dim)
    torch.manual_seed(11)
    noise = torch.randn(shape)
    torch.manual_seed(11)
    with torch.no_grad():
        want = torch_t2w(codes[:1], speaker[:1], ref[:1], num_steps=3)  # squeezed to [S]
    got = _jit(lambda m, *a: m(*a, num_steps=3))(ours, _j(codes[:1]), _j(ref[:1]),
                                                  _j(speaker[:1]), _j(noise))
    err = _err(got[0], want)
    print(f"token2wav wav max abs err {err:.2e} (|wav| max {want.abs().max():.2f})")
    assert err <= ATOL


def test_export_round_trip(hf_omni, ours):
    torch_t2w, _ = hf_omni
    want = {f"token2wav.{k}": v for k, v in torch_t2w.state_dict().items()}
    got = export_state_dict(ours)
    assert sorted(got) == sorted(want)
    for key, value in got.items():
        np.testing.assert_array_equal(value, want[key].numpy(), err_msg=key)


@pytest.mark.parametrize("num_steps", [4, 10, 33])
def test_time_grid(num_steps):
    from paras2s_jax.audio.token2wav import time_points

    grid = torch.linspace(0, 1, num_steps, dtype=torch.float32)
    np.testing.assert_array_equal(time_points(num_steps, None), grid.numpy())
    swayed = grid + -1.0 * (torch.cos(torch.pi / 2 * grid) - 1 + grid)
    np.testing.assert_allclose(time_points(num_steps, -1.0), swayed.numpy(), rtol=0, atol=1.2e-7)
