"""TMRoPE position ids and rotary tables against transformers' Qwen2.5-Omni."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from paras2s_jax.model.qwen_omni.rope import (
    audio_token_count,
    check_audio_spans,
    mrope_tables,
    rope_index,
)
from tests.model.qwen_omni.conftest import audio_prompt, left_padded


def _feature_lengths(counts: list[int]) -> list[int]:
    """A mel-frame count per clip that the encoder turns into `count` tokens."""
    return [next(n for n in range(1, 1000) if audio_token_count(n) == c) for c in counts]


@pytest.mark.parametrize("spans", [[[], [], []], [[4], [], [2]], [[3, 5], [6], [2, 2]]],
                         ids=["no_audio", "one_segment", "two_segments"])
def test_rope_index_matches_get_rope_index(omni_reference, spans):
    """Prompts with 0, 1 and 2 audio segments, left padded, rows of different lengths."""
    c = omni_reference.thinker
    rng = np.random.default_rng(len(sum(spans, [])))
    rows = [audio_prompt(rng, c, s, text=2 + r) for r, s in enumerate(spans)]
    ids, mask = left_padded(rows, c.pad_token_id)
    positions, deltas = rope_index(mask)
    counts = [n for s in spans for n in s]
    check_audio_spans(ids, mask, c.audio_token_index, np.asarray(_feature_lengths(counts)))
    lengths = torch.tensor(_feature_lengths(counts)) if counts else None
    thinker = omni_reference.model.thinker
    t_ids, t_mask = torch.tensor(ids), torch.tensor(mask.astype(np.int64))
    # The text/audio path (what an audio + text prompt takes) ...
    expected, expected_deltas = thinker.get_rope_index(t_ids, attention_mask=t_mask,
                                                       audio_seqlens=lengths)
    np.testing.assert_array_equal(np.asarray(positions), expected.numpy())
    np.testing.assert_array_equal(np.asarray(deltas), expected_deltas.numpy())
    # ... and the per-segment path (taken once any grid is given; here an empty one),
    # which walks the audio segments with their feature lengths: real tokens agree.
    walked, walked_deltas = thinker.get_rope_index(
        t_ids, image_grid_thw=torch.zeros((0, 3), dtype=torch.long), attention_mask=t_mask,
        audio_seqlens=lengths)
    np.testing.assert_array_equal(np.asarray(positions)[:, mask], walked.numpy()[:, mask])
    np.testing.assert_array_equal(np.asarray(deltas), walked_deltas.numpy())


def test_check_audio_spans_rejects_a_wrong_length(omni_reference):
    c = omni_reference.thinker
    ids, mask = left_padded([audio_prompt(np.random.default_rng(0), c, [3, 5])], 0)
    check_audio_spans(ids, mask, c.audio_token_index, np.asarray(_feature_lengths([3, 5])))
    with pytest.raises(ValueError, match="do not match"):
        check_audio_spans(ids, mask, c.audio_token_index, np.asarray(_feature_lengths([3, 4])))


@pytest.mark.parametrize("which", ["thinker", "talker"])
def test_mrope_tables_match_the_reference_rotary(omni_reference, which):
    """Distinct time/height/width rows, so each frequency section must read its own row."""
    c = getattr(omni_reference, which)
    module = (omni_reference.model.thinker.model.language_model if which == "thinker"
              else omni_reference.model.talker.model)
    rng = np.random.default_rng(1)
    positions = rng.integers(0, 500, size=(3, 2, 7))
    cos, sin = mrope_tables(positions, c.head_dim, c.rope_theta, c.mrope_section, np.float32)
    x = torch.zeros(2, 7, c.hidden_size)
    ref_cos, ref_sin = module.rotary_emb(x, torch.tensor(positions))
    np.testing.assert_allclose(np.asarray(cos), ref_cos.numpy(), atol=1e-6)
    np.testing.assert_allclose(np.asarray(sin), ref_sin.numpy(), atol=1e-6)
