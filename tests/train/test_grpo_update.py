"""The GRPO step training runs has `dual_stream_loss` as its objective: on a rollout batch,
the jitted step's loss and gradient norm (shared-prompt forward, 2 accumulated
micro-batches, betas and weights read from the config) equal `dual_stream_loss` of a
plain forward's reply log-probabilities with the coefficients written out here."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs import grpo as grpo_configs
from paras2s_jax.train import trainer
from paras2s_jax.train.grpo import GRPOLossConfig, dual_stream_loss
from paras2s_jax.train.grpo_stage import rollout_step
from paras2s_jax.train.grpo_update import build_step, prompt_rows, sampling_config
from paras2s_jax.train.rollout import reply_logprobs

G, QUERIES, STREAMS = 2, 2, ("text", "audio")
# Coefficients unlike the defaults, so a field the training path does not read shows.
COEFFS = dict(clip_eps=0.1, beta_text=0.3, beta_audio=0.7, weight_text=0.8, weight_audio=1.5)


def _config(tmp_path, aggregation):
    c = grpo_configs.get_config("toy")
    c.workdir, c.init.source = str(tmp_path), "fresh"
    c.grpo.group_size, c.grpo.query_batch = G, QUERIES
    c.grpo.sampling.max_new_tokens = 8
    c.grpo.truncated = "keep"
    c.grpo.aggregation = aggregation
    c.optimizer.accum_steps = 2  # each micro-batch divides by the whole batch's counts
    for k, v in COEFFS.items():
        setattr(c.grpo, k, v)
    return c


def _records():
    rng = np.random.default_rng(0)
    return [{"id": f"p{i}", "prompt_audio": rng.integers(0, 256, n).tolist()}
            for i, n in enumerate((5, 7))]


@pytest.fixture(scope="module")
def rollout(tmp_path_factory):
    """A rollout batch of a fresh tiny policy with rewards set here, a reference away
    from the policy (KL > 0) and an older rollout policy whose ratios leave the clip
    range (used as "old" when mu > 1)."""
    cfg = _config(tmp_path_factory.mktemp("grpo"), "token_mean")
    run = trainer.setup(cfg, jax.devices()[:1])
    sampling = sampling_config(cfg)
    rewards = np.asarray([1.0, 4.0, 2.0, 5.0], np.float32)
    batch, _ = rollout_step(cfg, run, _records(), jax.random.key(1), sampling,
                            lambda prompts, out, group: rewards)
    assert np.abs(batch["advantages"]).min() > 0.5  # every row carries policy gradient
    rng = np.random.default_rng(2)
    for name, spread in (("ref", 0.3), ("old", 0.2)):
        for s in STREAMS:
            batch[f"{name}_{s}_logprobs"] = batch[f"sampler_{s}_logprobs"] + rng.normal(
                0, spread, batch[f"{s}_mask"].shape).astype(np.float32)
    return run, sampling, batch


@pytest.mark.parametrize("aggregation,with_old", [
    ("token_mean", True), pytest.param("sequence_mean", False, marks=pytest.mark.slow)])
def test_training_step_objective_is_dual_stream_loss(rollout, tmp_path, aggregation,
                                                     with_old):
    run, sampling, batch = rollout
    cfg = _config(tmp_path, aggregation)
    if not with_old:  # one update per rollout: old = stop_gradient(logp) in the loss
        batch = {k: v for k, v in batch.items() if not k.startswith("old_")}
    ref = {s: batch[f"ref_{s}_logprobs"] for s in STREAMS}
    old = {s: batch[f"old_{s}_logprobs"] for s in STREAMS} if with_old else None
    masks = {s: batch[f"{s}_mask"] for s in STREAMS}
    assert all(m.any() for m in masks.values())
    by_hand = GRPOLossConfig(aggregation=aggregation, **COEFFS)

    def expected(params):
        logps = reply_logprobs(nnx.merge(run.graphdef, params, run.rest), batch, sampling)
        return dual_stream_loss(logps, old, ref, masks, batch["advantages"], by_hand)

    (loss, parts), grads = jax.jit(jax.value_and_grad(expected, has_aux=True))(
        run.state["params"])
    assert float(parts["kl_text"]) > 1e-3 and float(parts["kl_audio"]) > 1e-3
    if with_old:
        assert float(parts["clip_fraction_text"]) > 0 and float(parts["clip_fraction_audio"]) > 0
    grad_norm = float(np.sqrt(sum(np.sum(np.square(g)) for g in jax.tree.leaves(grads))))

    assert prompt_rows(cfg, cfg.optimizer.accum_steps) == G  # the shared-prompt forward
    state = jax.tree.map(jnp.copy, run.state)  # the step donates its state
    _, metrics = build_step(cfg, run, sampling)(state, batch, run.rest)
    assert float(metrics["loss"]) == pytest.approx(float(loss), rel=1e-5, abs=1e-6)
    assert float(metrics["grad_norm"]) == pytest.approx(grad_norm, rel=1e-4)
