"""Teacher-forced Qwen2.5-Omni forwards over a batch of `qwen_omni_data`'s layout.

One thinker forward over prompt + reply text gives the text logits and, from the same
hidden states, the talker's inputs exactly as the sampler assembles them
(`speech_reply.talker_prompt` / `reply_part`); one talker forward gives the codec logits.
The codec stream's gradient reaches the thinker through those hidden states (the talker
reads them as inputs) unless `stop_thinker_grad` is set.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from paras2s_jax.model.qwen_omni.model import QwenOmni, place_audio
from paras2s_jax.model.qwen_omni.rope import rope_index
from paras2s_jax.model.qwen_omni.speech_reply import (
    OmniSampling,
    codec_scores,
    initial_seen,
    reply_part,
    reply_rows,
    talker_prompt,
)
from paras2s_jax.model.qwen_omni.thinker import ThinkerOutput


def thinker_with_slots(model: QwenOmni, ids: jax.Array, mask: jax.Array, slots: jax.Array,
                       mel: jax.Array, mel_mask: jax.Array, last_only: bool = False
                       ) -> ThinkerOutput:
    """`QwenOmni.thinker_forward` with the audio placed at bool[B, S] `slots` only (in
    row-major order), not at every audio-placeholder id: a sampled reply may hold that
    id, and the sampler embedded it as a plain token. ids, mask: [B, S]; mel float[A, M,
    F] / mel_mask [A, F]: the clips in slot order."""
    embeds = model.thinker.embed(ids)
    tokens, counts = model.audio_encoder(jnp.asarray(mel),
                                         jnp.asarray(mel_mask).astype(jnp.int32).sum(axis=1))
    placed = place_audio(tokens, counts, slots).astype(embeds.dtype)
    embeds = jnp.where(slots[..., None], placed, embeds)
    return model.thinker(ids, attention_mask=mask, positions=rope_index(mask)[0],
                         inputs_embeds=embeds, last_only=last_only)


def stream_logits(model: QwenOmni, batch: dict, speaker_bos: int,
                  stop_thinker_grad: bool = False) -> tuple[jax.Array, jax.Array]:
    """(text logits float32[N, T, V] choosing reply token t, codec logits float32[N, C, Vc]
    choosing code t) of the batch's reply text and codes (see the module docstring)."""
    ids = jnp.asarray(batch["input_ids"], jnp.int32)
    mask = jnp.asarray(batch["attention_mask"], bool)
    text = jnp.asarray(batch["reply_text"], jnp.int32)
    codes = jnp.asarray(batch["reply_audio"], jnp.int32)
    length = ids.shape[1]
    slots = jnp.concatenate([ids == model.config.thinker.audio_token_index,
                             jnp.zeros(text.shape, bool)], axis=1)
    thinker = thinker_with_slots(
        model, jnp.concatenate([ids, text], axis=1),
        jnp.concatenate([mask, jnp.asarray(batch["reply_text_attention"], bool)], axis=1),
        slots, batch["mel"], batch["mel_mask"])
    text_logits = thinker.logits[:, length - 1:-1]
    hidden, embeds = thinker.hidden, thinker.embeds
    if stop_thinker_grad:
        hidden, embeds = jax.lax.stop_gradient(hidden), jax.lax.stop_gradient(embeds)
    reply = reply_rows(hidden, embeds)[:, length:]
    x, talker_mask = talker_prompt(model, ids, mask, hidden[:, :length], embeds[:, :length],
                                   reply[:, 0], speaker_bos)
    lengths = jnp.asarray(batch["text_lengths"], jnp.int32)
    parts = jax.vmap(lambda t: reply_part(model, reply, lengths, t), out_axes=1)(
        jnp.arange(codes.shape[1] - 1))
    inputs = jnp.concatenate([model.talker.prompt_embeds(x),
                              model.talker.step_embeds(codes[:, :-1], parts)], axis=1)
    attention = jnp.concatenate(
        [talker_mask, jnp.asarray(batch["reply_audio_attention"], bool)[:, :-1]], axis=1)
    talker = model.talker(inputs, attention_mask=attention)
    return text_logits, talker.logits[:, length + 1:]


def penalised_codec_scores(model: QwenOmni, logits: jax.Array, codes: jax.Array,
                           penalty: float) -> jax.Array:
    """float32[N, C, Vc]: the sampler's codec scores at every step (repetition penalty
    over the prompt's codec ids and the codes before, codec start suppressed)."""
    vocab = logits.shape[-1]
    onehot = jax.nn.one_hot(codes, vocab, dtype=jnp.int32)
    seen = initial_seen(model, codes.shape[0])[:, None] | ((jnp.cumsum(onehot, 1) - onehot) > 0)
    return jax.vmap(lambda lg, sn: codec_scores(model, lg, sn, penalty),
                    in_axes=1, out_axes=1)(logits, seen)


def logprobs_and_entropy(scores: jax.Array, tokens: jax.Array, temperature: float
                         ) -> tuple[jax.Array, jax.Array]:
    """(log softmax(scores / T)[token], entropy of softmax(scores / T)), float32[N, L]
    (T = 1 when greedy, as the sampler)."""
    scale = temperature if temperature > 0 else 1.0
    logp = jax.nn.log_softmax(scores.astype(jnp.float32) / scale, axis=-1)
    chosen = jnp.take_along_axis(logp, tokens[..., None], axis=-1)[..., 0]
    probs = jnp.exp(logp)
    entropy = -jnp.sum(jnp.where(probs > 0, probs * logp, 0.0), axis=-1)
    return chosen, entropy


def sampled_logprobs(model: QwenOmni, batch: dict, settings: OmniSampling,
                     stop_thinker_grad: bool = False) -> dict[str, jax.Array]:
    """{"text", "audio", "entropy_text", "entropy_audio"}: float32[N, T_s] under the
    sampler's convention (its temperatures and codec repetition penalty), 0 off the
    reply's attention masks."""
    text_logits, codec_logits = stream_logits(model, batch, settings.speaker_bos,
                                              stop_thinker_grad)
    codes = jnp.asarray(batch["reply_audio"], jnp.int32)
    scores = penalised_codec_scores(model, codec_logits, codes, settings.repetition_penalty)
    out = {}
    for stream, sc, tokens, temp, attn in (
            ("text", text_logits, batch["reply_text"], settings.text_temperature,
             batch["reply_text_attention"]),
            ("audio", scores, codes, settings.codec_temperature,
             batch["reply_audio_attention"])):
        lp, ent = logprobs_and_entropy(sc, jnp.asarray(tokens, jnp.int32), temp)
        attn = jnp.asarray(attn, bool)
        out[stream], out[f"entropy_{stream}"] = jnp.where(attn, lp, 0.0), jnp.where(attn, ent,
                                                                                     0.0)
    return out


def demo_ce(model: QwenOmni, batch: dict, speaker_bos: int
            ) -> dict[str, tuple[jax.Array, jax.Array]]:
    """{"text", "audio": (CE sum, token count)} of the demonstrated reply tokens under
    plain log softmax(logits), over the loss masks "text_mask" / "audio_mask"."""
    text_logits, codec_logits = stream_logits(model, batch, speaker_bos)
    out = {}
    for stream, logits, tokens in (("text", text_logits, batch["reply_text"]),
                                   ("audio", codec_logits, batch["reply_audio"])):
        lp, _ = logprobs_and_entropy(logits, jnp.asarray(tokens, jnp.int32), 1.0)
        mask = jnp.asarray(batch[f"{stream}_mask"], jnp.float32)
        out[stream] = (-jnp.sum(lp * mask), jnp.sum(mask))
    return out
