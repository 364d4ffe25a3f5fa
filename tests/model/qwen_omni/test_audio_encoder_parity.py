"""Qwen2.5-Omni's audio encoder and its mel front end against transformers.

The reference is the audio tower of a whole tiny random `Qwen2_5OmniForConditionalGeneration`
(its weights ~N(0, 0.1²), LayerNorms near 1), saved with `save_pretrained` into sharded
safetensors with an index: the published layout, `thinker.audio_tower.*` among the
thinker's, talker's and token2wav's tensors.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from huggingface_hub import save_torch_state_dict
from transformers import (
    Qwen2_5OmniConfig,
    Qwen2_5OmniForConditionalGeneration,
    WhisperFeatureExtractor,
)
from transformers.models.qwen2_5_omni.configuration_qwen2_5_omni import (
    Qwen2_5OmniAudioEncoderConfig,
)
from transformers.models.qwen2_5_omni.modeling_qwen2_5_omni import (
    Qwen2_5OmniAudioEncoder as Reference,
)

from paras2s_jax.audio import SAMPLE_RATE, padded_log_mel
from paras2s_jax.model.qwen_omni.audio_checkpoint import (
    PREFIX,
    AudioCheckpointError,
    iter_audio_tensors,
    load_audio_encoder,
)
from paras2s_jax.model.qwen_omni.audio_encoder import (
    AudioConfigError,
    AudioEncoderConfig,
    batch_features,
    feat_extract_output_lengths,
)

TINY = AudioEncoderConfig.tiny()
TOL = 1e-4
LENGTHS = np.array([40, 13, 33])  # 16-frame chunks: 16+16+8 | one short chunk | 16+16+1


def _hf_audio_config(c: AudioEncoderConfig) -> dict:
    return dict(num_mel_bins=c.num_mel_bins, d_model=c.d_model, encoder_layers=c.encoder_layers,
                encoder_attention_heads=c.encoder_attention_heads,
                encoder_ffn_dim=c.encoder_ffn_dim, max_source_positions=c.max_source_positions,
                n_window=c.n_window, output_dim=c.output_dim)


def _randomize(module: torch.nn.Module, seed: int) -> None:
    """Every parameter random; LayerNorm weights near 1, everything else ~N(0, 0.1²)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = 0.1 * torch.randn(p.shape, generator=gen)
            norm_scale = name.endswith("weight") and ("ln_post" in name or "layer_norm" in name)
            p.copy_(1.0 + noise if norm_scale else noise)


def _tiny_omni_config(audio: dict) -> Qwen2_5OmniConfig:
    """A whole Qwen2.5-Omni (thinker with audio/vision/text, talker, token2wav) in ~0.2M
    parameters, around the given audio config."""
    rope = {"rope_type": "default", "rope_theta": 10000.0}
    text = dict(vocab_size=160, hidden_size=audio["output_dim"], intermediate_size=64,
                num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2,
                rope_parameters={**rope, "mrope_section": [2, 2, 2]})
    vision = dict(depth=1, hidden_size=16, intermediate_size=16, num_heads=2,
                  out_hidden_size=audio["output_dim"], fullatt_block_indexes=[0])
    talker = dict(vocab_size=64, embedding_size=audio["output_dim"], hidden_size=32,
                  intermediate_size=32, num_hidden_layers=1, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=8,
                  rope_parameters={**rope, "mrope_section": [1, 1, 2]})
    dit = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, head_dim=16,
               emb_dim=16, enc_emb_dim=16, enc_dim=16, enc_channels=[16, 16, 16, 16, 48],
               enc_attention_channels=8, enc_se_channels=8, num_embeds=64,
               look_ahead_layers=[0], look_backward_layers=[0])
    bigvgan = dict(upsample_initial_channel=16, upsample_rates=[2, 2],
                   upsample_kernel_sizes=[4, 4])
    return Qwen2_5OmniConfig(
        thinker_config=dict(audio_config=audio, text_config=text, vision_config=vision),
        talker_config=talker, token2wav_config=dict(dit_config=dit, bigvgan_config=bigvgan),
    )


