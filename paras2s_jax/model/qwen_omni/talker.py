"""The Qwen2.5-Omni talker: thinker states + codec tokens -> decoder -> codec logits.

Everything the talker reads lives in the thinker's embedding space (`embedding_size`)
and goes through `thinker_to_talker_proj` (Linear with bias) into its own width:
- prefill: `inputs_embeds` [B, P, Ethk] prepared by the caller (per prompt token the
  thinker's last hidden state plus its input embedding, `ThinkerOutput.hidden + .embeds`,
  with the embeddings of audio placeholders zeroed as the reference does; then the
  embedding of the speaker's text-BOS id; then the first reply part); the talker adds the
  codec embeddings of `codec_pad_token_id` at position P-2 and `codec_start_token_id` at
  P-1 (`prompt_embeds`). The prompt's codec ids (mask tokens) are not embedded.
- each decode step t: embed(codec id of step t) + reply part t, where reply part t is
  the thinker's hidden state plus token embedding of the (t+1)-th reply token, then
  the text-EOS and text-pad embeddings once the reply is spent (`step_embeds`).
A teacher-forced sequence is `prompt_embeds(...)` followed by `step_embeds(...)`,
which is exactly what prefill + cached decode steps see.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx, struct

from paras2s_jax.model.layers import LOGIT_AXES, Dense
from paras2s_jax.model.qwen_omni.config import TalkerConfig
from paras2s_jax.model.qwen_omni.decoder import OmniCache, OmniDecoder
from paras2s_jax.sharding import constrain


@struct.dataclass
class TalkerOutput:
    """logits: float32[B, S', V_codec] (S' = 1 with `last_only`); hidden: [B, S, H] after
    the final norm; cache or None."""

    logits: jax.Array
    hidden: jax.Array
    cache: OmniCache | None = None


class Talker(nnx.Module):
    """`thinker_to_talker_proj`, `model` (codec embed_tokens, layers, norm), `codec_head`."""

    def __init__(self, config: TalkerConfig, *, rngs: nnx.Rngs):
        self.config = config
        c, pdt = config, config.storage_dtype
        self.thinker_to_talker_proj = Dense(
            (c.embedding_size,), (c.hidden_size,), ("embed", "embed_out"), use_bias=True,
            param_dtype=pdt, rngs=rngs)
        self.model = OmniDecoder(config, c.embedding_size, rngs=rngs)
        self.codec_head = Dense((c.hidden_size,), (c.vocab_size,), ("embed", "vocab"),
                                use_bias=False, param_dtype=pdt, rngs=rngs)

    def codec_embed(self, codec_ids: jax.Array) -> jax.Array:
        """Codec embeddings [B, S, Ethk] of codec ids int[B, S]."""
        return self.model.embed_tokens(codec_ids, self.config.compute_dtype)

    def prompt_embeds(self, inputs_embeds: jax.Array) -> jax.Array:
        """The prefill inputs [B, P, Ethk] with the codec pad (P-2) and start (P-1) added."""
        c = self.config
        marks = self.codec_embed(jnp.asarray([[c.codec_pad_token_id, c.codec_start_token_id]]))
        x = inputs_embeds.astype(c.compute_dtype)
        return x.at[:, -2:].add(marks)

    def step_embeds(self, codec_ids: jax.Array, reply_part: jax.Array) -> jax.Array:
        """Decode-step inputs [B, S, Ethk]: codec ids int[B, S] embedded plus the thinker
        reply part [B, S, Ethk] of the same steps."""
        return self.codec_embed(codec_ids) + reply_part.astype(self.config.compute_dtype)

    def __call__(
        self, inputs_embeds: jax.Array, *, attention_mask: jax.Array | None = None,
        positions: jax.Array | None = None, cache: OmniCache | None = None,
        last_only: bool = False,
    ) -> TalkerOutput:
        """Codec logits of inputs [B, S, Ethk] (built by `prompt_embeds` / `step_embeds`).

        attention_mask: bool[B, S]; positions: int[3, B, S], by default counted over the
        real tokens (continuing a cached row). With `cache` the tokens are appended.
        """
        x = self.thinker_to_talker_proj(inputs_embeds.astype(self.config.compute_dtype))
        hidden, cache = self.model(x, attention_mask=attention_mask, positions=positions,
                                   cache=cache)
        head_in = hidden[:, -1:] if last_only else hidden
        logits = constrain(self.codec_head(head_in, out_dtype=jnp.float32), LOGIT_AXES)
        return TalkerOutput(logits=logits, hidden=hidden, cache=cache)
