"""The thinker language model against transformers' Qwen2.5-Omni thinker, float32, padded."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from flax import nnx

from paras2s_jax.model.qwen_omni.checkpoint import load_thinker
from paras2s_jax.model.qwen_omni.config import ThinkerTextConfig
from paras2s_jax.model.qwen_omni.decoder import OmniCache
from tests.model.qwen_omni.conftest import audio_prompt, left_padded

TOL = 1e-4


def _batch(c: ThinkerTextConfig, seed: int = 0):
    """Left-padded rows with 0, 1 and 2 audio segments, and their audio embeddings."""
    rng = np.random.default_rng(seed)
    rows = [audio_prompt(rng, c, [3, 4]), audio_prompt(rng, c, [], text=4),
            audio_prompt(rng, c, [5], text=2)]
    ids, mask = left_padded(rows, c.pad_token_id)
    count = int((ids == c.audio_token_index).sum())
    audio = rng.standard_normal((count, c.hidden_size)).astype(np.float32)
    return ids, mask, audio


def _reference(ref, ids, mask, audio):
    """transformers' logits, final hidden states and input embeddings (audio scattered
    into the placeholder embeddings as its thinker does), positions from get_rope_index."""
    thinker = ref.thinker
    t_ids, t_mask = torch.tensor(ids), torch.tensor(mask.astype(np.int64))
    with torch.no_grad():
        embeds = thinker.get_input_embeddings()(t_ids)
        audio_mask = (t_ids == thinker.config.audio_token_id)[..., None].expand_as(embeds)
        embeds = embeds.masked_scatter(audio_mask, torch.tensor(audio))
        positions, _ = thinker.get_rope_index(t_ids, attention_mask=t_mask)
        out = thinker.model.language_model(inputs_embeds=embeds, attention_mask=t_mask,
                                           position_ids=positions)
        hidden = out.last_hidden_state
        logits = thinker.lm_head(hidden)
    return logits.numpy(), hidden.numpy(), embeds.numpy()


@pytest.fixture(scope="module")
def thinker(omni_reference):
    return load_thinker(omni_reference.directory)


def test_config_reads_back_from_the_saved_config(omni_reference, thinker):
    assert thinker.config == omni_reference.thinker


def test_logits_hidden_and_embeds_match_transformers(omni_reference, thinker):
    ids, mask, audio = _batch(omni_reference.thinker)
    ref_logits, ref_hidden, ref_embeds = _reference(omni_reference.model, ids, mask, audio)
    out = nnx.jit(lambda m, i, a, e: m(i, attention_mask=a, audio_embeds=e))(
        thinker, ids, mask, audio)
    errors = {name: float(np.abs(np.asarray(ours) - theirs)[mask].max())
              for name, ours, theirs in [("logits", out.logits, ref_logits),
                                         ("hidden", out.hidden, ref_hidden),
                                         ("embeds", out.embeds, ref_embeds)]}
    print(f"thinker vs transformers, max |diff|: {errors} "
          f"(logits up to {np.abs(ref_logits).max():.1f})")
    assert max(errors.values()) <= TOL
    last = thinker(ids, attention_mask=mask, audio_embeds=audio, last_only=True).logits
    np.testing.assert_allclose(np.asarray(last)[:, 0], ref_logits[:, -1], atol=TOL)


def test_prefill_then_cached_decode_equals_full_forward(omni_reference, thinker):
    """Prefill a prompt (with audio) into the cache, then feed the rest one token at a time."""
    c = omni_reference.thinker
    ids, mask, audio = _batch(c, seed=1)
    rng = np.random.default_rng(2)
    steps = 4
    reply = rng.integers(0, 100, size=(ids.shape[0], steps))
    full_ids = np.concatenate([ids, reply], axis=1)
    full_mask = np.concatenate([mask, np.ones_like(reply, bool)], axis=1)
    full = nnx.jit(lambda m, i, a, e: m(i, attention_mask=a, audio_embeds=e))(
        thinker, full_ids, full_mask, audio)

    @nnx.jit
    def step(model, tokens, cache):
        return model(tokens, attention_mask=np.ones(tokens.shape, bool), cache=cache)

    cache = OmniCache.init(c, ids.shape[0], full_ids.shape[1])
    out = nnx.jit(lambda m, i, a, e, k: m(i, attention_mask=a, audio_embeds=e, cache=k))(
        thinker, ids, mask, audio, cache)
    errors = [np.abs(np.asarray(out.logits) - np.asarray(full.logits)[:, : ids.shape[1]])[mask]]
    cache = out.cache
    for t in range(steps):
        out = step(thinker, reply[:, t : t + 1], cache)
        cache = out.cache
        errors.append(np.abs(np.asarray(out.logits)[:, 0]
                             - np.asarray(full.logits)[:, ids.shape[1] + t]))
    diff = max(float(e.max()) for e in errors)
    print(f"thinker cached decode vs full forward: max |diff| = {diff:.2e}")
    assert diff <= TOL
    np.testing.assert_array_equal(np.asarray(cache.next_position), full_mask.sum(axis=1))
