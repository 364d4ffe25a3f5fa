"""Parity of the Flax Whisper encoder with transformers' and openai-whisper's, via the loaders."""

from __future__ import annotations

import copy
import shutil

import jax.numpy as jnp
import numpy as np
import torch
from flax import nnx
from safetensors.torch import save_file
from transformers import WhisperModel

from paras2s_jax.audio import (
    WhisperEncoder,
    WhisperEncoderConfig,
    load_hf_whisper_encoder,
    load_openai_whisper_encoder,
    load_whisper_encoder,
)
from paras2s_jax.sharding import MeshConfig, logical_specs, make_mesh
from tests.audio.conftest import TINY, hf_tiny_config, randomize_

TOL = 1e-4


@nnx.jit
def _encode(encoder, mel):
    return encoder(mel)


def _mel(seed: int, batch: int = 2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(batch, TINY.n_mels, TINY.n_frames)).astype(np.float32)


def test_matches_transformers_whisper_encoder(hf_whisper):
    model, directory = hf_whisper
    encoder = load_hf_whisper_encoder(directory)  # config.json beside the weights
    assert encoder.config == TINY.replace(n_audio_mlp=4 * TINY.n_audio_state)
    mel = _mel(0)
    with torch.no_grad():
        expected = model.encoder(torch.from_numpy(mel)).last_hidden_state.numpy()
    out = np.asarray(_encode(encoder, mel))
    assert out.shape == expected.shape == (2, TINY.n_audio_ctx, TINY.n_audio_state)
    diff = np.abs(out - expected).max()
    print(f"encoder vs transformers WhisperModel.encoder: max |diff| = {diff:.2e}")
    assert diff <= TOL


def test_non_4x_ffn_checkpoint_matches_transformers(tmp_path):
    """The MLP width comes from `encoder_ffn_dim`, not from a fixed 4 x d_model."""
    cfg = TINY.replace(n_audio_mlp=48)  # 1.5 x d_model
    model = WhisperModel(hf_tiny_config(cfg)).eval()
    randomize_(model, seed=5)
    model.save_pretrained(tmp_path)
    encoder = load_hf_whisper_encoder(tmp_path)
    assert encoder.config == cfg
    mel = _mel(4)
    with torch.no_grad():
        expected = model.encoder(torch.from_numpy(mel)).last_hidden_state.numpy()
    assert np.abs(np.asarray(_encode(encoder, mel)) - expected).max() <= TOL


def test_matches_openai_whisper_audio_encoder(openai_whisper):
    model, path = openai_whisper
    encoder = load_openai_whisper_encoder(path)
    assert encoder.config == TINY
    mel = _mel(1)
    with torch.no_grad():
        expected = model.encoder(torch.from_numpy(mel)).numpy()
    out = np.asarray(_encode(load_whisper_encoder(path), mel))  # suffix dispatch
    diff = np.abs(out - expected).max()
    print(f"encoder vs openai-whisper AudioEncoder: max |diff| = {diff:.2e}")
    assert diff <= TOL
    assert np.abs(np.asarray(_encode(encoder, mel)) - out).max() == 0


def test_bfloat16_compute_stays_close(hf_whisper):
    _, directory = hf_whisper
    mel = _mel(2)
    ref = np.asarray(_encode(load_hf_whisper_encoder(directory), mel))
    bf16 = load_hf_whisper_encoder(directory, dtype="bfloat16", param_dtype="bfloat16")
    out = _encode(bf16, mel)
    assert out.dtype == np.dtype("bfloat16")
    rel = np.abs(np.asarray(out, np.float32) - ref).max() / np.abs(ref).max()
    print(f"bf16 vs fp32 encoder: max relative |diff| = {rel:.2e}")
    assert rel < 0.05


def test_sharded_load_matches_unsharded(hf_whisper):
    _, directory = hf_whisper
    mel = _mel(3)
    ref = np.asarray(_encode(load_hf_whisper_encoder(directory), mel))
    mesh = make_mesh(MeshConfig(data=2, fsdp=2, tensor=2))
    sharded = load_hf_whisper_encoder(directory, mesh=mesh)
    kernel = sharded.layers[0].fc1.kernel[...]
    assert not kernel.sharding.is_fully_replicated  # embed -> fsdp, mlp -> tensor
    assert np.abs(np.asarray(_encode(sharded, mel)) - ref).max() <= 1e-5


