"""GRPO math against values computed by hand."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from paras2s_jax.train.grpo import (
    GRPOLossConfig,
    aggregate,
    clipped_objective,
    dual_stream_loss,
    group_advantages,
    group_spread,
    k3_kl,
)


def test_group_advantages_and_zero_spread_groups():
    adv, zero = group_advantages([1.0, 2.0, 3.0, 4.0, 2.0, 2.0, 2.0, 2.0], group_size=4)
    std = math.sqrt((1.5**2 + 0.5**2 + 0.5**2 + 1.5**2) / 3)  # ddof = 1
    expected = [-1.5 / std, -0.5 / std, 0.5 / std, 1.5 / std, 0.0, 0.0, 0.0, 0.0]
    np.testing.assert_allclose(adv, expected, rtol=1e-5)
    assert zero.tolist() == [False, True]
    # G = 2 with equal scores: the failure mode the paper names.
    adv2, zero2 = group_advantages([3.0, 3.0, 1.0, 5.0], group_size=2)
    assert zero2.tolist() == [True, False]
    np.testing.assert_allclose(adv2[2:], [-2 / (math.sqrt(8) + 1e-6), 2 / (math.sqrt(8) + 1e-6)],
                               rtol=1e-5)


def test_group_spread_by_hand():
    # Integer scores, G = 2: (3, 3) carries no signal, (1, 5) does.
    stats = group_spread([3.0, 3.0, 1.0, 5.0], group_size=2)
    assert stats["zero_spread_groups"] == 0.5
    assert stats["reward_group_std"] == pytest.approx((0 + math.sqrt(8)) / 2)
    assert stats["advantage_abs_mean"] == pytest.approx(2 * (2 / math.sqrt(8)) / 4, rel=1e-5)
    stats = group_spread([1.0, 2.0, 3.0, 4.0], group_size=4)
    std = math.sqrt(5 / 3)
    assert stats["zero_spread_groups"] == 0.0
    assert stats["reward_group_std"] == pytest.approx(std)
    assert stats["advantage_abs_mean"] == pytest.approx((1.5 + 0.5 + 0.5 + 1.5) / 4 / std,
                                                        rel=1e-5)


def test_k3_kl_by_hand():
    logp, ref = jnp.log(jnp.array([0.5, 0.3])), jnp.log(jnp.array([0.25, 0.3]))
    # delta = log(0.25/0.5) = -log 2: exp(delta) - delta - 1 = 0.5 + log 2 - 1
    np.testing.assert_allclose(k3_kl(logp, ref), [0.5 + math.log(2) - 1, 0.0], atol=1e-6)
    assert float(k3_kl(jnp.array([0.0]), jnp.array([-100.0]))[0]) == pytest.approx(
        math.exp(-20) + 20 - 1)  # clamped at 20


def test_clipping_by_hand():
    logp = jnp.log(jnp.array([[1.5, 1.5, 0.5]]))
    old = jnp.zeros((1, 3))
    loss_pos, clipped_pos = clipped_objective(logp, old, jnp.array([1.0]), 0.2)
    np.testing.assert_allclose(loss_pos, [[-1.2, -1.2, -0.5]], rtol=1e-6)
    assert clipped_pos.tolist() == [[True, True, False]]
    loss_neg, clipped_neg = clipped_objective(logp, old, jnp.array([-1.0]), 0.2)
    np.testing.assert_allclose(loss_neg, [[1.5, 1.5, 0.8]], rtol=1e-6)
    assert clipped_neg.tolist() == [[False, False, True]]


def test_aggregation_modes_by_hand():
    values = jnp.array([[1.0, 2.0, 3.0, 1e9], [4.0, 1e9, 1e9, 1e9]])
    mask = jnp.array([[1, 1, 1, 0], [1, 0, 0, 0]], bool)
    s, d = aggregate(values, mask, "token_mean")
    assert float(s) == 10.0 and float(d) == 4.0  # (1+2+3+4)/4
    s, d = aggregate(values, mask, "sequence_mean")
    assert float(s) == pytest.approx(2.0 + 4.0) and float(d) == 2.0  # mean(2, 4)


def test_dual_stream_loss_masks_padding_in_both_streams():
    cfg = GRPOLossConfig(beta_text=0.2, beta_audio=0.5, weight_audio=2.0)
    n, t = 2, 5
    rng = np.random.default_rng(0)
    lp = {s: jnp.asarray(np.log(rng.uniform(0.1, 0.9, (n, t))), jnp.float32)
          for s in ("text", "audio")}
    old = {s: v - 0.05 for s, v in lp.items()}
    ref = {s: v - 0.3 for s, v in lp.items()}
    masks = {"text": jnp.array([[1, 1, 0, 0, 0], [1, 1, 1, 0, 0]], bool),
             "audio": jnp.array([[0, 0, 1, 1, 1], [0, 0, 0, 1, 0]], bool)}
    adv = jnp.array([1.0, -1.0])
    loss, metrics = dual_stream_loss(lp, old, ref, masks, adv, cfg)

    # Garbage under the masks changes nothing.
    junk = {s: jnp.where(masks[s], v, 123.0) for s, v in lp.items()}
    loss_junk, _ = dual_stream_loss(junk, old, ref, masks, adv, cfg)
    assert float(loss_junk) == pytest.approx(float(loss), rel=1e-6)

    # By hand: ratio = e^0.05 (< 1.2, unclipped); k3 with delta = -0.3.
    r, k3 = math.exp(0.05), math.exp(-0.3) + 0.3 - 1
    text = (2 * (-r + 0.2 * k3) + 3 * (r + 0.2 * k3)) / 5
    audio = (3 * (-r + 0.5 * k3) + 1 * (r + 0.5 * k3)) / 4
    assert float(loss) == pytest.approx(text + 2.0 * audio, rel=1e-5)
    assert float(metrics["kl_audio"]) == pytest.approx(k3, rel=1e-5)
    assert float(metrics["tokens_text"]) == 5 and float(metrics["clip_fraction_text"]) == 0.0


def test_bad_aggregation_is_named():
    with pytest.raises(ValueError, match="aggregation"):
        GRPOLossConfig(aggregation="mean")


def _loss_inputs(seed=0, n=3, t=6):
    rng = np.random.default_rng(seed)
    lp = {s: jnp.asarray(np.log(rng.uniform(0.05, 0.9, (n, t))), jnp.float32)
          for s in ("text", "audio")}
    ref = {s: v + jnp.asarray(rng.normal(0, 0.4, (n, t)), jnp.float32) for s, v in lp.items()}
    masks = {s: jnp.asarray(rng.random((n, t)) < 0.7) for s in ("text", "audio")}
    adv = jnp.asarray(rng.normal(0, 1, n), jnp.float32)
    return lp, ref, masks, adv


@pytest.mark.parametrize("how", ["token_mean", "sequence_mean"])
def test_gradient_with_one_update_per_rollout_matches_the_hand_derivation(how):
    """old = stop_gradient(logp): d/dlogp = w_s m (-A + beta_s (1 - e^(ref - logp))) / norm."""
    cfg = GRPOLossConfig(beta_text=0.2, beta_audio=0.5, weight_audio=2.0, aggregation=how)
    lp, ref, masks, adv = _loss_inputs()
    grads = jax.grad(lambda x: dual_stream_loss(x, None, ref, masks, adv, cfg)[0])(lp)
    for s in ("text", "audio"):
        m = np.asarray(masks[s], np.float64)
        if how == "token_mean":
            norm = np.full_like(m, m.sum())
        else:  # each reply's token count, times the number of replies with tokens
            norm = m.sum(1, keepdims=True) * (m.sum(1) > 0).sum() + (m.sum(1, keepdims=True) == 0)
        delta = np.asarray(ref[s], np.float64) - np.asarray(lp[s], np.float64)
        per_token = -np.asarray(adv)[:, None] + cfg.beta(s) * (1 - np.exp(delta))
        expected = cfg.weight(s) * m * per_token / norm
        np.testing.assert_allclose(np.asarray(grads[s]), expected, rtol=2e-4, atol=1e-7)


def test_gradient_with_old_logprobs_matches_finite_differences():
    """mu > 1 (old given, some ratios clipped): autodiff = central differences."""
    cfg = GRPOLossConfig(beta_text=0.3, beta_audio=0.1, clip_eps=0.2)
    lp, ref, masks, adv = _loss_inputs(seed=1)
    rng = np.random.default_rng(2)
    # Ratios e^{+-0.5} (clipped for one sign of A) and e^{+-0.05}, away from the kinks.
    shift = rng.choice([-0.5, -0.05, 0.05, 0.5], size=lp["text"].shape)
    old = {s: v - jnp.asarray(shift, jnp.float32) for s, v in lp.items()}

    def f(x):
        return dual_stream_loss(x, old, ref, masks, adv, cfg)[0]

    grads = jax.grad(f)(lp)
    clipped = dual_stream_loss(lp, old, ref, masks, adv, cfg)[1]["clip_fraction_text"]
    assert 0 < float(clipped) < 1
    for s in ("text", "audio"):
        direction = {k: jnp.asarray(rng.normal(size=v.shape), jnp.float32) * (k == s)
                     for k, v in lp.items()}
        eps = 1e-3
        plus = f({k: v + eps * direction[k] for k, v in lp.items()})
        minus = f({k: v - eps * direction[k] for k, v in lp.items()})
        numeric = (float(plus) - float(minus)) / (2 * eps)
        analytic = float(jnp.sum(grads[s] * direction[s]))
        assert analytic == pytest.approx(numeric, rel=2e-2, abs=1e-4)


def test_a_huge_log_ratio_keeps_loss_and_gradient_finite():
    cfg = GRPOLossConfig()
    logp = {s: jnp.zeros((1, 2)) for s in ("text", "audio")}
    old = {s: jnp.array([[-200.0, 0.0]]) for s in ("text", "audio")}
    masks = {s: jnp.ones((1, 2), bool) for s in ("text", "audio")}
    for a in (1.0, -1.0):
        f = lambda x, a=a: dual_stream_loss(x, old, logp, masks, jnp.array([a]), cfg)[0]  # noqa: E731
        value, grads = jax.value_and_grad(f)(logp)
        assert np.isfinite(float(value))
        assert all(np.isfinite(np.asarray(g)).all() for g in grads.values())
