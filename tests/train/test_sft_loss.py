"""SFT loss masking against hand-computed values."""

import math
import types

import jax.numpy as jnp
import numpy as np
from flax import nnx

from paras2s_jax import layout
from paras2s_jax.model import tiny
from paras2s_jax.model.layers import Dense
from paras2s_jax.train.sft import sft_counts, sft_loss, token_ce


def test_token_ce_hand_computed():
    # V = 2; logits (0, log 3): p = (1/4, 3/4)
    logits = jnp.array([[[0.0, math.log(3.0)], [0.0, math.log(3.0)], [5.0, 5.0]]])
    targets = jnp.array([[0, 1, 0]])
    mask = jnp.array([[True, True, False]])
    total, count = token_ce(logits, targets, mask)
    np.testing.assert_allclose(float(total), math.log(4) + math.log(4 / 3), rtol=1e-6)
    assert float(count) == 2.0


class FixedModel:
    """Stands in for KimiAudio: logits that put log-prob log(1/2) on `hot`, rest uniform.

    Its hidden states are those logits and both heads are the identity, so the chunked
    heads of the SFT loss see exactly these logits.
    """

    def __init__(self, vocab: int, hot_text: np.ndarray, hot_audio: np.ndarray):
        self.vocab, self.hot_text, self.hot_audio = vocab, hot_text, hot_audio
        self.config = tiny(head_chunk=4)  # several chunks per row
        self.identity = Dense((vocab,), (vocab,), ("embed", "vocab"), use_bias=False,
                              param_dtype=jnp.float32, rngs=nnx.Rngs(0))
        self.identity.kernel[...] = jnp.eye(vocab, dtype=jnp.float32)

    def head(self, stream):
        return self.identity

    def hidden_states(self, text, audio, attention_mask=None):
        return types.SimpleNamespace(text=self._logits(self.hot_text),
                                     audio=self._logits(self.hot_audio))

    def _logits(self, hot):
        b, n = hot.shape
        # one-hot bump of size log(V - 1): p(hot) = (V-1)/(2(V-1)) = 1/2
        x = np.zeros((b, n, self.vocab), np.float32)
        np.put_along_axis(x, hot[..., None], math.log(self.vocab - 1), axis=-1)
        return jnp.asarray(x)


def test_sft_loss_counts_only_chosen_reply_tokens_shifted_by_one():
    mc = tiny()
    prompt = layout.build_prompt([layout.Message("user", audio=(5, 6))], mc)
    reply = layout.build_reply([10, 11], [20, 21, 22], mc)
    seq = layout.concat(prompt, reply)
    n = len(seq)
    batch = layout.right_pad([seq], n + 3, mc.special.pad)  # 3 padding columns
    # Model predicts each next text token with p = 1/2 except one wrong guess; audio exact-ish.
    nxt_text = np.roll(batch["text"], -1, axis=1)
    nxt_audio = np.roll(batch["audio"], -1, axis=1)
    p = len(prompt)
    wrong = nxt_text.copy()
    wrong[0, p] = 0  # position p predicts reply text token 1 (11) -> wrong guess
    model = FixedModel(mc.vocab_size, wrong, nxt_audio)
    terms = sft_loss(model, {k: jnp.asarray(v) for k, v in batch.items()})

    # Text loss tokens: reply text t0, t1, eos = 3 (t0 is predicted from the last prompt column).
    assert float(terms["text"][1]) == 3
    # Audio loss tokens: 3 codes + msg_end.
    assert float(terms["audio"][1]) == 4
    half = math.log(2.0)
    # wrong guess: p(target) = 1 / (2 (V - 1))
    miss = math.log(2.0 * (mc.vocab_size - 1))
    np.testing.assert_allclose(float(terms["text"][0]), 2 * half + miss, rtol=1e-5)
    np.testing.assert_allclose(float(terms["audio"][0]), 4 * half, rtol=1e-5)
    counts = sft_counts({k: jnp.asarray(v) for k, v in batch.items()})
    assert float(counts["text"]) == 3 and float(counts["audio"]) == 4


def test_padding_rows_and_masked_attention_carry_no_loss():
    mc = tiny()
    seq = layout.concat(layout.build_prompt([layout.Message("user", audio=(1,))], mc),
                        layout.build_reply([3], [4], mc))
    batch = layout.right_pad([seq], len(seq), mc.special.pad)
    batch = {k: np.concatenate([v, v]) for k, v in batch.items()}
    batch["attention_mask"][1] = False  # row 1: a filler row (masks set, attention off)
    counts = sft_counts({k: jnp.asarray(v) for k, v in batch.items()})
    assert float(counts["text"]) == 2 and float(counts["audio"]) == 2