@pytest.fixture(scope="module")
def omni_dir(tmp_path_factory):
    """(torch audio tower, checkpoint directory): a whole tiny random Qwen2.5-Omni saved
    with `save_pretrained` into several shards; the audio tower's LayerNorms perturbed."""
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # the tiny vocabularies miss the token ids
    try:
        torch.manual_seed(0)
        model = Qwen2_5OmniForConditionalGeneration(_tiny_omni_config(_hf_audio_config(TINY)))
        ref = model.thinker.model.audio_tower.eval()  # saved as thinker.audio_tower.*
        _randomize(ref, seed=0)
        directory = tmp_path_factory.mktemp("omni_tiny")
        model.save_pretrained(directory, max_shard_size="100KB")
    finally:
        transformers.logging.set_verbosity(verbosity)
    return ref, directory


@pytest.fixture(scope="module")
def ours(omni_dir):
    return load_audio_encoder(omni_dir[1])


def _reference_tokens(ref: Reference, mel: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """What the thinker's `get_audio_features` gets: clips packed by the feature mask."""
    packed = torch.from_numpy(mel).permute(0, 2, 1)[torch.from_numpy(mask).bool()].T
    with torch.no_grad():
        return ref(packed, feature_lens=torch.from_numpy(mask.sum(1))).last_hidden_state.numpy()


def test_checkpoint_is_sharded(omni_dir):
    _, directory = omni_dir
    weight_map = json.loads((directory / "model.safetensors.index.json").read_text())["weight_map"]
    assert len({file for key, file in weight_map.items() if key.startswith(PREFIX)}) > 1
    assert any(key.startswith("talker.") for key in weight_map)


def test_encoder_matches_transformers(omni_dir, ours):
    ref, _ = omni_dir
    assert ours.config == TINY
    rng = np.random.default_rng(1)
    t = int(LENGTHS.max())
    mel = rng.normal(size=(len(LENGTHS), TINY.num_mel_bins, t)).astype(np.float32)
    # Frames past a clip's end hold the padded log-mel (not zeros) in the processor's
    # output; random values there must not leak into any token.
    mask = (np.arange(t)[None, :] < LENGTHS[:, None]).astype(np.int64)
    expected = _reference_tokens(ref, mel, mask)
    tokens, counts = ours.encode(mel, feature_attention_mask=mask)
    want = Reference._get_feat_extract_output_lengths(ref, torch.from_numpy(LENGTHS))[1]
    assert counts.tolist() == want.tolist() == [10, 3, 8]
    diff = float(np.abs(np.asarray(tokens) - expected).max())
    print(f"audio encoder (3 clips, {expected.shape[0]} tokens): max |diff| = {diff:.2e}")
    assert tokens.shape == expected.shape and diff <= TOL
    # The same clips as a list, and as the reference's packed [M, frames] + feature_lens.
    clips = [mel[i, :, :n] for i, n in enumerate(LENGTHS)]
    listed, _ = ours.encode(clips)
    packed, _ = ours.encode(np.concatenate(clips, axis=1), feature_lens=LENGTHS)
    assert np.abs(np.asarray(listed) - expected).max() <= TOL
    assert np.abs(np.asarray(packed) - expected).max() <= TOL
    # Jitted, padded output: each clip's tokens are the prefix of its row.
    padded, jit_counts = jax.jit(lambda m, n: ours(m, n))(mel, LENGTHS)
    start = 0
    for i, n in enumerate(np.asarray(jit_counts)):
        assert np.abs(np.asarray(padded[i, :n]) - expected[start: start + n]).max() <= TOL
        start += n


def test_single_clip_without_mask(omni_dir, ours):
    """One unpadded clip of 2.5 chunks: every frame counts when no mask or lengths come."""
    ref, _ = omni_dir
    mel = np.random.default_rng(2).normal(size=(1, TINY.num_mel_bins, 40)).astype(np.float32)
    alone = _reference_tokens(ref, mel, np.ones((1, 40), np.int64))
    tokens, counts = ours.encode(mel)
    assert counts.tolist() == [10]
    assert np.abs(np.asarray(tokens) - alone).max() <= TOL


def test_bfloat16_stays_close(omni_dir):
    ref, directory = omni_dir
    half = load_audio_encoder(directory, dtype="bfloat16", param_dtype="bfloat16")
    assert half.proj.kernel.get_value().dtype == jnp.bfloat16
    mel = np.random.default_rng(3).normal(size=(2, TINY.num_mel_bins, 40)).astype(np.float32)
    mask = (np.arange(40)[None, :] < np.array([[40], [21]])).astype(np.int64)
    expected = _reference_tokens(ref, mel, mask)
    tokens, _ = half.encode(mel, feature_attention_mask=mask)
    scale = np.abs(expected).max()
    diff = float(np.abs(np.asarray(tokens, np.float32) - expected).max())
    print(f"audio encoder bfloat16: max |diff| = {diff:.2e} (output max {scale:.2f})")
    assert tokens.dtype == jnp.bfloat16 and diff <= 0.05 * scale


def test_export_map_inverts_the_load_map(omni_dir, ours):
    ref, _ = omni_dir
    exported = dict(iter_audio_tensors(ours))
    state = {PREFIX + k: v.numpy() for k, v in ref.state_dict().items()}
    assert exported.keys() == state.keys()
    for key, value in state.items():
        np.testing.assert_array_equal(exported[key], value, err_msg=key)


def test_output_lengths_match_the_processor():
    frames = np.arange(1, 3001)
    want = Reference._get_feat_extract_output_lengths(None, torch.from_numpy(frames))
    got = feat_extract_output_lengths(frames)
    assert np.array_equal(got[0], want[0].numpy()) and np.array_equal(got[1], want[1].numpy())


def _rewrite_shard(directory, key, value):
    """Replace one tensor in the shard that holds it (other tensors kept)."""
    from safetensors.numpy import load_file, save_file

    index = json.loads((directory / "model.safetensors.index.json").read_text())
    file = directory / index["weight_map"][key]
    tensors = load_file(file)
    if value is None:
        del tensors[key]
    else:
        tensors[key] = value
    save_file(tensors, file)
    return file


def test_checkpoint_errors_name_file_and_key(omni_dir, tmp_path):
    import shutil

    _, source = omni_dir
    bad_shape = tmp_path / "shape"
    shutil.copytree(source, bad_shape)
    key = PREFIX + "layers.1.fc1.weight"
    file = _rewrite_shard(bad_shape, key, np.zeros((3, 3), np.float32))
    with pytest.raises(AudioCheckpointError, match=rf"{file.name}.*{key}.*\(3, 3\)"):
        load_audio_encoder(bad_shape)
    missing = tmp_path / "missing"
    shutil.copytree(source, missing)
    key = PREFIX + "ln_post.bias"
    index = missing / "model.safetensors.index.json"
    listing = json.loads(index.read_text())
    del listing["weight_map"][key]
    index.write_text(json.dumps(listing))
    with pytest.raises(AudioCheckpointError, match=rf"model.safetensors.index.json.*{key}"):
        load_audio_encoder(missing)


def test_config_from_hf_and_presets():
    assert AudioEncoderConfig.from_hf({"thinker_config": {"audio_config": {}}}) == \
        AudioEncoderConfig.qwen2_5_omni_7b()
    three_b = AudioEncoderConfig.qwen2_5_omni_3b()
    assert (three_b.output_dim, three_b.d_model, three_b.encoder_layers) == (2048, 1280, 32)
    with pytest.raises(AudioConfigError, match="n_window"):
        AudioEncoderConfig.from_hf({"audio_config": {"n_window": 0}})
    with pytest.raises(AudioConfigError, match="activation_function"):
        AudioEncoderConfig.from_hf({"activation_function": "relu"})
    with pytest.raises(AudioConfigError, match="encoder_attention_heads"):
        AudioEncoderConfig.tiny(encoder_attention_heads=5)


def test_feature_mask_must_be_a_prefix():
    mel = np.zeros((1, 128, 4), np.float32)
    with pytest.raises(ValueError, match="feature_attention_mask"):
        batch_features(mel, feature_attention_mask=np.array([[1, 0, 1, 0]]))


def test_mel_matches_whisper_feature_extractor():
    """The encoder's input: a few seconds of noise and tones, and a short clip, batched."""
    rng = np.random.default_rng(0)
    t = np.arange(int(3.3 * SAMPLE_RATE)) / SAMPLE_RATE
    clips = [
        (0.05 * rng.normal(size=t.size) + 0.4 * np.sin(2 * np.pi * 440 * t)
         + 0.1 * np.sin(2 * np.pi * 2750 * t)).astype(np.float32),
        (0.2 * rng.normal(size=12_345)).astype(np.float32),
    ]
    extractor = WhisperFeatureExtractor(feature_size=128)
    want = extractor(clips, sampling_rate=SAMPLE_RATE, return_attention_mask=True,
                     return_tensors="np")
    mel, mask = padded_log_mel(clips)
    assert np.array_equal(mask, want["attention_mask"])
    diff = float(np.abs(np.asarray(mel) - want["input_features"]).max())
    print(f"omni log-mel vs WhisperFeatureExtractor(128): max |diff| = {diff:.2e}")
    assert mel.shape == want["input_features"].shape and diff <= TOL


@pytest.mark.slow
def test_real_width_encoder_on_processor_features(tmp_path):
    """The published widths and chunking (n_window 100, 1280 -> 3584), two layers, fed the
    processor's features of a 30 s and a 7 s clip: the whole audio path at real sizes."""
    config = AudioEncoderConfig.qwen2_5_omni_7b(encoder_layers=2)
    hf = Qwen2_5OmniAudioEncoderConfig(**_hf_audio_config(config))
    hf._attn_implementation = "eager"
    torch.manual_seed(0)
    ref = Reference(hf).eval()  # transformers' own init (std 0.02); LayerNorms perturbed
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in ref.named_parameters():
            if "ln_post" in name or "layer_norm" in name:
                p.add_(0.1 * torch.randn(p.shape, generator=gen))
    state = {PREFIX + k: v.detach().clone() for k, v in ref.state_dict().items()}
    save_torch_state_dict(state, tmp_path, max_shard_size="40MB")
    (tmp_path / "config.json").write_text(
        json.dumps({"thinker_config": {"audio_config": _hf_audio_config(config)}}))
    ours = load_audio_encoder(tmp_path)
    rng = np.random.default_rng(4)
    t = np.arange(30 * SAMPLE_RATE) / SAMPLE_RATE
    tone = 0.05 * rng.normal(size=t.size) + 0.3 * np.sin(2 * np.pi * 300 * t)
    clips = [tone.astype(np.float32),
             (0.2 * rng.normal(size=7 * SAMPLE_RATE + 77)).astype(np.float32)]
    mel, mask = padded_log_mel(clips)
    mel = np.array(mel)  # writable, for torch.from_numpy
    expected = _reference_tokens(ref, mel, mask.astype(np.int64))
    tokens, counts = ours.encode(mel, feature_attention_mask=mask)
    assert counts.tolist() == [750, 175]  # 3000 and 701 mel frames
    diff = float(np.abs(np.asarray(tokens) - expected).max())
    print(f"real-width audio encoder ({expected.shape[0]} tokens): max |diff| = {diff:.2e}")
    assert tokens.shape == expected.shape and diff <= TOL
