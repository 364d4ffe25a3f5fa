"""Chunked heads = the plain full-logits path (values and gradients, float32)."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from paras2s_jax.model import KimiAudio, tiny
from paras2s_jax.model.heads import token_logprobs
from paras2s_jax.sampling import token_logprobs as full_logprobs
from paras2s_jax.train.grpo import entropy as full_entropy
from paras2s_jax.train.sft import sft_loss, shifted_targets, token_ce


def _batch(mc, rows=3, length=13, seed=0):
    rng = np.random.default_rng(seed)
    text = rng.integers(0, mc.text_vocab_size, (rows, length)).astype(np.int32)
    audio = rng.integers(mc.audio_token_offset, mc.vocab_size, (rows, length)).astype(np.int32)
    mask = np.ones((rows, length), bool)
    mask[0, :4] = False
    return {"text": text, "audio": audio, "attention_mask": mask,
            "text_mask": rng.random((rows, length)) < 0.6,
            "audio_mask": rng.random((rows, length)) < 0.6,
            "continuous": np.zeros((rows, length), bool)}


def test_chunked_logprobs_and_entropy_equal_full_logits():
    mc = tiny(head_chunk=5)  # 13 positions: chunks of 5, 5 and a padded 3
    model = KimiAudio(mc, rngs=nnx.Rngs(0))
    b = _batch(mc)

    @nnx.jit
    def both(model, text, audio, mask, temp):
        hidden = model.hidden_states(text, audio, attention_mask=mask)
        chunked = token_logprobs(model.head("audio"), hidden.audio, audio, 0.7, 5, True)
        logits = model(text, audio, attention_mask=mask).audio_logits
        return chunked, (full_logprobs(logits, audio, 0.7), full_entropy(logits, 0.7))

    (lp, ent), (ref_lp, ref_ent) = both(model, b["text"], b["audio"], b["attention_mask"], 0.7)
    np.testing.assert_allclose(lp, ref_lp, atol=1e-5)
    np.testing.assert_allclose(ent, ref_ent, atol=1e-5)


def test_chunked_sft_loss_and_gradients_equal_full_logits():
    mc = tiny(head_chunk=4)
    model = KimiAudio(mc, rngs=nnx.Rngs(1))
    b = {k: jnp.asarray(v) for k, v in _batch(mc, seed=1).items()}

    def plain(model):
        out = model(b["text"], b["audio"], attention_mask=b["attention_mask"])
        total = 0.0
        for s, logits in (("text", out.text_logits), ("audio", out.audio_logits)):
            targets, mask = shifted_targets(b, s)
            total = total + token_ce(logits[:, :-1], targets, mask)[0]
        return total

    def chunked(model):
        return sum(v[0] for v in sft_loss(model, b).values())

    v1, g1 = nnx.jit(nnx.value_and_grad(plain))(model)
    v2, g2 = nnx.jit(nnx.value_and_grad(chunked))(model)
    np.testing.assert_allclose(float(v1), float(v2), rtol=1e-6)
    for a, c in zip(jax.tree.leaves(g1), jax.tree.leaves(g2), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(c), atol=1e-5)
