"""Stage 1, SFT: next-token cross-entropy on both output streams of the reply.

Position i's text logits predict the text stream at i+1, its audio logits the audio
stream at i+1. Only tokens the demonstrator *chose* count (layout `text_mask` /
`audio_mask`: the reply text up to EOS, the audio codes and the end token); prompt,
forced blanks and padding carry no loss. Computed in float32 whatever the model dtype,
with the heads applied in sequence chunks (`paras2s_jax.model.heads`): the [B, L, V]
logits of the whole batch never exist. `token_ce` is the plain reference form.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
from flax import nnx

from paras2s_jax.model.heads import token_logprobs
from paras2s_jax.train import prompt_features

STREAMS = ("text", "audio")


def token_ce(logits: jax.Array, targets: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(sum, count) of masked cross-entropy; logits float[B, L, V], targets int[B, L]."""
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    nll = -jnp.take_along_axis(logp, targets[..., None].astype(jnp.int32), axis=-1)[..., 0]
    mask = mask.astype(jnp.float32)
    return jnp.sum(nll * mask), jnp.sum(mask)


def shifted_targets(batch: Mapping[str, jax.Array], stream: str) -> tuple[jax.Array, jax.Array]:
    """(targets, mask) of `stream` for next-token prediction: columns 1..L-1."""
    return batch[stream][:, 1:], batch[f"{stream}_mask"][:, 1:] & batch["attention_mask"][:, 1:]


def sft_loss(model: nnx.Module, batch: Mapping[str, jax.Array],
             rng: jax.Array | None = None) -> dict[str, tuple[jax.Array, jax.Array]]:
    """{"text": (sum, count), "audio": (sum, count)} over the batch's chosen reply tokens.

    batch: int32 "text", "audio" and bool "text_mask", "audio_mask", "continuous",
    "attention_mask", all [B, L], and optionally float "whisper_features" [B, L, D]
    (see `paras2s_jax.train.data`).
    """
    del rng  # SFT is deterministic (no dropout in Kimi-Audio)
    hidden = model.hidden_states(batch["text"], batch["audio"],
                                 attention_mask=batch["attention_mask"],
                                 **prompt_features.model_inputs(batch))
    terms = {}
    for stream, h in (("text", hidden.text), ("audio", hidden.audio)):
        targets, mask = shifted_targets(batch, stream)
        logp, _ = token_logprobs(model.head(stream), h[:, :-1], targets,
                                 chunk=model.config.head_chunk)
        mask = mask.astype(jnp.float32)
        terms[stream] = (-jnp.sum(logp * mask), jnp.sum(mask))
    return terms


def sft_counts(batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
    """Loss-token counts per stream over the whole batch (the denominators)."""
    return {s: jnp.sum(shifted_targets(batch, s)[1].astype(jnp.float32)) for s in STREAMS}
