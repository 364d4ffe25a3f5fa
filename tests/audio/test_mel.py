"""The jnp log-mel spectrogram against openai-whisper's torch implementation."""

from __future__ import annotations

import jax
import numpy as np
import pytest
import torch
import whisper

from paras2s_jax.audio import N_SAMPLES, SAMPLE_RATE, log_mel_spectrogram, mel_filters, pad_or_trim

TOL = 1e-4
_mel = jax.jit(log_mel_spectrogram, static_argnums=1)


def _clips() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    t = np.arange(N_SAMPLES) / SAMPLE_RATE
    return {
        "noise": (0.1 * rng.normal(size=N_SAMPLES)).astype(np.float32),
        "sines": (0.5 * np.sin(2 * np.pi * 440 * t) + 0.1 * np.sin(2 * np.pi * 3150 * t))
        .astype(np.float32),
        # A short clip zero-padded to 30 s: the (max - 8) floor bites in the silence.
        "padded": pad_or_trim((0.3 * rng.normal(size=37_123)).astype(np.float32)),
    }


@pytest.mark.parametrize("n_mels", [80, 128])
def test_log_mel_matches_openai_whisper(n_mels):
    for name, audio in _clips().items():
        expected = whisper.log_mel_spectrogram(torch.from_numpy(audio), n_mels=n_mels).numpy()
        out = np.asarray(_mel(audio, n_mels))
        assert out.shape == expected.shape == (n_mels, 3000)
        diff = np.abs(out - expected).max()
        print(f"log-mel {name} n_mels={n_mels}: max |diff| = {diff:.2e}")
        assert diff <= TOL


def test_batched_log_mel_floors_each_clip_on_its_own():
    clips = _clips()
    batch = np.stack([clips["noise"], clips["padded"]])
    out = np.asarray(_mel(batch, 128))
    for row, name in enumerate(("noise", "padded")):
        expected = whisper.log_mel_spectrogram(torch.from_numpy(clips[name]), n_mels=128).numpy()
        assert np.abs(out[row] - expected).max() <= TOL


def test_filters_and_pad_or_trim():
    assert mel_filters(128).shape == (128, 201) and mel_filters(80).shape == (80, 201)
    with pytest.raises(ValueError, match="n_mels"):
        mel_filters(64)
    x = np.ones(10, np.float32)
    assert pad_or_trim(x, 4).shape == (4,)
    padded = pad_or_trim(x, 16)
    assert padded.shape == (16,) and padded[10:].sum() == 0 and isinstance(padded, np.ndarray)
