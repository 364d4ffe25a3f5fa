"""The talker against transformers' Qwen2.5-Omni talker (prefill + cached decode), float32."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from paras2s_jax.model.qwen_omni.checkpoint import load_talker
from paras2s_jax.model.qwen_omni.decoder import OmniCache

TOL = 1e-4
STEPS = 4


def _inputs(omni_reference, seed: int = 0):
    """Prompt embeddings [B, P, Ethk] (row 1 left padded by 3), the prompt mask, codec ids
    of the decode steps and the thinker reply part [B, STEPS, Ethk]."""
    c = omni_reference.talker
    rng = np.random.default_rng(seed)
    batch, prompt = 2, 9
    embeds = rng.standard_normal((batch, prompt, c.embedding_size)).astype(np.float32)
    mask = np.ones((batch, prompt), bool)
    mask[1, :3] = False
    codec = rng.integers(0, c.codec_start_token_id, size=(batch, STEPS))
    reply = rng.standard_normal((batch, STEPS, c.embedding_size)).astype(np.float32)
    return embeds, mask, codec, reply


def _reference(omni_reference, embeds, mask, codec, reply):
    """transformers' talker run as its generate loop does: prefill on `inputs_embeds`,
    then one codec id per step with the reply part; logits and final hidden states."""
    talker = omni_reference.model.talker
    talker.rope_deltas = None
    c = omni_reference.talker
    hidden: list[torch.Tensor] = []
    hook = talker.model.norm.register_forward_hook(lambda m, i, o: hidden.append(o))
    batch, prompt = mask.shape
    t_mask = torch.tensor(mask.astype(np.int64))
    text_ids = torch.zeros((batch, prompt), dtype=torch.long)
    prompt_codec = torch.full((batch, prompt), c.codec_mask_token_id)
    logits = []
    with torch.no_grad():
        out = talker(input_ids=prompt_codec, input_text_ids=text_ids,
                     inputs_embeds=torch.tensor(embeds).clone(), attention_mask=t_mask,
                     thinker_reply_part=torch.tensor(reply), use_cache=True)
        logits.append(out.logits)
        cache, reply_part = out.cache, out.thinker_reply_part
        for t in range(STEPS):
            t_mask = torch.cat([t_mask, torch.ones((batch, 1), dtype=torch.long)], dim=1)
            out = talker(input_ids=torch.tensor(codec[:, t : t + 1]), attention_mask=t_mask,
                         cache=cache, thinker_reply_part=reply_part, use_cache=True)
            logits.append(out.logits)
            cache, reply_part = out.cache, out.thinker_reply_part
    hook.remove()
    return torch.cat(logits, dim=1).numpy(), torch.cat(hidden, dim=1).numpy()


@pytest.fixture(scope="module")
def talker(omni_reference):
    return load_talker(omni_reference.directory)


@nnx.jit
def _full(model, embeds, codec, reply, mask):
    """The teacher-forced sequence: the prompt, then every decode step's inputs."""
    inputs = jnp.concatenate([model.prompt_embeds(embeds), model.step_embeds(codec, reply)],
                             axis=1)
    return model(inputs, attention_mask=mask)


def _full_forward(model, embeds, mask, codec, reply):
    full_mask = np.concatenate([mask, np.ones(codec.shape, bool)], axis=1)
    return _full(model, embeds, codec, reply, full_mask), full_mask


def test_config_reads_back_from_the_saved_config(omni_reference, talker):
    assert talker.config == omni_reference.talker


def test_logits_and_hidden_match_transformers_generate_steps(omni_reference, talker):
    embeds, mask, codec, reply = _inputs(omni_reference)
    ref_logits, ref_hidden = _reference(omni_reference, embeds, mask, codec, reply)
    out, full_mask = _full_forward(talker, embeds, mask, codec, reply)
    errors = {"logits": float(np.abs(np.asarray(out.logits) - ref_logits)[full_mask].max()),
              "hidden": float(np.abs(np.asarray(out.hidden) - ref_hidden)[full_mask].max())}
    print(f"talker vs transformers, max |diff|: {errors} "
          f"(logits up to {np.abs(ref_logits).max():.1f})")
    assert max(errors.values()) <= TOL


def test_prefill_then_cached_decode_equals_full_forward(omni_reference, talker):
    embeds, mask, codec, reply = _inputs(omni_reference, seed=1)
    full, full_mask = _full_forward(talker, embeds, mask, codec, reply)
    prompt = mask.shape[1]

    @nnx.jit
    def prefill(model, x, m, cache):
        return model(model.prompt_embeds(x), attention_mask=m, cache=cache)

    @nnx.jit
    def step(model, ids, part, cache):
        return model(model.step_embeds(ids, part), cache=cache)

    cache = OmniCache.init(omni_reference.talker, mask.shape[0], full_mask.shape[1])
    out = prefill(talker, embeds, mask, cache)
    errors = [np.abs(np.asarray(out.logits) - np.asarray(full.logits)[:, :prompt])[mask]]
    cache = out.cache
    for t in range(STEPS):
        out = step(talker, codec[:, t : t + 1], reply[:, t : t + 1], cache)
        cache = out.cache
        errors.append(np.abs(np.asarray(out.logits)[:, 0]
                             - np.asarray(full.logits)[:, prompt + t]))
    diff = max(float(e.max()) for e in errors)
    print(f"talker cached decode vs full forward: max |diff| = {diff:.2e}")
    assert diff <= TOL
