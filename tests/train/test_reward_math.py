"""Reward-model input, loss and expected score by hand."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from paras2s_jax.layout import Message, build_prompt, build_reply
from paras2s_jax.model import tiny
from paras2s_jax.train.reward import (
    digit_logits,
    expected_score,
    pearson,
    reward_input,
    score_loss,
)

DIGITS = [10, 11, 12, 13, 14]


def test_expected_score_by_hand():
    assert float(expected_score(jnp.zeros((1, 5)))[0]) == pytest.approx(3.0)
    sure_five = jnp.array([[0.0, 0.0, 0.0, 0.0, 50.0]])
    assert float(expected_score(sure_five)[0]) == pytest.approx(5.0, abs=1e-6)
    two_way = jnp.array([[math.log(3.0), math.log(1.0), -1e9, -1e9, -1e9]])  # p = (.75, .25)
    assert float(expected_score(two_way)[0]) == pytest.approx(0.75 * 1 + 0.25 * 2)


def test_score_loss_is_cross_entropy_on_the_digit():
    logits = np.zeros((3, 4, 20), np.float32)
    logits[0, -1, DIGITS[3]] = 2.0  # score 4 favoured
    scores = jnp.array([4, 1, 0])  # the last row is padding
    total, count = score_loss(jnp.asarray(logits), scores, DIGITS)
    row0 = -(2.0 - math.log(19 + math.exp(2.0)))
    row1 = math.log(20.0)
    assert float(count) == 2.0
    assert float(total) == pytest.approx(row0 + row1, rel=1e-5)
    np.testing.assert_allclose(digit_logits(jnp.asarray(logits), DIGITS)[0], [0, 0, 0, 2, 0])


def test_reward_input_layout():
    cfg = tiny()
    prompt = build_prompt([Message("user", audio=(1, 2, 3))], cfg)
    reply = build_reply([5, 6], [7, 8, 9], cfg)
    seq = reward_input(prompt, reply, [40, 41], cfg)
    assert len(seq) == len(prompt) + len(reply) + 2
    assert seq.text[-2:].tolist() == [40, 41]
    assert (seq.audio[-2:] == cfg.special.text_blank).all()


def test_pearson():
    assert pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert math.isnan(pearson([1, 1, 1], [1, 2, 3]))
