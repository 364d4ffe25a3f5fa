"""The speech API on random real-layout checkpoints: files, rates, channels, bad audio."""

from __future__ import annotations

import librosa
import numpy as np
import pytest
import soundfile

from paras2s_jax.audio import AudioReadError, resample, write_random_speech
from paras2s_jax.speech import Speech, as_16k_mono


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    root = tmp_path_factory.mktemp("speech_tiny")
    write_random_speech(root, "tiny", seed=0)
    return Speech.load(root)


def _clip(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    return (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(7 * t))
            + 0.05 * rng.standard_normal(n)).astype(np.float32)


def test_wav_file_gives_codes_and_aligned_features(speech, tmp_path):
    clip = _clip(20_000)
    soundfile.write(tmp_path / "mono.wav", clip, 16000, subtype="FLOAT")
    prompt = speech.encode(tmp_path / "mono.wav")
    assert prompt.codes.dtype == np.int32 and prompt.codes.shape == (16,)  # ceil(20000 / 1280)
    assert prompt.features.shape == (16, 4 * 32)
    assert 0 <= prompt.codes.min() and prompt.codes.max() < 256
    np.testing.assert_array_equal(prompt.codes, speech.tokenizer.tokenize(clip))
    # Stereo with equal channels is the mono clip; a 44.1 kHz file is resampled.
    soundfile.write(tmp_path / "stereo.wav", np.stack([clip, clip], 1), 16000, subtype="FLOAT")
    np.testing.assert_array_equal(speech.encode(tmp_path / "stereo.wav").codes, prompt.codes)
    soundfile.write(tmp_path / "cd.wav", _clip(44_100), 44_100)
    assert speech.encode(tmp_path / "cd.wav").codes.shape == (13,)  # 16000 samples at 16 kHz


def test_8khz_is_resampled_and_long_audio_is_segmented(speech):
    narrow = speech.encode(_clip(8_000), sample_rate=8_000, features=False)
    assert narrow.codes.shape == (13,) and narrow.features is None
    long = speech.encode(_clip(31 * 16000), sample_rate=16000)
    assert long.codes.shape == (375 + 13,) and long.features.shape == (388, 128)
    first = speech.encode(_clip(31 * 16000)[: 30 * 16000], sample_rate=16000)
    np.testing.assert_array_equal(long.codes[:375], first.codes)  # independent 30 s segments


def test_bad_audio_is_refused_clearly(speech, tmp_path):
    with pytest.raises(ValueError, match="no audio samples"):
        speech.encode(np.zeros(0, np.float32), sample_rate=16000)
    with pytest.raises(ValueError, match="NaN"):
        speech.encode(np.full(100, np.inf, np.float32), sample_rate=16000)
    with pytest.raises(ValueError, match="below 8000"):
        as_16k_mono(_clip(100), 4000)
    with pytest.raises(ValueError, match="channels-first"):
        as_16k_mono(np.zeros((2, 16000), np.float32), 16000)
    with pytest.raises(ValueError, match="needs its sample_rate"):
        as_16k_mono(_clip(100))
    soundfile.write(tmp_path / "full.wav", _clip(16000), 16000)
    data = (tmp_path / "full.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioReadError, match="truncated"):
        speech.encode(tmp_path / "cut.wav")
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(AudioReadError, match="empty.wav"):
        speech.encode(tmp_path / "empty.wav")


def test_decode_refuses_empty_and_foreign_codes(speech):
    with pytest.raises(RuntimeError, match="no detokenizer"):
        Speech(speech.tokenizer).decode([1, 2])

    class Never:
        sample_rate = 24000

        def detokenize(self, audio_ids, *, seed=0):
            raise AssertionError("must not be called")

    checked = Speech(speech.tokenizer, detokenizer=Never())
    with pytest.raises(ValueError, match="no audio codes"):
        checked.decode([])
    with pytest.raises(ValueError, match="152064 offset"):
        checked.decode([152064 + 3])


@pytest.mark.parametrize("rate", [8_000, 11_025, 22_050, 44_100, 48_000])
def test_resample_is_librosa_soxr_hq(rate):
    """Bit-equal to librosa's default resampler, length included (soxr alone is often one
    sample short of librosa's ceil(N * 16000 / rate))."""
    rng = np.random.default_rng(rate)
    for n in (1, 7, 1000, rate, rate + 1, 123_457):
        x = (0.3 * rng.standard_normal(n)).astype(np.float32)
        expected = librosa.resample(x, orig_sr=rate, target_sr=16_000, res_type="soxr_hq")
        out = resample(x, rate)
        assert out.dtype == np.float32
        np.testing.assert_array_equal(out, expected)
