"""The Qwen2.5-Omni thinker language model: token + audio embeddings -> decoder -> lm_head.

Audio enters as `audio_embeds` float[N_audio, E] (the audio encoder's output for every
clip, concatenated): they replace, in order, the embeddings of the positions holding
`audio_token_index`, read row by row (batch row 0 first, then left to right), as the
reference's `masked_scatter` does. The output keeps what the talker needs: the final
(normalised) hidden states and the input embeddings after the audio was placed.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx, struct

from paras2s_jax.model.layers import LOGIT_AXES, Dense
from paras2s_jax.model.qwen_omni.config import ThinkerTextConfig
from paras2s_jax.model.qwen_omni.decoder import OmniCache, OmniDecoder
from paras2s_jax.sharding import constrain


@struct.dataclass
class ThinkerOutput:
    """logits: float32[B, S', V] (S' = 1 with `last_only`, else S - logits_from); hidden:
    [B, S, E] after the final norm; embeds: [B, S, E] input embeddings (audio placed);
    cache or None."""

    logits: jax.Array
    hidden: jax.Array
    embeds: jax.Array
    cache: OmniCache | None = None


def scatter_audio(embeds: jax.Array, is_audio: jax.Array, audio_embeds: jax.Array) -> jax.Array:
    """embeds [B, S, E] with the rows of audio_embeds [N, E] placed, in row-major order,
    where is_audio: bool[B, S] is True. N must equal the number of True entries."""
    count = is_audio.sum()
    if not isinstance(count, jax.core.Tracer) and int(count) != audio_embeds.shape[0]:
        raise ValueError(f"audio_embeds has {audio_embeds.shape[0]} rows but the ids hold "
                         f"{int(count)} audio placeholder tokens")
    order = jnp.cumsum(is_audio.reshape(-1)).reshape(is_audio.shape) - 1
    placed = jnp.take(audio_embeds.astype(embeds.dtype), jnp.clip(order, 0), axis=0)
    return jnp.where(is_audio[..., None], placed, embeds)


class Thinker(nnx.Module):
    """`model` (embed_tokens, layers, norm) and `lm_head`, named as in the checkpoint."""

    def __init__(self, config: ThinkerTextConfig, *, rngs: nnx.Rngs):
        self.config = config
        self.model = OmniDecoder(config, config.hidden_size, rngs=rngs)
        self.lm_head = Dense((config.hidden_size,), (config.vocab_size,), ("embed", "vocab"),
                             use_bias=False, param_dtype=config.storage_dtype, rngs=rngs)

    def embed(self, input_ids: jax.Array, audio_embeds: jax.Array | None = None) -> jax.Array:
        """Input embeddings [B, S, E] of ids int[B, S], audio placed at its tokens."""
        x = self.model.embed_tokens(input_ids, self.config.compute_dtype)
        if audio_embeds is None:
            return x
        return scatter_audio(x, input_ids == self.config.audio_token_index, audio_embeds)

    def __call__(
        self, input_ids: jax.Array, *, attention_mask: jax.Array | None = None,
        audio_embeds: jax.Array | None = None, positions: jax.Array | None = None,
        cache: OmniCache | None = None, last_only: bool = False,
        inputs_embeds: jax.Array | None = None, logits_from: int = 0,
    ) -> ThinkerOutput:
        """Logits of every position from `logits_from` on (or of the last: `last_only`):
        positions before it get no [S, V] head output (a teacher-forced reply needs only
        its own).

        input_ids: int[B, S]; attention_mask: bool[B, S]; audio_embeds: float[N, E];
        positions: int[3, B, S], by default the prompt's `rope_index` (no cache) or the
        continuation of each cached row. With `cache` (prefill into an empty one, or a
        decode step) the tokens are appended and the updated cache is returned.
        inputs_embeds: [B, S, E] used instead of `embed(input_ids, audio_embeds)`.
        """
        embeds = self.embed(input_ids, audio_embeds) if inputs_embeds is None else inputs_embeds
        hidden, cache = self.model(embeds, attention_mask=attention_mask, positions=positions,
                                   cache=cache)
        head_in = hidden[:, -1:] if last_only else hidden[:, logits_from:]
        logits = constrain(self.lm_head(head_in, out_dtype=jnp.float32), LOGIT_AXES)
        return ThinkerOutput(logits=logits, hidden=hidden, embeds=embeds, cache=cache)
