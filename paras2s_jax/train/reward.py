"""The distilled reward model's input, loss and score (ParaS2S Stage 2).

The reward model is the policy architecture with LoRA adapters. It reads the prompt
streams, the reply columns and a short text suffix (e.g. "Score:"), and its text head
at the last position predicts the judge's Likert score as one character "1".."5".
Which reply channels it reads is its *view* (`reward.view`): "audio" (the speech codes
only, the default: the benchmark judge hears only the reply's speech, so an RM that
reads the text stream can be pleased by text the speech never says), "text" (the text
stream only) or "both". The view is recorded beside the RM checkpoint
(`reward_stage.VIEW_FILE`) and GRPO refuses to score under another one.
Training: cross-entropy over the full vocabulary on that digit token. Use: the
expected score sum_k k * p_k with p the softmax over the five digit tokens only.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from paras2s_jax.layout import Streams, build_reply, concat
from paras2s_jax.model.config import KimiAudioConfig

LIKERT = np.arange(1, 6, dtype=np.float32)
VIEWS = ("audio", "text", "both")


def check_view(view: str) -> str:
    """`view` if it is one of `VIEWS`, else a ValueError naming the config field."""
    if view not in VIEWS:
        raise ValueError(f"config.reward.view must be one of {VIEWS}, got {view!r}")
    return view


def reward_reply(
    text: Sequence[int], audio: Sequence[int], config: KimiAudioConfig, view: str
) -> Streams:
    """The reply columns the reward model reads under `view`: the unseen channel is
    left empty (a text EOS alone, or no speech codes before the audio end token)."""
    check_view(view)
    return build_reply(text if view != "audio" else (), audio if view != "text" else (), config)


def reward_input(
    prompt: Streams, reply: Streams, suffix_ids: Sequence[int], config: KimiAudioConfig
) -> Streams:
    """prompt + reply + the score suffix on the text stream (audio stream blank)."""
    n = len(suffix_ids)
    blank = np.full(n, config.special.text_blank, np.int32)
    suffix = Streams(
        text=np.asarray(suffix_ids, np.int32), audio=blank, text_mask=np.zeros(n, bool),
        audio_mask=np.zeros(n, bool), continuous=np.zeros(n, bool),
    )
    return concat(prompt, reply, suffix)


def digit_logits(text_logits: jax.Array, digit_ids: Sequence[int]) -> jax.Array:
    """float32[N, 5]: logits of the tokens "1".."5" at the last position (left padding)."""
    return jnp.take(text_logits[:, -1, :], jnp.asarray(digit_ids), axis=-1).astype(jnp.float32)


def expected_score(digits: jax.Array) -> jax.Array:
    """float32[N]: sum_k k * softmax(digit logits)_k, a reward in [1, 5]."""
    return jax.nn.softmax(digits, axis=-1) @ jnp.asarray(LIKERT)


def score_loss(
    text_logits: jax.Array, scores: jax.Array, digit_ids: Sequence[int]
) -> tuple[jax.Array, jax.Array]:
    """(sum, count) of cross-entropy on the score digit over the full vocabulary.

    scores: int[N] Likert scores 1..5 (0 marks a padding row, which is ignored).
    """
    last = text_logits[:, -1, :].astype(jnp.float32)
    targets = jnp.asarray(digit_ids)[jnp.clip(scores - 1, 0, 4)]
    nll = -jnp.take_along_axis(jax.nn.log_softmax(last, -1), targets[:, None], -1)[:, 0]
    valid = (scores >= 1).astype(jnp.float32)
    return jnp.sum(nll * valid), jnp.sum(valid)


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two score vectors (nan when either is constant)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])
