"""Rollout batches line up with the sampler; reward scores are expected Likert values."""

import jax
import numpy as np
from flax import nnx

from paras2s_jax.layout import Message, build_prompt
from paras2s_jax.model import KimiAudio, tiny
from paras2s_jax.sampling import SamplingConfig, generate
from paras2s_jax.train.rollout import pad_prompts, reply_logprobs, rollout_batch, score_replies


def test_rollout_logprobs_match_the_sampler_and_rewards_are_likert():
    cfg = tiny()
    model = KimiAudio(cfg, rngs=nnx.Rngs(0))
    streams = [build_prompt([Message("user", audio=tuple(range(n)))], cfg) for n in (3, 7)]
    sampling = SamplingConfig(max_new_tokens=12, text_temperature=1.0, text_top_k=0,
                              audio_temperature=0.7, num_samples=3)
    prompts = pad_prompts(streams, sampling.prompt_bucket, cfg.special.pad)
    out = generate(model, prompts, jax.random.key(0), sampling)
    batch = rollout_batch(prompts, out, group=3)
    assert batch["text"].shape == (6, prompts["text"].shape[1] + 12)

    lp = nnx.jit(lambda m, b: reply_logprobs(m, b, sampling, with_entropy=True))(model, batch)
    for s in ("text", "audio"):
        mask = batch[f"{s}_mask"]
        assert mask.any()
        np.testing.assert_allclose(np.asarray(lp[s])[mask], batch[f"old_{s}_logprobs"][mask],
                                   atol=1e-5)
        assert np.all(np.asarray(lp[f"entropy_{s}"]) > 0)

    scores = score_replies(model, streams, out, 3, suffix_ids=[40, 41],
                           digit_ids=[50, 51, 52, 53, 54])
    assert scores.shape == (6,) and np.all((scores >= 1) & (scores <= 5))
    assert len(set(np.round(scores, 6))) > 1
