"""GLM-4-Voice tokenizer parity: the Flax tokenizer vs an independent PyTorch reference.

Both read the same random `glm-4-voice-tokenizer` directory (published layout); the
reference runs HF `WhisperFeatureExtractor` exactly as GLM-4-Voice calls it.
"""

from __future__ import annotations

import json

import librosa
import numpy as np
import pytest
import soundfile
import torch
from flax import nnx
from safetensors.torch import save_file
from transformers import WhisperFeatureExtractor

from paras2s_jax.audio.features import extract_features
from paras2s_jax.audio.random_speech import write_random_vq_checkpoint
from paras2s_jax.audio.speech_tokenizer import SpeechTokenizer
from paras2s_jax.audio.vq_checkpoint import load_vq_encoder, read_vq_config
from paras2s_jax.audio.vq_encoder import VQEncoderConfig
from paras2s_jax.audio.whisper_checkpoint import WhisperCheckpointError
from paras2s_jax.audio.whisper_encoder import WhisperEncoder, WhisperEncoderConfig
from paras2s_jax.sharding import MeshConfig, make_mesh
from paras2s_jax.speech import Speech, as_16k_mono
from tests.audio.conftest import randomize_
from tests.audio.vq_reference import load_reference, reference_tokenize

TINY = VQEncoderConfig.tiny_test()
SEGMENT = TINY.n_audio_ctx * 320  # 20480 samples: 1.28 s segments for the tiny encoder


def _speechlike(n: int, seed: int) -> np.ndarray:
    """Noise shaped by a slow envelope and a few partials, so frames differ from each other."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    tone = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) for f in rng.uniform(100, 3000, 4))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(1, 6) * t)
    return (0.1 * envelope * tone + 0.05 * rng.standard_normal(n)).astype(np.float32)


def _end_burst(n: int, burst: int) -> np.ndarray:
    """Near-silence ending in a loud burst: the clip's max - 8 floor is set by its last
    frames, which see the reference's reflection padding (and frames past the end)."""
    clip = 1e-4 * _speechlike(n, seed=n)
    clip[-burst:] = 0.8 * np.sign(np.sin(np.arange(burst) / 3.0))
    return clip


# Lengths: under one code; exact multiples of 1280 (the reference reflects at the end);
# 30 samples short of a multiple (reflection reaches real audio); several segments.
LENGTHS = (700, 5120, 12_800 - 30, 20_480, 33_333, 2 * 20_480 + 7_000)


def _published_tokenizer(directory, config: VQEncoderConfig):
    """A random tokenizer directory in the published layout whose codebook is spread over
    real states; the weights are written by the PyTorch reference's `state_dict()`."""
    write_random_vq_checkpoint(directory, config, seed=0)
    model = load_reference(directory)
    randomize_(model, seed=3)
    extractor = WhisperFeatureExtractor.from_pretrained(directory)
    # Codebook = states of a calibration clip + noise: codes are used and well separated.
    _, pooled = reference_tokenize(model, extractor, _speechlike(200_000, 99), SEGMENT)
    rng = np.random.default_rng(0)
    rows = pooled[rng.choice(len(pooled), config.codebook_size, replace=False)]
    rows = rows + 0.05 * rows.std() * rng.standard_normal(rows.shape)
    with torch.no_grad():
        model.codebook.weight.copy_(torch.from_numpy(rows.astype(np.float32)))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              directory / "model.safetensors", metadata={"format": "pt"})
    return directory


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    return _published_tokenizer(tmp_path_factory.mktemp("glm_tokenizer"), TINY)


@pytest.fixture(scope="module")
def reference(tokenizer_dir):
    return load_reference(tokenizer_dir), WhisperFeatureExtractor.from_pretrained(tokenizer_dir)


def test_config_reads_published_fields(tokenizer_dir):
    config = read_vq_config(tokenizer_dir)
    assert config == TINY.replace(n_audio_mlp=4 * TINY.n_audio_state)
    raw = json.loads((tokenizer_dir / "config.json").read_text())
    assert raw["quantize_causal_block_size"] == 24 and raw["pooling_type"] == "avg"
    assert VQEncoderConfig.glm4_voice().n_tokens == 375