def test_every_parameter_has_logical_axes():
    abstract = nnx.eval_shape(lambda: WhisperEncoder(WhisperEncoderConfig.large_v3(),
                                                     rngs=nnx.Rngs(0)))
    specs = logical_specs(nnx.state(abstract))
    assert specs["layers.31.self_attn.q_proj.kernel"] == ("embed", "heads", "head_dim")
    assert specs["layers.0.fc2.kernel"] == ("mlp", "embed")
    assert specs["conv1.kernel"] == (None, None, "embed")
    n = sum(np.prod(v.shape) for _, v in nnx.to_flat_state(nnx.state(abstract)))
    # conv1 + conv2 + 32 x (attention + 2 LN + MLP) + final LN, then the position table
    per_layer = (4 * 1280**2 + 3 * 1280) + 4 * 1280 + (2 * 1280 * 5120 + 5120 + 1280)
    stem = (128 * 3 + 1) * 1280 + (1280 * 3 + 1) * 1280
    assert n == stem + 32 * per_layer + 2 * 1280 + 1500 * 1280 == 636_968_960


def test_half_precision_files_load_exactly(hf_whisper, openai_whisper, tmp_path):
    """Kimi-Audio ships fp16 safetensors and openai-whisper fp16 .pt files; check both paths.

    The reference is the same torch model with its weights rounded to that dtype, so the
    loaders must reproduce it to fp32 tolerance.
    """
    mel = _mel(4)
    for (model, src), dtype in ((hf_whisper, torch.float16), (openai_whisper, torch.bfloat16)):
        rounded = copy.deepcopy(model)
        with torch.no_grad():
            for tensor in [*rounded.parameters(), *rounded.buffers()]:
                if tensor.is_floating_point():
                    tensor.copy_(tensor.to(dtype).float())
        state = {k: v.to(dtype) if v.is_floating_point() else v
                 for k, v in model.state_dict().items()}
        if str(src).endswith(".pt"):
            path = tmp_path / "half.pt"
            torch.save({"dims": torch.load(src, weights_only=True)["dims"],
                        "model_state_dict": state}, path)
            with torch.no_grad():
                expected = rounded.encoder(torch.from_numpy(mel)).numpy()
        else:
            path = tmp_path / "half"
            path.mkdir()
            shutil.copy(src / "config.json", path / "config.json")
            save_file({k: v.contiguous() for k, v in state.items()}, path / "model.safetensors")
            with torch.no_grad():
                expected = rounded.encoder(torch.from_numpy(mel)).last_hidden_state.numpy()
        diff = np.abs(np.asarray(_encode(load_whisper_encoder(path), mel)) - expected).max()
        print(f"{dtype} checkpoint -> fp32 encoder: max |diff| = {diff:.2e}")
        assert diff <= TOL


def test_large_v3_shapes_trace_without_compute():
    def run():
        encoder = WhisperEncoder(WhisperEncoderConfig.large_v3(dtype="bfloat16"), rngs=nnx.Rngs(0))
        return encoder(jnp.zeros((1, 128, 3000), jnp.float32))

    out = nnx.eval_shape(run)
    assert out.shape == (1, 1500, 1280) and out.dtype == jnp.bfloat16


def test_block_causal_attention_skips_only_masked_keys():
    """Scoring each query block against the keys up to its end equals full masked attention."""
    from paras2s_jax.audio.vq_encoder import attention_mask
    from paras2s_jax.audio.whisper_encoder import attend

    rng = np.random.default_rng(6)
    q, k, v = (jnp.asarray(rng.normal(size=(2, 70, 4, 8)), jnp.float32) for _ in range(3))
    mask = attention_mask(70, jnp.asarray([70, 45]), block_size=24)  # 3 blocks, one short
    full = np.asarray(attend(q, k, v, mask))
    blocked = np.asarray(attend(q, k, v, mask, causal_block=24))
    assert np.abs(blocked - full).max() <= 1e-6
