"""Bad checkpoints, configs and audio files fail with errors that name the key or file."""

from __future__ import annotations

import json
import shutil

import librosa
import numpy as np
import pytest
import soundfile
import torch

from paras2s_jax.audio import (
    AudioReadError,
    WhisperCheckpointError,
    WhisperConfigError,
    WhisperEncoderConfig,
    load_hf_whisper_encoder,
    load_openai_whisper_encoder,
    read_audio,
)
from paras2s_jax.checkpoint.safetensors_io import SafetensorsFile, write_safetensors


def _rewrite(src, dst, drop=(), reshape=None, extra=None):
    """Copy a safetensors checkpoint directory with tensors dropped, reshaped or added."""
    shutil.copy(src / "config.json", dst / "config.json")
    handle = SafetensorsFile(src / "model.safetensors")
    tensors = {k: np.asarray(handle.get(k)) for k in handle.keys() if k not in drop}
    for key, shape in (reshape or {}).items():
        tensors[key] = np.zeros(shape, tensors[key].dtype)
    tensors.update(extra or {})
    write_safetensors(dst / "model.safetensors", tensors)
    return dst


def test_hf_missing_key_names_key_and_file(hf_whisper, tmp_path):
    _, directory = hf_whisper
    key = "encoder.layers.1.fc2.bias"
    bad = _rewrite(directory, tmp_path, drop=[key])
    with pytest.raises(WhisperCheckpointError, match=rf"model\.safetensors: missing .*{key}"):
        load_hf_whisper_encoder(bad)


def test_hf_wrong_shape_and_unexpected_key(hf_whisper, tmp_path):
    _, directory = hf_whisper
    (tmp_path / "a").mkdir()
    bad = _rewrite(directory, tmp_path / "a", reshape={"encoder.conv2.weight": (32, 32, 5)})
    with pytest.raises(WhisperCheckpointError, match=r"encoder\.conv2\.weight has shape"):
        load_hf_whisper_encoder(bad / "model.safetensors")
    (tmp_path / "b").mkdir()
    extra = {"encoder.layers.0.self_attn.k_proj.bias": np.zeros(32, np.float32)}
    bad = _rewrite(directory, tmp_path / "b", extra=extra)
    with pytest.raises(WhisperCheckpointError, match=r"unexpected .*k_proj\.bias"):
        load_hf_whisper_encoder(bad)


def test_hf_config_problems(hf_whisper, tmp_path):
    _, directory = hf_whisper
    with pytest.raises(WhisperCheckpointError, match="no such safetensors file"):
        load_hf_whisper_encoder(tmp_path)
    shutil.copy(directory / "model.safetensors", tmp_path / "model.safetensors")
    with pytest.raises(WhisperCheckpointError, match=r"config\.json"):
        load_hf_whisper_encoder(tmp_path)
    raw = json.loads((directory / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**raw, "activation_function": "relu"}))
    with pytest.raises(WhisperCheckpointError, match="activation_function"):
        load_hf_whisper_encoder(tmp_path)
    # An explicit config that disagrees with the file: the first misfit tensor is named.
    wrong = WhisperEncoderConfig.tiny_test(n_audio_ctx=8)
    with pytest.raises(WhisperCheckpointError, match="embed_positions"):
        load_hf_whisper_encoder(directory, wrong)
    with pytest.raises(WhisperConfigError, match="n_audio_head"):
        WhisperEncoderConfig.tiny_test(n_audio_head=5)


def test_openai_checkpoint_problems(openai_whisper, tmp_path):
    _, path = openai_whisper
    payload = torch.load(path, weights_only=True)
    state = dict(payload["model_state_dict"])
    del state["encoder.blocks.0.attn.value.bias"]
    bad = tmp_path / "missing.pt"
    torch.save({"dims": payload["dims"], "model_state_dict": state}, bad)
    with pytest.raises(WhisperCheckpointError, match=r"missing\.pt: missing .*attn\.value\.bias"):
        load_openai_whisper_encoder(bad)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(WhisperCheckpointError, match=r"garbage\.pt"):
        load_openai_whisper_encoder(garbage)
    no_dims = tmp_path / "nodims.pt"
    torch.save({"model_state_dict": state}, no_dims)
    with pytest.raises(WhisperCheckpointError, match=r"nodims\.pt.*'dims'"):
        load_openai_whisper_encoder(no_dims)


def test_read_audio_downmixes_and_resamples(tmp_path):
    rng = np.random.default_rng(0)
    stereo = (0.3 * rng.normal(size=(8000, 2))).astype(np.float32)
    path = tmp_path / "clip.wav"
    soundfile.write(path, stereo, 8000, subtype="FLOAT")
    audio = read_audio(path)
    assert audio.dtype == np.float32 and audio.shape == (16_000,)
    expected, _ = librosa.load(path, sr=16_000)  # the originals' loader: mono mix, soxr_hq
    np.testing.assert_array_equal(audio, expected)
    same = tmp_path / "mono16k.flac"
    soundfile.write(same, stereo[:, 0], 16_000)
    assert read_audio(same).shape == (8000,)


def test_read_audio_errors_name_the_file(tmp_path):
    with pytest.raises(AudioReadError, match=r"nowhere\.wav: no such audio file"):
        read_audio(tmp_path / "nowhere.wav")
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF but not really a wave file")
    with pytest.raises(AudioReadError, match=r"junk\.wav: cannot read audio"):
        read_audio(junk)
    empty = tmp_path / "empty.wav"
    soundfile.write(empty, np.zeros(0, np.float32), 16_000)
    with pytest.raises(AudioReadError, match=r"empty\.wav: the file holds no audio"):
        read_audio(empty)