def test_matches_reference_features_and_codes(tokenizer_dir, reference):
    model, extractor = reference
    tokenizer = SpeechTokenizer(load_vq_encoder(tokenizer_dir), batch_size=4)
    clips = [_speechlike(n, seed=i) for i, n in enumerate(LENGTHS)]
    clips += [_end_burst(5120, 150), _end_burst(12_800 - 30, 120), _end_burst(7_680, 60)]
    ours = tokenizer.encode(clips)  # every clip in one call: buckets and batches mix
    agree = total = 0
    worst = 0.0
    for clip, (codes, pooled) in zip(clips, ours, strict=True):
        ref_ids, ref_pooled = reference_tokenize(model, extractor, clip, SEGMENT)
        expected_len = sum(-(-min(SEGMENT, clip.size - s) // 1280)
                           for s in range(0, clip.size, SEGMENT))
        assert codes.shape == ref_ids.shape == (expected_len,)
        worst = max(worst, float(np.abs(pooled - ref_pooled).max()))
        agree += int((codes == ref_ids).sum())
        total += codes.size
    used = len(np.unique(np.concatenate([c for c, _ in ours])))
    print(f"tokenizer vs reference: pooled max |diff| {worst:.2e}, ids {agree}/{total} "
          f"agree, {used} distinct codes")
    assert worst <= 1e-4
    assert agree / total >= 0.999
    assert used >= 20  # the comparison is not between constant outputs


def test_non_4x_ffn_tokenizer_loads_and_matches_reference(tmp_path):
    """`encoder_ffn_dim` is read from config.json, not assumed to be 4 x d_model."""
    config = TINY.replace(n_audio_mlp=80)  # 2.5 x d_model
    directory = _published_tokenizer(tmp_path / "ffn80", config)
    assert json.loads((directory / "config.json").read_text())["encoder_ffn_dim"] == 80
    encoder = load_vq_encoder(directory)
    assert encoder.config == config
    assert encoder.layers[0].fc1.kernel[...].shape == (32, 80)
    model, extractor = load_reference(directory), WhisperFeatureExtractor.from_pretrained(directory)
    clips = [_speechlike(n, seed=20 + i) for i, n in enumerate((5_120, 33_333))]
    for clip, (codes, pooled) in zip(clips, SpeechTokenizer(encoder).encode(clips), strict=True):
        ref_ids, ref_pooled = reference_tokenize(model, extractor, clip, SEGMENT)
        assert np.abs(pooled - ref_pooled).max() <= 1e-4
        np.testing.assert_array_equal(codes, ref_ids)


@pytest.mark.parametrize("rate", [8_000, 44_100])
def test_other_rates_tokenize_as_the_librosa_soxr_path(tokenizer_dir, reference, tmp_path, rate):
    """A stereo file at 8 or 44.1 kHz gives the codes and features of the originals' path:
    `librosa.load(path, sr=16000)` (mono mix + soxr_hq resampling), then tokenised."""
    n = int(2.5 * rate)
    left, right = _speechlike(n, seed=rate), _speechlike(n, seed=rate + 1)
    path = tmp_path / f"clip_{rate}.wav"
    soundfile.write(path, np.stack([left, right], 1), rate, subtype="FLOAT")
    expected_audio, _ = librosa.load(path, sr=16_000)
    resampled = librosa.resample(0.5 * (left + right), orig_sr=rate, target_sr=16_000,
                                 res_type="soxr_hq")
    np.testing.assert_array_equal(expected_audio, resampled)  # what librosa.load does
    whisper = WhisperEncoder(WhisperEncoderConfig.tiny_test(n_mels=128), rngs=nnx.Rngs(0))
    speech = Speech(SpeechTokenizer(load_vq_encoder(tokenizer_dir)), whisper)
    from_file = speech.encode(path)
    from_array = speech.encode(np.stack([left, right], 1), sample_rate=rate)
    expected_codes = speech.tokenizer.tokenize(expected_audio)
    np.testing.assert_array_equal(from_file.codes, expected_codes)
    np.testing.assert_array_equal(from_array.codes, expected_codes)
    features = extract_features(whisper, expected_audio)
    assert np.abs(from_file.features - features).max() <= 1e-6
    model, extractor = reference  # the original algorithm on librosa's audio
    np.testing.assert_array_equal(
        from_file.codes, reference_tokenize(model, extractor, expected_audio, SEGMENT)[0])
    # The samples themselves are librosa's, bit for bit (polyphase differed by ~3e-2 here
    # and changed 24 of the 32 codes at 8 kHz).
    np.testing.assert_array_equal(as_16k_mono(path), expected_audio)
    np.testing.assert_array_equal(as_16k_mono(np.stack([left, right], 1), rate), expected_audio)


def test_codes_embed_like_reference(tokenizer_dir, reference):
    model, extractor = reference
    encoder = load_vq_encoder(tokenizer_dir)
    clip = _speechlike(9_000, seed=7)
    feats = extractor([clip], sampling_rate=16000, return_attention_mask=True,
                      return_tensors="pt", padding="longest", pad_to_multiple_of=1280)
    with torch.no_grad():
        ids, _, last_hidden = model(feats.input_features, feats.attention_mask)
    out = np.asarray(encoder.embed_codes(ids.numpy()))
    assert np.abs(out - last_hidden.numpy()).max() <= 1e-5


def test_clip_codes_do_not_depend_on_batch(tokenizer_dir):
    tokenizer = SpeechTokenizer(load_vq_encoder(tokenizer_dir), batch_size=8)
    short, long = _speechlike(3_000, 1), _speechlike(60_000, 2)
    alone = tokenizer.tokenize(short)
    together = tokenizer.tokenize_batch([long, short])[1]
    np.testing.assert_array_equal(alone, together)


def test_sharded_load_matches(tokenizer_dir):
    clip = _speechlike(15_000, seed=4)
    plain = SpeechTokenizer(load_vq_encoder(tokenizer_dir)).encode([clip])[0]
    mesh = make_mesh(MeshConfig(data=2, fsdp=2, tensor=2))
    sharded_encoder = load_vq_encoder(tokenizer_dir, mesh=mesh)
    assert len(sharded_encoder.codebook[...].sharding.device_set) > 1
    sharded = SpeechTokenizer(sharded_encoder).encode([clip])[0]
    np.testing.assert_array_equal(plain[0], sharded[0])
    assert np.abs(plain[1] - sharded[1]).max() <= 1e-5


def test_bad_inputs_and_checkpoints(tokenizer_dir, tmp_path):
    tokenizer = SpeechTokenizer(load_vq_encoder(tokenizer_dir))
    with pytest.raises(ValueError, match="empty"):
        tokenizer.tokenize(np.zeros(0, np.float32))
    with pytest.raises(ValueError, match="mono"):
        tokenizer.tokenize(np.zeros((100, 2), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        tokenizer.tokenize(np.full(100, np.nan, np.float32))
    raw = json.loads((tokenizer_dir / "config.json").read_text())
    for field, value, match in (("pooling_position", 1, "pooling_position"),
                                ("quantize_vocab_size", None, "quantize_vocab_size"),
                                ("encoder_causal_attention", True, "encoder_causal_attention")):
        bad = tmp_path / field
        bad.mkdir()
        (bad / "config.json").write_text(json.dumps({**raw, field: value}))
        (bad / "model.safetensors").symlink_to(tokenizer_dir / "model.safetensors")
        with pytest.raises(WhisperCheckpointError, match=match):
            load_vq_encoder(bad)
    short = tmp_path / "short"
    write_random_vq_checkpoint(short, TINY.replace(codebook_size=32))
    (short / "config.json").write_text(json.dumps(raw))  # config says 64 codes
    with pytest.raises(WhisperCheckpointError, match="codebook.weight"):
        load_vq_encoder(short)
