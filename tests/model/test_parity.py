"""Parity of the Flax model with PyTorch: transformers' Qwen2 and a Kimi-Audio reference."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from transformers import Qwen2ForCausalLM

from paras2s_jax.checkpoint.hf_io import load_hf_checkpoint
from paras2s_jax.checkpoint.hf_keys import iter_hf_tensors
from paras2s_jax.model import KimiAudio, tiny
from tests.model.conftest import padded_batch, positions_from_mask
from tests.model.kimi_reference import randomize_, reference_config

TOL = 1e-4


@nnx.jit
def _forward(model, text_ids, audio_ids, mask, features, cont):
    return model(
        text_ids, audio_ids, attention_mask=mask, whisper_features=features, continuous_mask=cont
    )


def test_trunk_matches_transformers_qwen2_on_padded_batch(tmp_path):
    cfg = tiny(mimo_layers=0, use_whisper_feature=False)
    torch_model = Qwen2ForCausalLM(reference_config(cfg)).eval()
    randomize_(torch_model, seed=1)
    torch_model.save_pretrained(tmp_path)  # real HF layout: config.json + model.safetensors

    model = load_hf_checkpoint(tmp_path)
    assert model.config.mimo_layers == 0 and model.config.rope_theta == cfg.rope_theta

    rng = np.random.default_rng(0)
    ids, mask = padded_batch(rng, [9, 12, 5], 12, cfg.vocab_size, left=True)
    ids[1, :4] = ids[0, -4:]  # shared prefixes exercise nothing special; just varied rows
    positions = positions_from_mask(mask)
    with torch.no_grad():
        expected = torch_model(
            input_ids=torch.tensor(ids),
            attention_mask=torch.tensor(mask.astype(np.int64)),
            position_ids=torch.tensor(positions),
        ).logits.numpy()
    out = nnx.jit(lambda m, t, a: m(t, attention_mask=a))(model, ids, mask)
    assert out.audio_logits is None
    diff = np.abs(np.asarray(out.text_logits) - expected)[mask].max()
    print(f"trunk vs transformers Qwen2ForCausalLM: max |diff| = {diff:.2e}")
    assert diff <= TOL


@pytest.mark.parametrize("scan_layers,remat", [(True, False), (True, True), (False, False)])
def test_trunk_gradients_match_transformers_qwen2(tmp_path, scan_layers, remat):
    """Every parameter's gradient equals PyTorch autograd's, whatever each layer keeps
    for the backward pass (matmul outputs, or nothing with remat; scanned or not)."""
    cfg = tiny(mimo_layers=0, use_whisper_feature=False)
    torch_model = Qwen2ForCausalLM(reference_config(cfg))
    randomize_(torch_model, seed=2)
    torch_model.save_pretrained(tmp_path)
    model = load_hf_checkpoint(tmp_path)
    model = nnx.merge(nnx.graphdef(KimiAudio(model.config.replace(
        scan_layers=scan_layers, remat=remat), rngs=nnx.Rngs(0))), nnx.state(model))

    rng = np.random.default_rng(4)
    ids, mask = padded_batch(rng, [11, 8], 11, cfg.vocab_size, left=True)
    weights = rng.normal(size=(*ids.shape, cfg.vocab_size)).astype(np.float32) * mask[..., None]
    out = torch_model(input_ids=torch.tensor(ids),
                      attention_mask=torch.tensor(mask.astype(np.int64)),
                      position_ids=torch.tensor(positions_from_mask(mask))).logits
    (out * torch.tensor(weights)).sum().backward()
    expected = {k: v.grad.numpy() for k, v in torch_model.named_parameters()}

    @nnx.jit
    def grads(m):
        return nnx.grad(lambda m: jnp.sum(m(ids, attention_mask=mask).text_logits * weights))(m)

    got = dict(iter_hf_tensors(nnx.merge(nnx.graphdef(model), grads(model))))
    assert set(got) == set(expected)
    for key, value in got.items():
        scale = max(np.abs(expected[key]).max(), 1e-6)
        assert np.abs(value - expected[key]).max() <= 1e-4 * scale, key


@pytest.mark.parametrize("with_whisper", [False, True])
def test_full_model_matches_pytorch_reference(kimi_reference_dir, with_whisper):
    cfg, ref, directory = kimi_reference_dir
    model = load_hf_checkpoint(directory)
    rng = np.random.default_rng(1)
    text_ids, mask = padded_batch(rng, [10, 7], 10, cfg.vocab_size, left=False)
    audio_ids = rng.integers(cfg.audio_token_offset, cfg.vocab_size, size=text_ids.shape)
    features = cont = None
    if with_whisper:
        cont = np.zeros(text_ids.shape, bool)
        cont[:, 2:6] = True
        features = rng.normal(size=(*text_ids.shape, cfg.adaptor_input_dim)).astype(np.float32)
        features *= cont[..., None]
    with torch.no_grad():
        exp_audio, exp_text = ref(
            torch.tensor(audio_ids), torch.tensor(text_ids), torch.tensor(mask),
            torch.tensor(positions_from_mask(mask)),
            None if features is None else torch.tensor(features),
            None if cont is None else torch.tensor(cont),
        )
    out = _forward(model, text_ids, audio_ids, mask, features, cont)
    d_text = np.abs(np.asarray(out.text_logits) - exp_text.numpy())[mask].max()
    d_audio = np.abs(np.asarray(out.audio_logits) - exp_audio.numpy())[mask].max()
    print(f"whisper={with_whisper}: text |diff| {d_text:.2e}, audio |diff| {d_audio:.2e}")
    assert d_text <= TOL and d_audio <= TOL


def test_whisper_features_change_only_continuous_positions_onward(kimi_reference_dir):
    cfg, _, directory = kimi_reference_dir
    model = load_hf_checkpoint(directory)
    rng = np.random.default_rng(2)
    text_ids = rng.integers(0, cfg.vocab_size, size=(1, 8))
    audio_ids = rng.integers(cfg.audio_token_offset, cfg.vocab_size, size=(1, 8))
    mask = np.ones((1, 8), bool)
    cont = np.zeros((1, 8), bool)
    cont[0, 3:5] = True
    features = rng.normal(size=(1, 8, cfg.adaptor_input_dim)).astype(np.float32)
    plain = _forward(model, text_ids, audio_ids, mask, None, None)
    mixed = _forward(model, text_ids, audio_ids, mask, features, cont)
    delta = np.abs(np.asarray(mixed.text_logits - plain.text_logits)).max(axis=-1)[0]
    assert np.all(delta[:3] == 0.0), "positions before the audio segment must be unaffected"
    assert np.all(delta[3:] > 1e-3), "the audio segment and what follows must see the features"


def test_saving_back_gives_the_reference_tensors(kimi_reference_dir):
    from paras2s_jax.checkpoint import iter_hf_tensors

    _, ref, directory = kimi_reference_dir
    model = load_hf_checkpoint(directory)
    exported = dict(iter_hf_tensors(model))
    expected = {k: v.numpy() for k, v in ref.state_dict().items() if "rotary_emb" not in k}
    assert exported.keys() == expected.keys()
    for key, value in expected.items():
        np.testing.assert_array_equal(exported[key], value, err_msg=key)
