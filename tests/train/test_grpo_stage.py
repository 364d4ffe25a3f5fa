"""One GRPO stage step on a tiny model: pairing, advantages, old/ref log-probs, mu > 1."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs import grpo as grpo_configs
from paras2s_jax import layout
from paras2s_jax.train import grpo_models, trainer
from paras2s_jax.train.grpo_stage import rollout_step, update_step
from paras2s_jax.train.grpo_update import build_step, per_update_schedule, sampling_config
from paras2s_jax.train.optim import schedule

G, PLANTED = 4, 1 * 4 + 2  # prompt 1, sample 2


def _config(tmp_path, **grpo):
    c = grpo_configs.get_config("toy")
    c.workdir = str(tmp_path)
    c.init.source = "fresh"
    c.optimizer.lr, c.optimizer.warmup_steps, c.optimizer.decay_steps = 3e-3, 0, 10
    c.grpo.group_size, c.grpo.query_batch = G, 2
    c.grpo.sampling.max_new_tokens = 10
    c.grpo.truncated = "keep"
    for k, v in grpo.items():
        setattr(c.grpo, k, v)
    return c


def _records():
    rng = np.random.default_rng(0)
    return [{"id": f"p{i}", "prompt_audio": rng.integers(0, 256, n).tolist()}
            for i, n in enumerate((5, 8))]


@nnx.jit
def _forward(model, text, audio):
    return model(text, audio)


def _own_logprob(model, record, out, row, sampling):
    """log p(reply of `row` | its own prompt), from a sequence built here, not by rollout."""
    mc = model.config
    n = int(out.text_mask.shape[1])
    prompt = layout.record_prompt(record, mc)
    seq_text = np.concatenate([prompt.text, np.asarray(out.text[row, :n])])[None]
    seq_audio = np.concatenate([prompt.audio, np.asarray(out.audio[row, :n])])[None]
    res = _forward(model, jnp.asarray(seq_text), jnp.asarray(seq_audio))
    p = len(prompt)
    total = 0.0
    for s, logits, temp in (("text", res.text_logits, sampling.text_temperature),
                            ("audio", res.audio_logits, sampling.audio_temperature)):
        lp = jax.nn.log_softmax(logits[0, p - 1:p - 1 + n] / temp, -1)
        tokens = np.asarray(getattr(out, s)[row, :n])
        mask = np.asarray(getattr(out, f"{s}_mask")[row, :n])
        total += float(jnp.sum(jnp.take_along_axis(lp, tokens[:, None], -1)[:, 0] * mask))
    return total


@pytest.fixture(scope="module")
def step_result(tmp_path_factory):
    cfg = _config(tmp_path_factory.mktemp("grpo"), updates_per_rollout=2)
    run = trainer.setup(per_update_schedule(cfg), jax.devices()[:1])  # the step, not the mesh
    sampling = sampling_config(cfg)
    records = _records()
    captured = {}

    def planted(prompts, out, group):
        """5 for one reply of prompt 1 (found by its prompt stream), 1 elsewhere."""
        streams = prompts.layouts
        captured["out"], captured["streams"] = out, streams
        own = layout.record_prompt(records[1], run.model_config).audio
        rewards = np.ones(out.text.shape[0], np.float32)
        for r in range(len(rewards)):
            if r % G == PLANTED % G and np.array_equal(streams[r // G].audio, own):
                rewards[r] = 5.0
        return rewards

    def judge(recs, out):
        """Integer scores of the same replies: 4 for prompt 0's, 2 then 3s for prompt 1's."""
        captured["judged"] = [r["id"] for r in recs]
        return np.asarray([4] * G + [2] + [3] * (G - 1), np.float32)

    batch, diag = rollout_step(cfg, run, records, jax.random.key(3), sampling, planted,
                               judge)
    out = captured["out"]
    before = nnx.merge(run.graphdef, jax.tree.map(jnp.copy, run.state["params"]), run.rest)
    lp_before = [_own_logprob(before, records[r // G], out, r, sampling) for r in range(2 * G)]
    reference = grpo_models.reference_params(run, False)
    metrics = update_step(cfg, run, batch, build_step(cfg, run, sampling),
                          grpo_models.build_log_probs(run, sampling), reference)
    lp_after = [_own_logprob(run.model(), records[r // G], out, r, sampling)
                for r in range(2 * G)]
    return dict(cfg=cfg, run=run, batch=batch, diag=diag, out=out, metrics=metrics,
                judged=captured["judged"],
                records=records, before=np.asarray(lp_before), after=np.asarray(lp_after))


def test_planted_reward_reaches_its_row_and_pushes_its_reply_up(step_result):
    r = step_result
    adv = r["batch"]["advantages"]
    assert np.all(adv[:G] == 0.0)  # prompt 0: all rewards equal
    assert r["diag"]["zero_spread_groups"] == 0.5
    assert r["diag"]["reward_group_std"] == pytest.approx(np.std([1, 1, 1, 5], ddof=1) / 2)
    # The judge's scores of the same replies give their own statistics, not the reward.
    assert r["judged"] == ["p0", "p1"]
    assert r["diag"]["judge_zero_spread_groups"] == 0.5
    assert r["diag"]["judge_reward_mean"] == pytest.approx((4 * G + 2 + 3 * (G - 1)) / (2 * G))
    assert r["diag"]["judge_reward_group_std"] == pytest.approx(np.std([2, 3, 3, 3], ddof=1) / 2)
    mates = [i for i in range(G, 2 * G) if i != PLANTED]
    std = np.std([1, 1, 1, 5], ddof=1)
    assert adv[PLANTED] == pytest.approx(3 / std, rel=1e-5)
    assert adv[PLANTED] == adv.max()
    np.testing.assert_allclose(adv[mates], -1 / std, rtol=1e-5)
    # The rollout row holds its own prompt and its own reply.
    p = r["batch"]["text"].shape[1] - r["out"].text.shape[1]
    for row in range(2 * G):
        prompt = layout.record_prompt(r["records"][row // G], r["run"].model_config)
        np.testing.assert_array_equal(r["batch"]["audio"][row, p - len(prompt):p],
                                      prompt.audio)
        np.testing.assert_array_equal(r["batch"]["audio"][row, p:], r["out"].audio[row])
    # Update direction: the planted reply gains probability under its own prompt, more
    # than any of its group mates (which had negative advantages).
    gain = r["after"] - r["before"]
    assert gain[PLANTED] > 0 and gain[PLANTED] > max(gain[mates])


def test_mu_updates_use_old_logprobs_and_average_their_metrics(step_result):
    r = step_result
    run, batch, m = r["run"], r["batch"], r["metrics"]
    assert int(run.state["step"]) == 2  # two optimizer updates on one rollout
    for s in ("text", "audio"):  # before the first update, old = the reference policy
        mask = batch[f"{s}_mask"]
        np.testing.assert_allclose(batch[f"old_{s}_logprobs"][mask],
                                   batch[f"ref_{s}_logprobs"][mask], atol=1e-5)
    # lr averaged over the two updates (the schedule counts updates, 0 warm-up here).
    sched = schedule(trainer.optimizer_config(per_update_schedule(r["cfg"]).optimizer))
    assert m["lr"] == pytest.approx((float(sched(0)) + float(sched(1))) / 2, rel=1e-6)
    for key in ("kl_text", "kl_audio", "entropy_text", "clip_fraction_audio", "loss"):
        assert np.isfinite(m[key])
    assert m["kl_text"] > 0  # the second update is away from the reference

