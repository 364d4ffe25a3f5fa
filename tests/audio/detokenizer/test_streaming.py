"""Streaming detokenization (ids -> wav) vs the PyTorch reference of Kimi-Audio's loop."""

from __future__ import annotations

import numpy as np
import pytest

from paras2s_jax.audio.detokenizer import DetokenizerCheckpointError, load_detokenizer
from paras2s_jax.audio.detokenizer.streaming import (
    StreamingSchedule,
    periodic_hamming,
    split_chunks,
)


def test_chunks_follow_detokenize_audio():
    s = StreamingSchedule()
    assert split_chunks(70, s) == [(0, 30), (30, 60), (60, 70)]
    assert split_chunks(30, s) == [(0, 30)]
    assert split_chunks(31, s) == [(0, 30), (30, 31)]
    assert split_chunks(5, s) == [(0, 5)]


def test_periodic_hamming_halves_sum_to_1_08():
    import torch

    w = periodic_hamming(960)
    np.testing.assert_allclose(w, torch.hamming_window(960).numpy(), atol=1e-6)
    fade = w[-480:] + w[:480]  # the weights of kept and new wav in the cross-fade
    np.testing.assert_allclose(fade, 1.08, atol=1e-6)  # everywhere: the fade is 8% louder


def test_detokenize_lengths_determinism_and_errors(detok_dir):
    detok = load_detokenizer(detok_dir)
    ids = np.random.default_rng(0).integers(0, 16384, 70)
    wav = detok.detokenize(ids, seed=1)
    assert wav.dtype == np.float32 and wav.shape == (70 * 4 * 480,)
    assert np.isfinite(wav).all() and wav.std() > 1e-3
    np.testing.assert_array_equal(wav, detok.detokenize(ids, seed=1))
    assert not np.array_equal(wav, detok.detokenize(ids, seed=2))
    assert detok.detokenize(ids[:7], seed=1).shape == (7 * 1920,)  # one final chunk
    with pytest.raises(ValueError, match="non-empty"):
        detok.detokenize(np.zeros(0, np.int64))
    with pytest.raises(ValueError, match="152064"):
        detok.detokenize(ids + 152064)
    with pytest.raises(DetokenizerCheckpointError, match="no audio_detokenizer/ directory"):
        load_detokenizer(detok_dir / "audio_detokenizer")


def _reference_wav(directory, ids, noise, dtype, schedule: StreamingSchedule):
    import torch

    from .kimi_detok_reference import RefStreamer, load_reference_dit, load_reference_vocoder

    tdt = getattr(torch, dtype)
    dit, raw = load_reference_dit(directory / "audio_detokenizer", tdt)
    vocoder = load_reference_vocoder(directory / "vocoder", tdt)
    streamer = RefStreamer(dit, raw, vocoder, tdt, noise, look_ahead=schedule.look_ahead_tokens,
                           max_kv=schedule.max_kv_cache_frames, max_pos=schedule.max_positions)
    return streamer.detokenize(torch.from_numpy(ids)).numpy()


# a short cache and position range so that 100 ids hit the 900-frame cap and the 4096 reset
# analogues: the cache holds 100 frames, and the state resets after the second chunk
SHORT = StreamingSchedule(max_kv_cache_frames=100, max_positions=400)


@pytest.mark.parametrize("dtype,schedule,n_ids,tol", [
    ("float32", SHORT, 100, 2e-4),
    pytest.param("bfloat16", StreamingSchedule(), 70, None, marks=pytest.mark.slow),
])
def test_streamed_wav_matches_reference(detok_dir, dtype, schedule, n_ids, tol):
    from .conftest import SharedNoise

    ids = np.random.default_rng(5).integers(0, 16384, n_ids)
    noise = SharedNoise(7)
    ours = load_detokenizer(detok_dir, dtype=dtype, schedule=schedule).detokenize(ids,
                                                                                  noise=noise)
    ref = _reference_wav(detok_dir, ids, noise.replay(), dtype, schedule)
    assert ours.shape == ref.shape == (n_ids * 1920,)
    diff = np.abs(ours - ref)
    print(f"{dtype}: max |diff| {diff.max():.2e}, mean {diff.mean():.2e}, "
          f"peak {np.abs(ref).max():.3f}")
    if tol is not None:
        assert diff.max() <= tol
    else:
        # bfloat16 on both sides with different op orders: a single DiT call or vocoder
        # pass already differs by ~1.2% (about 3 bf16 ulps) on average; measured for the
        # whole stream: mean |diff| 1.8% of mean |wav|, max 0.026
        assert diff.mean() <= 0.03 * np.abs(ref).mean() and diff.max() <= 0.1
