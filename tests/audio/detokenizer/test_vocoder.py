"""BigVGAN v2 in JAX vs the `bigvgan` package (use_cuda_kernel=False) on random weights."""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from paras2s_jax.audio.detokenizer import (
    BigVGANConfig,
    DetokenizerCheckpointError,
    VocoderConfigError,
    load_vocoder,
)
from paras2s_jax.audio.detokenizer.random_checkpoint import (
    KIMI_VOCODER_JSON,
    random_vocoder_state,
    tiny_vocoder_json,
)
from paras2s_jax.audio.detokenizer.vocoder import kaiser_sinc_filter
from paras2s_jax.checkpoint.torch_pickle import save_torch_file

from .kimi_detok_reference import load_reference_vocoder


def _write(directory, config: dict, state: dict) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config))
    save_torch_file(directory / "model.pt", {"generator": state})


def _compare(directory, frames: int = 12) -> tuple[float, float]:
    mel = np.random.default_rng(1).normal(-4, 2, (frames, 80)).astype(np.float32)
    with torch.no_grad():
        ref = load_reference_vocoder(directory)(torch.from_numpy(mel.T[None]))[0, 0].numpy()
    ours = np.asarray(nnx.jit(lambda m, x: m(x))(load_vocoder(directory), jnp.asarray(mel[None])))
    return float(np.abs(ours[0] - ref).max()), float(np.abs(ref).max())


def test_kaiser_filter_matches_bigvgan():
    from bigvgan.alias_free_activation.torch.filter import kaiser_sinc_filter1d

    ref = kaiser_sinc_filter1d(0.25, 0.3, 12).numpy().ravel()
    np.testing.assert_allclose(kaiser_sinc_filter(), ref, atol=1e-7)


def test_vocoder_parity_kimi_stages(tmp_path):
    """Kimi's 7 upsampling stages (hop 480), snakebeta, clamp and no final bias; g/v folded."""
    config = {**KIMI_VOCODER_JSON, "upsample_initial_channel": 128,
              "resblock_kernel_sizes": [3], "resblock_dilation_sizes": [[1, 3, 5]]}
    _write(tmp_path, config, random_vocoder_state(BigVGANConfig.from_dict(config), seed=0))
    diff, peak = _compare(tmp_path)
    assert 0.05 < peak < 1.0  # audible and not clipped: the comparison means something
    assert diff <= 1e-4, diff


def test_vocoder_parity_snake_tanh_bias(tmp_path):
    config = tiny_vocoder_json(upsample_rates=[4, 4], upsample_kernel_sizes=[8, 8],
                               upsample_initial_channel=32, activation="snake",
                               snake_logscale=False, use_tanh_at_final=True,
                               use_bias_at_final=True, hop_size=16)
    state = random_vocoder_state(BigVGANConfig.from_dict(config), seed=1)
    for key in state:
        if key.endswith(".alpha"):
            state[key] = np.abs(state[key]) + 0.5  # linear-scale alphas must stay positive
    _write(tmp_path, config, state)
    diff, _ = _compare(tmp_path)
    assert diff <= 1e-4, diff


@pytest.mark.slow
def test_vocoder_parity_full_kimi_structure(tmp_path):
    """Kimi's full block structure (4 resblock kinds per stage), 128 channels."""
    config = {**KIMI_VOCODER_JSON, "upsample_initial_channel": 128}
    _write(tmp_path, config, random_vocoder_state(BigVGANConfig.from_dict(config), seed=2))
    diff, peak = _compare(tmp_path, frames=8)
    assert peak > 1e-3 and diff <= 1e-4, (diff, peak)


def test_vocoder_errors_name_file_and_key(tmp_path):
    config = tiny_vocoder_json()
    state = random_vocoder_state(BigVGANConfig.from_dict(config))
    missing = dict(state)
    del missing["resblocks.3.convs2.1.weight_v"]
    _write(tmp_path / "a", config, missing)
    with pytest.raises(DetokenizerCheckpointError, match=r"model\.pt.*resblocks\.3\.convs2\.1"):
        load_vocoder(tmp_path / "a")
    bad = dict(state, **{"conv_pre.bias": np.zeros(7, np.float32)})
    _write(tmp_path / "b", config, bad)
    with pytest.raises(DetokenizerCheckpointError, match=r"conv_pre\.bias has shape \(7,\)"):
        load_vocoder(tmp_path / "b")
    filt = dict(state, **{"activation_post.upsample.filter": np.ones((1, 1, 12), np.float32)})
    _write(tmp_path / "c", config, filt)
    with pytest.raises(DetokenizerCheckpointError, match="anti-aliasing filter"):
        load_vocoder(tmp_path / "c")
    with pytest.raises(VocoderConfigError, match="AMPBlock1"):
        BigVGANConfig.from_dict(tiny_vocoder_json(resblock="2"))
    with pytest.raises(VocoderConfigError, match="hop_size=256"):
        BigVGANConfig.from_dict(tiny_vocoder_json(hop_size=256))
