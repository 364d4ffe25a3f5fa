"""Kimi-Audio continuous features: segmenting, token counts, frame grouping, placement."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import whisper

from paras2s_jax.audio import (
    extract_features,
    load_hf_whisper_encoder,
    pad_or_trim,
    place_features,
    segment_token_lengths,
    stack_frames,
    token_length,
)
from paras2s_jax.layout import Message, build_prompt
from paras2s_jax.model import tiny
from tests.audio.conftest import TINY

TOL = 1e-4
WINDOW = TINY.n_frames * 160  # the tiny encoder's "30 s": 5120 samples


def test_token_length_matches_kimi_formula():
    assert [token_length(n) for n in (1, 1280, 1281, 2560, 480_000)] == [1, 1, 2, 2, 375]
    # 75 s: two full 30 s segments (375 tokens each) and 15 s (188 tokens).
    assert segment_token_lengths(75 * 16_000) == [375, 375, 188]
    assert segment_token_lengths(480_000) == [375]
    assert segment_token_lengths(480_001) == [375, 1]
    with pytest.raises(ValueError):
        token_length(0)


def test_stack_frames_is_frame_ordered():
    t, e = 12, 3
    frames = np.arange(t * e).reshape(t, e)  # frame i holds [3i, 3i+1, 3i+2]
    rows = stack_frames(frames)
    assert rows.shape == (t // 4, 4 * e)
    for j in range(t // 4):
        np.testing.assert_array_equal(rows[j], np.concatenate(frames[4 * j : 4 * j + 4]))
    with pytest.raises(ValueError, match="multiple of 4"):
        stack_frames(frames[:10])


def test_multi_segment_features_match_torch_pipeline(hf_whisper):
    model, directory = hf_whisper
    encoder = load_hf_whisper_encoder(directory)
    rng = np.random.default_rng(0)
    audio = (0.2 * rng.normal(size=2 * WINDOW + WINDOW // 2)).astype(np.float32)
    out = extract_features(encoder, audio)
    lengths = segment_token_lengths(audio.size, WINDOW)
    assert lengths == [4, 4, 2]
    assert out.shape == (sum(lengths), 4 * TINY.n_audio_state) and out.dtype == np.float32

    # Reference: openai-whisper mel + transformers encoder, segment by segment (Kimi's loop).
    kept = []
    for i, n_tokens in enumerate(lengths):
        segment = torch.from_numpy(pad_or_trim(audio[i * WINDOW : (i + 1) * WINDOW], WINDOW))
        mel = whisper.log_mel_spectrogram(segment, n_mels=TINY.n_mels)
        with torch.no_grad():
            states = model.encoder(mel[None]).last_hidden_state[0]
        kept.append(states[: 4 * n_tokens])
    expected = torch.cat(kept).reshape(-1, 4 * TINY.n_audio_state).numpy()
    diff = np.abs(out - expected).max()
    print(f"features (mel + encoder + grouping, 3 segments) vs torch: max |diff| = {diff:.2e}")
    assert diff <= TOL


def test_short_clip_keeps_only_its_frames(hf_whisper):
    _, directory = hf_whisper
    encoder = load_hf_whisper_encoder(directory)
    audio = np.random.default_rng(1).normal(size=1300).astype(np.float32)
    assert extract_features(encoder, audio).shape == (2, 4 * TINY.n_audio_state)
    with pytest.raises(ValueError, match="empty"):
        extract_features(encoder, np.zeros(0, np.float32))
    with pytest.raises(ValueError, match="mono"):
        extract_features(encoder, np.zeros((2, 100), np.float32))


def test_place_features_on_the_continuous_mask():
    cfg = tiny()
    messages = [
        Message("user", text=(5, 6)),
        Message("user", audio=tuple(range(3))),
        Message("assistant", text=(7,)),
        Message("user", audio=tuple(range(10, 12))),
    ]
    streams = build_prompt(messages, cfg)
    feats = np.arange(5 * 8, dtype=np.float32).reshape(5, 8) + 1
    placed = place_features(feats, streams.continuous)
    assert placed.shape == (len(streams), 8)
    np.testing.assert_array_equal(placed[streams.continuous], feats)  # rows in prompt order
    assert not placed[~streams.continuous].any()
    codes = streams.audio[streams.continuous] - cfg.audio_token_offset
    np.testing.assert_array_equal(codes, [0, 1, 2, 10, 11])
    with pytest.raises(ValueError, match="5 continuous positions .* 4 feature rows"):
        place_features(feats[:4], streams.continuous)
