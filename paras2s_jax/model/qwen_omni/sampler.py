"""Jitted Qwen2.5-Omni sampling for serving and RL: thinker text, then talker codes.

One compiled program per (batch, prompt length, settings): the thinker prefills the
prompt (audio encoder included) and decodes in a `lax.while_loop` until every row emits a
text stop id or `max_text_tokens`; the talker is then prefilled with the inputs
`speech_reply` describes (transformers' recipe) and decodes codes the same way until a
codec stop id or `max_codec_tokens`.

Choice per stream (as transformers' processors): temperature 0 is greedy; otherwise
scores / T, kept to the top k, then to the smallest top set of probability >= top_p,
and sampled. Codec scores carry the repetition penalty and the suppressed start id
first. As in `paras2s_jax.sampling`, the log-probability of a chosen token is
log softmax(scores / T) over the full vocabulary (T = 1 when greedy), so `score` can
recompute it exactly from a teacher-forced forward pass; unchosen columns hold 0.
"""

from __future__ import annotations

import contextlib
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx, struct
from jax.sharding import NamedSharding, PartitionSpec

from paras2s_jax import sharding
from paras2s_jax.model.qwen_omni.decoder import OmniCache
from paras2s_jax.model.qwen_omni.model import QwenOmni
from paras2s_jax.model.qwen_omni.speech_reply import (
    OmniSampling,
    codec_scores,
    initial_seen,
    reply_part,
    reply_rows,
    talker_prompt,
)
from paras2s_jax.model.qwen_omni.teacher_forced import penalised_codec_scores, reply_logits
from paras2s_jax.sampling import bucket_length


@struct.dataclass
class OmniSample:
    """N rows; T = max_text_tokens, C = max_codec_tokens columns."""

    text: jax.Array  # int32[N, T], the thinker pad id after a row's stop
    text_mask: jax.Array  # bool[N, T] tokens the model chose
    text_logprobs: jax.Array  # float32[N, T], 0 where not chosen
    text_lengths: jax.Array  # int32[N] tokens chosen, the stop included
    text_finished: jax.Array  # bool[N] stopped on a stop id (not the cap)
    codes: jax.Array  # int32[N, C], the codec pad id after a row's stop
    codec_mask: jax.Array  # bool[N, C]
    codec_logprobs: jax.Array  # float32[N, C]
    codec_lengths: jax.Array  # int32[N]
    codec_finished: jax.Array  # bool[N]


