"""The jitted Qwen2.5-Omni sampler: greedy equals the step-by-step greedy generator,
sampled log-probs equal a teacher-forced forward, left padding changes nothing."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

from paras2s_jax.model.qwen_omni.model import load_qwen_omni
from paras2s_jax.model.qwen_omni.sampler import sample, score
from paras2s_jax.model.qwen_omni.speech_reply import greedy_generate
from paras2s_jax.sharding import MeshConfig, make_mesh
from tests.model.qwen_omni.test_speech_reply import (  # noqa: F401  (case: a fixture)
    case,
    stop_at_different_steps,
)

ATOL = 1e-5


def _sampled(settings):
    return dataclasses.replace(settings, text_temperature=0.8, text_top_k=20, text_top_p=0.9,
                               codec_temperature=0.9, codec_top_k=12, codec_top_p=0.8,
                               repetition_penalty=1.3)


def test_greedy_sampler_equals_greedy_generator(case):  # noqa: F811
    omni, (ids, mask, mel, mel_mask), settings = case
    greedy = dataclasses.replace(settings, text_temperature=0.0, codec_temperature=0.0)
    ref = greedy_generate(omni, ids, mask, mel, mel_mask, greedy)
    out = sample(omni, ids, mask, jax.random.key(0), greedy, mel, mel_mask)
    t_len, c_len = np.asarray(out.text_lengths), np.asarray(out.codec_lengths)
    np.testing.assert_array_equal(t_len, ref.text_lengths)
    np.testing.assert_array_equal(c_len, ref.codec_lengths)
    assert len(set(t_len.tolist())) == 2 and len(set(c_len.tolist())) == 2
    for r in range(ids.shape[0]):
        np.testing.assert_array_equal(np.asarray(out.text)[r, : t_len[r]],
                                      np.asarray(ref.text)[r, : t_len[r]])
        np.testing.assert_array_equal(np.asarray(out.codes)[r, : c_len[r]],
                                      np.asarray(ref.codes)[r, : c_len[r]])
    np.testing.assert_array_equal(out.text_finished, t_len < settings.max_text_tokens)
    np.testing.assert_array_equal(np.asarray(out.text_mask).sum(1), t_len)


@pytest.fixture(scope="module")
def sampled(case):  # noqa: F811
    omni, (ids, mask, mel, mel_mask), settings = case
    settings = _sampled(settings)
    probe = sample(omni, ids, mask, jax.random.key(7), settings, mel, mel_mask)
    # the same draws, with a codec stop id that ends the rows at different steps
    stop = stop_at_different_steps(np.asarray(probe.codes), start=4)
    settings = dataclasses.replace(settings, codec_stop_ids=(stop,))
    out = sample(omni, ids, mask, jax.random.key(7), settings, mel, mel_mask)
    return omni, (ids, mask, mel, mel_mask), settings, out


def test_sampled_logprobs_equal_teacher_forced_forward(sampled):
    omni, (ids, mask, mel, mel_mask), settings, out = sampled
    text_lp, codec_lp = jax.jit(lambda *a: score(omni, *a[:3], settings, *a[3:]))(
        ids, mask, out, mel, mel_mask)
    errors = (float(np.abs(np.asarray(text_lp) - out.text_logprobs).max()),
              float(np.abs(np.asarray(codec_lp) - out.codec_logprobs).max()))
    print(f"text lengths {np.asarray(out.text_lengths).tolist()}, codec lengths "
          f"{np.asarray(out.codec_lengths).tolist()}; sampled vs teacher-forced log-probs, "
          f"max |diff| text {errors[0]:.2e}, codec {errors[1]:.2e}")
    assert np.asarray(out.codec_finished).any() and np.asarray(out.text_finished).any()
    assert np.asarray(out.codec_mask).sum() > 4 and np.asarray(out.text_mask).sum() > 4
    assert (np.asarray(out.codec_logprobs)[np.asarray(out.codec_mask)] < 0).all()
    assert max(errors) <= ATOL


def test_left_padding_changes_nothing(sampled):
    omni, (ids, mask, mel, mel_mask), settings, out = sampled
    extra = 3
    padded_ids = np.pad(ids, [(0, 0), (extra, 0)], constant_values=omni.config.thinker.pad_token_id)
    padded_mask = np.pad(mask, [(0, 0), (extra, 0)])
    again = sample(omni, padded_ids, padded_mask, jax.random.key(7), settings, mel, mel_mask,
                   prompt_bucket=0)  # exactly 3 more columns, whatever the bucket
    for name in ("text", "codes", "text_mask", "codec_mask", "text_lengths", "codec_lengths"):
        np.testing.assert_array_equal(getattr(again, name), getattr(out, name), err_msg=name)
    for name in ("text_logprobs", "codec_logprobs"):
        np.testing.assert_allclose(getattr(again, name), getattr(out, name), atol=ATOL,
                                   err_msg=name)


@pytest.mark.slow  # a second compilation, on an 8-device mesh
def test_sharded_model_samples_the_same(omni_reference, sampled):
    omni, (ids, mask, mel, mel_mask), settings, out = sampled
    if jax.device_count() < 8:
        pytest.skip("needs 8 devices (XLA_FLAGS=--xla_force_host_platform_device_count=8)")
    mesh = make_mesh(MeshConfig(data=2, fsdp=2, tensor=2))
    sharded = load_qwen_omni(omni_reference.directory, mesh)
    again = sample(sharded, ids, mask, jax.random.key(7), settings, mel, mel_mask)
    for name in ("text", "codes", "text_lengths", "codec_lengths"):
        np.testing.assert_array_equal(getattr(again, name), getattr(out, name), err_msg=name)
    np.testing.assert_allclose(again.codec_logprobs, out.codec_logprobs, atol=1e-4)
