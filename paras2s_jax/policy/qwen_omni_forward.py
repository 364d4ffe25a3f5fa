"""Teacher-forced Qwen2.5-Omni forwards over a batch of `qwen_omni_data`'s layout: the
sampler's log-probs and entropies per stream, and SFT's cross-entropy, from
`paras2s_jax.model.qwen_omni.teacher_forced` (one thinker and one talker forward; the
codec stream's gradient reaches the thinker through the hidden states the talker reads,
unless `stop_thinker_grad` is set).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from paras2s_jax.model.qwen_omni.model import QwenOmni
from paras2s_jax.model.qwen_omni.speech_reply import OmniSampling
from paras2s_jax.model.qwen_omni.teacher_forced import penalised_codec_scores, reply_logits


def stream_logits(model: QwenOmni, batch: dict, speaker_bos: int,
                  stop_thinker_grad: bool = False) -> tuple[jax.Array, jax.Array]:
    """(text logits float32[N, T, V] choosing reply token t, codec logits float32[N, C, Vc]
    choosing code t) of the batch's reply text and codes (`teacher_forced.reply_logits`)."""
    return reply_logits(model, batch["input_ids"], batch["attention_mask"],
                        batch["reply_text"], batch["reply_text_attention"],
                        batch["text_lengths"], batch["reply_audio"],
                        batch["reply_audio_attention"], speaker_bos, batch["mel"],
                        batch["mel_mask"], stop_thinker_grad)


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
