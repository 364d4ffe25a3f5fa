"""GRPO math against values computed by hand."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from paras2s_jax.train.grpo import (
    GRPOLossConfig,
    aggregate,
    clipped_objective,
    dual_stream_loss,
    group_advantages,
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
