"""Teacher-forced Qwen2.5-Omni logits of a whole reply: text, then codec ids.

One thinker forward over prompt + reply text gives the text logits and, from the same
hidden states, the talker's inputs exactly as the sampler assembles them
(`speech_reply.talker_prompt` / `reply_part`); one talker forward gives the codec logits.
The clips go to the prompt's placeholders only: a sampled reply may hold the placeholder
id, which the sampler embedded as a plain token. The codec stream's gradient reaches the
thinker through the hidden states the talker reads, unless `stop_thinker_grad`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from paras2s_jax.model.qwen_omni.model import QwenOmni
from paras2s_jax.model.qwen_omni.speech_reply import (
    codec_scores,
    initial_seen,
    reply_part,
    reply_rows,
    talker_prompt,
)


def reply_logits(model: QwenOmni, input_ids: jax.Array, attention_mask: jax.Array,
                 text: jax.Array, text_attention: jax.Array, text_lengths: jax.Array,
                 codes: jax.Array, codes_attention: jax.Array, speaker_bos: int,
                 mel: jax.Array | None = None, mel_mask: jax.Array | None = None,
                 stop_thinker_grad: bool = False) -> tuple[jax.Array, jax.Array]:
    """(text logits float32[N, T, V] choosing reply token t, codec logits float32[N, C, Vc]
    choosing code t). input_ids / attention_mask: the left-padded prompts [N, P];
    text [N, T] and codes [N, C] with their attention masks (real columns); text_lengths
    int[N]: reply tokens the talker reads (the sampler's); mel / mel_mask: the prompts'
    clips in order of appearance."""
    ids = jnp.asarray(input_ids, jnp.int32)
    mask = jnp.asarray(attention_mask, bool)
    text = jnp.asarray(text, jnp.int32)
    codes = jnp.asarray(codes, jnp.int32)
    length = ids.shape[1]
    slots = jnp.concatenate([ids == model.config.thinker.audio_token_index,
                             jnp.zeros(text.shape, bool)], axis=1)
    thinker = model.thinker_forward(
        jnp.concatenate([ids, text], axis=1),
        jnp.concatenate([mask, jnp.asarray(text_attention, bool)], axis=1), mel, mel_mask,
        audio_slots=slots, logits_from=length - 1)
    hidden, embeds = thinker.hidden, thinker.embeds
    if stop_thinker_grad:
        hidden, embeds = jax.lax.stop_gradient(hidden), jax.lax.stop_gradient(embeds)
    reply = reply_rows(hidden, embeds)[:, length:]
    x, talker_mask = talker_prompt(model, ids, mask, hidden[:, :length], embeds[:, :length],
                                   reply[:, 0], speaker_bos)
    lengths = jnp.asarray(text_lengths, jnp.int32)
    parts = jax.vmap(lambda t: reply_part(model, reply, lengths, t), out_axes=1)(
        jnp.arange(codes.shape[1] - 1))
    inputs = jnp.concatenate([model.talker.prompt_embeds(x),
                              model.talker.step_embeds(codes[:, :-1], parts)], axis=1)
    talker = model.talker(inputs, attention_mask=jnp.concatenate(
        [talker_mask, jnp.asarray(codes_attention, bool)[:, :-1]], axis=1))
    return thinker.logits[:, :-1], talker.logits[:, length + 1:]


def penalised_codec_scores(model: QwenOmni, logits: jax.Array, codes: jax.Array,
                           penalty: float) -> jax.Array:
    """float32[N, C, Vc]: the sampler's codec scores at every step (repetition penalty
    over the prompt's codec ids and the codes before, codec start suppressed)."""
    vocab = logits.shape[-1]
    onehot = jax.nn.one_hot(codes, vocab, dtype=jnp.int32)
    seen = initial_seen(model, codes.shape[0])[:, None] | ((jnp.cumsum(onehot, 1) - onehot) > 0)
    return jax.vmap(lambda lg, sn: codec_scores(model, lg, sn, penalty),
                    in_axes=1, out_axes=1)(logits, seen)