def choose(scores: jax.Array, temperature: float, top_k: int, top_p: float,
           rng: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(token int32[N], log softmax(scores / T)[token] float32[N]) from scores float32[N, V]."""
    if temperature == 0.0:
        token = jnp.argmax(scores, axis=-1).astype(jnp.int32)
        return token, token_logprobs(scores, token, temperature)
    scaled = scores / temperature
    vocab = scores.shape[-1]
    if top_k and top_k < vocab:
        values, index = jax.lax.top_k(scaled, top_k)
    elif top_p < 1.0:
        index = jnp.argsort(-scaled, axis=-1)
        values = jnp.take_along_axis(scaled, index, axis=-1)
    else:
        values, index = scaled, None
    if top_p < 1.0:
        probs = jax.nn.softmax(values, axis=-1)
        before = jnp.cumsum(probs, axis=-1) - probs  # mass of the higher-ranked tokens
        values = jnp.where(before < top_p, values, -jnp.inf)
    pick = jax.random.categorical(rng, values, axis=-1)
    token = pick if index is None else jnp.take_along_axis(index, pick[:, None], -1)[:, 0]
    token = token.astype(jnp.int32)
    return token, token_logprobs(scores, token, temperature)


def token_logprobs(scores: jax.Array, tokens: jax.Array, temperature: float) -> jax.Array:
    """log softmax(scores / T)[token] over the last axis (T = 1 when greedy)."""
    scale = temperature if temperature > 0 else 1.0
    logp = jax.nn.log_softmax(scores.astype(jnp.float32) / scale, axis=-1)
    return jnp.take_along_axis(logp, tokens[..., None], axis=-1)[..., 0]


def _write(buffers: tuple, column: jax.Array, values: tuple) -> tuple:
    return tuple(jax.lax.dynamic_update_slice(b, v[:, None].astype(b.dtype), (0, column))
                 for b, v in zip(buffers, values, strict=True))


def _thinker_phase(model: QwenOmni, ids, mask, mel, mel_mask, rng, s: OmniSampling):
    c = model.config.thinker
    n, length = ids.shape
    steps = s.max_text_tokens
    stops = jnp.asarray(s.text_stops(model))
    out = model.thinker_forward(ids, mask, mel, mel_mask,
                                cache=OmniCache.init(c, n, length + steps), last_only=True)
    reply = jnp.zeros((n, steps, c.hidden_size), out.hidden.dtype)
    buffers = (jnp.full((n, steps), c.pad_token_id, jnp.int32), jnp.zeros((n, steps), bool),
               jnp.zeros((n, steps), jnp.float32))

    def cond(carry):
        i, _, _, done, *_ = carry
        return (i < steps) & ~jnp.all(done)

    def body(carry):
        i, logits, cache, done, lengths, finished, reply, buffers, rng = carry
        rng, key = jax.random.split(rng)
        token, logprob = choose(logits, s.text_temperature, s.text_top_k, s.text_top_p, key)
        active = ~done
        stop = active & jnp.isin(token, stops)
        token = jnp.where(active, token, c.pad_token_id)
        buffers = _write(buffers, i, (token, active, jnp.where(active, logprob, 0.0)))
        step = model.thinker(token[:, None], attention_mask=active[:, None], cache=cache,
                             last_only=True)
        reply = jax.lax.dynamic_update_slice(
            reply, reply_rows(step.hidden, step.embeds).astype(reply.dtype), (0, i, 0))
        return (i + 1, step.logits[:, -1], step.cache, done | stop,
                jnp.where(active, i + 1, lengths), finished | stop, reply, buffers, rng)

    zeros = jnp.zeros((n,), bool)
    init = (jnp.zeros((), jnp.int32), out.logits[:, -1], out.cache, zeros,
            jnp.zeros((n,), jnp.int32), zeros, reply, buffers, rng)
    *_, lengths, finished, reply, buffers, _ = jax.lax.while_loop(cond, body, init)
    return out, reply, lengths, finished, buffers


def _talker_phase(model: QwenOmni, ids, mask, prompt, reply, text_lengths, rng,
                  s: OmniSampling):
    c = model.config.talker
    n, length = ids.shape
    steps = s.max_codec_tokens
    stops = jnp.asarray(s.codec_stops(model))
    x, talker_mask = talker_prompt(model, ids, mask, prompt.hidden, prompt.embeds,
                                   reply[:, 0], s.speaker_bos)
    out = model.talker(model.talker.prompt_embeds(x), attention_mask=talker_mask,
                       cache=OmniCache.init(c, n, length + 2 + steps), last_only=True)
    buffers = (jnp.full((n, steps), c.codec_pad_token_id, jnp.int32),
               jnp.zeros((n, steps), bool), jnp.zeros((n, steps), jnp.float32))

    def cond(carry):
        i, _, _, _, done, *_ = carry
        return (i < steps) & ~jnp.all(done)

    def body(carry):
        i, logits, cache, seen, done, lengths, finished, buffers, rng = carry
        rng, key = jax.random.split(rng)
        scores = codec_scores(model, logits, seen, s.repetition_penalty)
        code, logprob = choose(scores, s.codec_temperature, s.codec_top_k, s.codec_top_p, key)
        active = ~done
        stop = active & jnp.isin(code, stops)
        code = jnp.where(active, code, c.codec_pad_token_id)
        buffers = _write(buffers, i, (code, active, jnp.where(active, logprob, 0.0)))
        seen = seen.at[jnp.arange(n), code].set(True)
        part = reply_part(model, reply, text_lengths, i)
        step = model.talker(model.talker.step_embeds(code[:, None], part[:, None]),
                            attention_mask=active[:, None], cache=cache, last_only=True)
        return (i + 1, step.logits[:, -1], step.cache, seen, done | stop,
                jnp.where(active, i + 1, lengths), finished | stop, buffers, rng)

    zeros = jnp.zeros((n,), bool)
    init = (jnp.zeros((), jnp.int32), out.logits[:, -1], out.cache, initial_seen(model, n),
            zeros, jnp.zeros((n,), jnp.int32), zeros, buffers, rng)
    *_, lengths, finished, buffers, _ = jax.lax.while_loop(cond, body, init)
    return lengths, finished, buffers


@functools.partial(jax.jit, static_argnames=("graphdef", "settings"))
def program(graphdef, state, ids, mask, mel, mel_mask, rng, *, settings: OmniSampling
            ) -> OmniSample:
    """The jitted sampler (`sample` prepares its inputs): the thinker's text phase, then
    the talker's codes; compiled once per (shapes, settings)."""
    model: QwenOmni = nnx.merge(graphdef, state)
    text_rng, codec_rng = jax.random.split(rng)
    prompt, reply, t_len, t_fin, (text, t_mask, t_lp) = _thinker_phase(
        model, ids, mask, mel, mel_mask, text_rng, settings)
    c_len, c_fin, (codes, c_mask, c_lp) = _talker_phase(
        model, ids, mask, prompt, reply, t_len, codec_rng, settings)
    return OmniSample(text, t_mask, t_lp, t_len, t_fin, codes, c_mask, c_lp, c_len, c_fin)


def sample(model: QwenOmni, input_ids: np.ndarray | jax.Array,
           attention_mask: np.ndarray | jax.Array, rng: jax.Array, settings: OmniSampling,
           mel: np.ndarray | jax.Array | None = None,
           mel_mask: np.ndarray | jax.Array | None = None, prompt_bucket: int = 16
           ) -> OmniSample:
    """Sample a text reply and its codec codes for each prompt row.

    input_ids, attention_mask: int/bool[N, P], left padded (every row's last column
    real); mel float[A, M, T] / mel_mask [A, T]: the prompt's clips in order of their
    placeholder runs (row by row), or None for text-only prompts. On a sharded model
    the rows are split over the mesh's batch axes and the clips replicated. Prompts are
    left padded further to `prompt_bucket * 2**k` columns (0: not at all), so similar
    lengths share one compilation; padding does not change the outputs.
    """
    mask = np.asarray(attention_mask, bool)
    if not mask[:, -1].all():
        raise ValueError("sample: prompts must be left padded (the last column real in every "
                         "row)")
    pad = bucket_length(mask.shape[1], prompt_bucket) - mask.shape[1] if prompt_bucket else 0
    mask = np.pad(mask, [(0, 0), (pad, 0)])
    input_ids = np.pad(np.asarray(input_ids, np.int32), [(0, 0), (pad, 0)],
                       constant_values=model.config.thinker.pad_token_id)
    graphdef, state = nnx.split(model)
    mesh = sharding.mesh_of(state)

    def rows(x: np.ndarray) -> jax.Array:
        return jnp.asarray(x) if mesh is None else sharding.replicated_batch_to_global(x, mesh)

    def whole(x: np.ndarray | jax.Array | None) -> jax.Array | None:
        if x is None or mesh is None:
            return None if x is None else jnp.asarray(x)
        return jax.device_put(np.asarray(x), NamedSharding(mesh, PartitionSpec()))

    mel_mask = None if mel_mask is None else np.asarray(mel_mask, np.int32)
    with jax.set_mesh(mesh) if mesh is not None else contextlib.nullcontext():
        return program(graphdef, state, rows(np.asarray(input_ids, np.int32)), rows(mask),
                        whole(mel), whole(mel_mask), rng, settings=settings)


def score(model: QwenOmni, input_ids: jax.Array, attention_mask: jax.Array,
          out: OmniSample, settings: OmniSampling, mel: jax.Array | None = None,
          mel_mask: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """Teacher-forced log-probs (float32[N, T], float32[N, C], 0 off the masks) of a
    sample's chosen text tokens and codes: one thinker and one talker forward over the
    whole sequences, the sampler's convention (for a policy-gradient ratio)."""
    text_logits, codec_logits = reply_logits(
        model, input_ids, attention_mask, out.text, out.text_mask, out.text_lengths, out.codes,
        out.codec_mask, settings.speaker_bos, mel, mel_mask)
    text_lp = token_logprobs(text_logits, out.text, settings.text_temperature)
    scores = penalised_codec_scores(model, codec_logits, out.codes,
                                    settings.repetition_penalty)
    codec_lp = token_logprobs(scores, out.codes, settings.codec_temperature)
    return (jnp.where(out.text_mask, text_lp, 0.0), jnp.where(out.codec_mask, codec_lp, 0.0))
