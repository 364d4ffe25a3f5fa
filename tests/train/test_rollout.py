"""Rollout batches line up with the sampler; rewards are the RM's expected Likert score."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from paras2s_jax import layout
from paras2s_jax.layout import Message, build_prompt
from paras2s_jax.model import KimiAudio, tiny
from paras2s_jax.sampling import SamplingConfig, generate
from paras2s_jax.train.reward import reward_input
from paras2s_jax.train.rollout import pad_prompts, reply_logprobs, rollout_batch, score_replies


@pytest.mark.parametrize("group", [1, 3], ids=["every_row", "prompt_once_per_group"])
def test_rollout_logprobs_match_the_sampler_and_rewards_are_expected_scores(group):
    cfg = tiny()
    model = KimiAudio(cfg, rngs=nnx.Rngs(0))
    streams = [build_prompt([Message("user", audio=tuple(range(n)))], cfg) for n in (3, 7)]
    sampling = SamplingConfig(max_new_tokens=12, text_temperature=1.0, text_top_k=0,
                              audio_temperature=0.7, num_samples=3)
    prompts = pad_prompts(streams, sampling.prompt_bucket, cfg.special.pad)
    out = generate(model, prompts, jax.random.key(0), sampling)
    batch = rollout_batch(prompts, out, group=3)
    assert batch["text"].shape == (6, prompts["text"].shape[1] + 12)

    lp = nnx.jit(lambda m, b: reply_logprobs(m, b, sampling, True, group))(model, batch)
    full = model(batch["text"], batch["audio"], attention_mask=batch["attention_mask"])
    p = prompts["text"].shape[1]
    for s, logits, temp in (("text", full.text_logits, 1.0), ("audio", full.audio_logits, 0.7)):
        mask = batch[f"{s}_mask"]
        assert mask.any()
        np.testing.assert_allclose(np.asarray(lp[s])[mask],
                                   batch[f"sampler_{s}_logprobs"][mask], atol=1e-5)
        # Entropy of softmax(logits / T) at the predicting columns, by hand.
        z = np.asarray(logits[:, p - 1:p - 1 + 12], np.float64) / temp
        logq = z - z.max(-1, keepdims=True)
        logq -= np.log(np.exp(logq).sum(-1, keepdims=True))
        np.testing.assert_allclose(np.asarray(lp[f"entropy_{s}"]),
                                   -(np.exp(logq) * logq).sum(-1), rtol=1e-4)

    digits = [50, 51, 52, 53, 54]
    scores = score_replies(model, streams, out, 3, suffix_ids=[40, 41], digit_ids=digits,
                           view="both")
    # Each row's score by hand: its own prompt + its parsed reply + suffix, alone.
    for row in range(6):
        reply = layout.build_reply(*layout.parse_reply(out.text[row], out.audio[row], cfg), cfg)
        seq = reward_input(streams[row // 3], reply, [40, 41], cfg)
        z = np.asarray(model(seq.text[None], seq.audio[None]).text_logits[0, -1, digits],
                       np.float64)
        p_k = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
        assert abs(scores[row] - np.dot(p_k, np.arange(1, 6))) < 1e-4


@pytest.mark.parametrize("mimo", [0, 2], ids=["text_only", "two_streams"])
def test_shared_prompt_forward_equals_every_row_forward_with_gradients(mimo):
    """A prompt's columns run once for its G rows (`group`): log-probs, entropies and
    every parameter's gradient equal those of the forward over every row, with left
    padding that differs between prompts and masked reply columns."""
    cfg = tiny(mimo_layers=mimo)
    model = KimiAudio(cfg, rngs=nnx.Rngs(0))
    rng = np.random.default_rng(0)
    prompts, g, p, t = 3, 4, 7, 5
    prompt = rng.integers(1, 200, (prompts, p))
    prompt_mask = np.ones((prompts, p), bool)
    prompt_mask[0, :2] = prompt_mask[1, :1] = False
    reply = rng.integers(1, 200, (prompts * g, t))
    reply_mask = rng.random((prompts * g, t)) > 0.2
    batch = {"text": np.concatenate([np.repeat(prompt, g, 0), reply], 1).astype(np.int32),
             "audio": np.concatenate([np.repeat(prompt + 3, g, 0), reply + 5], 1)
             .astype(np.int32),
             "attention_mask": np.concatenate([np.repeat(prompt_mask, g, 0), reply_mask], 1),
             "text_mask": reply_mask, "audio_mask": reply_mask}
    sampling = SamplingConfig(max_new_tokens=t, text_temperature=1.0, audio_temperature=0.9)
    every, shared = (reply_logprobs(model, batch, sampling, True, n) for n in (1, g))
    for k in every:
        np.testing.assert_allclose(np.asarray(shared[k]), np.asarray(every[k]), atol=1e-5)

    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def objective(params, group):
        out = reply_logprobs(nnx.merge(graphdef, params, rest), batch, sampling, False, group)
        return jnp.sum(out["text"] * reply_mask) + jnp.sum(out["audio"] * reply_mask)

    grads = [jax.grad(objective, argnums=0)(params, n) for n in (1, g)]
    flat = [dict(nnx.to_flat_state(x)) for x in grads]
    assert flat[0].keys() == flat[1].keys()
    compared = 0
    for path, a in flat[0].items():
        a, b = np.asarray(a.get_value()), np.asarray(flat[1][path].get_value())
        scale = float(np.abs(a).max())  # 0: unused here (the Whisper adaptor)
        np.testing.assert_allclose(b, a, atol=1e-5 * scale, err_msg=str(path))
        compared += scale > 0
    assert compared >= 10 * (cfg.num_layers + mimo)  # every layer's weights took part
