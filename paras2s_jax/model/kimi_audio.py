"""Kimi-Audio in Flax NNX: dual-stream embeddings, Qwen2.5 trunk, audio branch, two heads.

Forward pass (`MoonshotKimiaModel.forward` of the reference implementation):
1. `audio_emb = embed(audio_ids)`; where `continuous_mask` is set, Whisper features go
   through the VQ adaptor and `audio_emb = (audio_emb + adaptor(w)) * sqrt(2)`;
   then `x = audio_emb + embed(text_ids)` (one table for both streams).
2. The trunk layers run; the residual stream after layer `mimo_from_layer` is copied
   into the audio ("MIMO") branch.
3. text logits = lm_head(norm(trunk)); audio logits = mimo_output(mimo_norm(branch)).

The same `__call__` serves training (no cache, full causal mask) and decoding (a
`KVCache` is read and returned updated). The dual-stream sampling rules (audio delay,
blank filling) live in the sampler, not here.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from flax import nnx, struct

from paras2s_jax.model.config import KimiAudioConfig
from paras2s_jax.model.layers import (
    CACHE_AXES,
    LOGIT_AXES,
    RESIDUAL_AXES,
    AttentionMask,
    DecoderLayer,
    Dense,
    Embed,
    LayerNorm,
    RMSNorm,
    checkpoint_policy,
    rope_tables,
    run_layers,
)
from paras2s_jax.sharding import constrain


@struct.dataclass
class KVCache:
    """Keys/values of every layer (trunk first, then the audio branch).

    keys, values: per layer [B, T, K, D]; valid: bool[B, T], slots holding real tokens;
    next_position: int32[B], RoPE position of each row's next real token;
    index: int32[], the next free slot (shared by all rows).
    """

    keys: tuple[jax.Array, ...]
    values: tuple[jax.Array, ...]
    valid: jax.Array
    next_position: jax.Array
    index: jax.Array

    @classmethod
    def init(
        cls, config: KimiAudioConfig, batch: int, max_length: int, dtype: jnp.dtype | None = None
    ) -> KVCache:
        """An empty cache with room for `max_length` tokens per row."""
        dtype = dtype or config.compute_dtype
        shape = (batch, max_length, config.num_kv_heads, config.head_dim)
        n = config.num_layers + config.mimo_layers
        zeros = lambda: constrain(jnp.zeros(shape, dtype), CACHE_AXES)  # noqa: E731
        return cls(
            keys=tuple(zeros() for _ in range(n)),
            values=tuple(zeros() for _ in range(n)),
            valid=jnp.zeros((batch, max_length), bool),
            next_position=jnp.zeros((batch,), jnp.int32),
            index=jnp.zeros((), jnp.int32),
        )

    @property
    def max_length(self) -> int:
        return self.valid.shape[1]

    def repeat(self, times: int) -> KVCache:
        """The cache with each row `times` times in a row (rows r·times ... r·times +
        times - 1 continue row r): one prompt's cache for each of its replies."""
        rows = lambda x: jnp.repeat(x, times, axis=0)  # noqa: E731
        return self.replace(keys=tuple(constrain(rows(k), CACHE_AXES) for k in self.keys),
                            values=tuple(constrain(rows(v), CACHE_AXES) for v in self.values),
                            valid=rows(self.valid), next_position=rows(self.next_position))


@struct.dataclass
class KimiAudioHidden:
    """Normalised hidden states [B, S, E] that feed the text and audio heads."""

    text: jax.Array
    audio: jax.Array | None
    cache: KVCache | None = None


@struct.dataclass
class KimiAudioOutput:
    """text_logits, audio_logits: float32[B, S, V] (audio is None without the branch)."""

    text_logits: jax.Array
    audio_logits: jax.Array | None
    cache: KVCache | None = None


class VQAdaptor(nnx.Module):
    """Whisper features [.., 4*1280] -> hidden: Linear, SiLU, Linear, LayerNorm."""

    def __init__(self, config: KimiAudioConfig, *, rngs: nnx.Rngs):
        dense = dict(use_bias=True, param_dtype=config.storage_dtype, rngs=rngs)
        e = config.hidden_size
        self.fc1 = Dense((config.adaptor_input_dim,), (e,), ("adaptor_in", "embed"), **dense)
        self.fc2 = Dense((e,), (e,), ("embed", "embed_out"), **dense)
        self.norm = LayerNorm(e, config.rms_norm_eps, param_dtype=config.storage_dtype)

    def __call__(self, features: jax.Array) -> jax.Array:
        return self.norm(self.fc2(jax.nn.silu(self.fc1(features))))


class KimiAudio(nnx.Module):
    """The Kimi-Audio language model with its audio branch and both heads."""

    def __init__(self, config: KimiAudioConfig, *, rngs: nnx.Rngs):
        self.config = config
        c, pdt = config, config.storage_dtype
        layer = dict(
            hidden=c.hidden_size, width=c.intermediate_size, num_heads=c.num_heads,
            num_kv_heads=c.num_kv_heads, eps=c.rms_norm_eps, param_dtype=pdt, rngs=rngs,
            attention=c.attention,
        )
        self.embed_tokens = Embed(c.vocab_size, c.hidden_size, param_dtype=pdt, rngs=rngs)
        self.vq_adaptor = VQAdaptor(c, rngs=rngs) if c.use_whisper_feature else None
        self.layers = nnx.List([DecoderLayer(**layer) for _ in range(c.num_layers)])
        self.norm = RMSNorm(c.hidden_size, c.rms_norm_eps, param_dtype=pdt)
        head = dict(use_bias=False, param_dtype=pdt, rngs=rngs)
        self.lm_head = Dense((c.hidden_size,), (c.vocab_size,), ("embed", "vocab"), **head)
        if c.mimo_layers:
            self.mimo_layers = nnx.List([DecoderLayer(**layer) for _ in range(c.mimo_layers)])
            self.mimo_norm = RMSNorm(c.hidden_size, c.rms_norm_eps, param_dtype=pdt)
            self.mimo_output = Dense(
                (c.hidden_size,), (c.vocab_size,), ("embed", "vocab"), **head
            )

    def embed(
        self,
        text_ids: jax.Array,
        audio_ids: jax.Array | None = None,
        whisper_features: jax.Array | None = None,
        continuous_mask: jax.Array | None = None,
    ) -> jax.Array:
        """Input embeddings [B, S, E] of the two id streams (+ Whisper features)."""
        dtype = self.config.compute_dtype
        x = self.embed_tokens(text_ids, dtype)
        if audio_ids is None:
            return x
        audio = self.embed_tokens(audio_ids, dtype)
        if whisper_features is not None:
            if self.vq_adaptor is None:
                raise ValueError("whisper_features given but config.use_whisper_feature=False")
            if continuous_mask is None:
                raise ValueError("whisper_features need a continuous_mask of the same length")
            is_cont = continuous_mask[..., None]
            adapted = self.vq_adaptor(whisper_features.astype(dtype)) * is_cont.astype(dtype)
            mixed = (audio + adapted) * jnp.asarray(math.sqrt(2.0), dtype)
            audio = jnp.where(is_cont, mixed, audio)
        return audio + x

    def hidden_states(
        self,
        text_ids: jax.Array,
        audio_ids: jax.Array | None = None,
        *,
        attention_mask: jax.Array | None = None,
        positions: jax.Array | None = None,
        whisper_features: jax.Array | None = None,
        continuous_mask: jax.Array | None = None,
        cache: KVCache | None = None,
    ) -> KimiAudioHidden:
        """The normalised inputs of both heads, [B, S, E] (arguments as `__call__`).

        Losses that need a few positions or chunked log-probabilities apply the heads
        (`lm_head`, `mimo_output`) themselves, so [B, S, V] logits never exist.
        """
        c = self.config
        batch, length = text_ids.shape
        if attention_mask is None:
            attention_mask = jnp.ones((batch, length), bool)
        attention_mask = attention_mask.astype(bool)
        start = cache.next_position[:, None] if cache is not None else 0
        if positions is None:
            positions = start + jnp.cumsum(attention_mask, axis=1, dtype=jnp.int32) - 1
            positions = jnp.maximum(positions, 0)

        if cache is None:
            mask = AttentionMask(attention_mask)
            cache_index = None
        else:
            key_valid = jax.lax.dynamic_update_slice(cache.valid, attention_mask, (0, cache.index))
            mask = AttentionMask(key_valid, cache.index + jnp.arange(length))
            cache_index = cache.index

        x = constrain(self.embed(text_ids, audio_ids, whisper_features, continuous_mask),
                      RESIDUAL_AXES)
        cos, sin = rope_tables(positions, c.head_dim, c.rope_theta, c.compute_dtype)

        # Per-layer (keys, values), trunk first then the audio branch, as the cache stores them.
        kv = [None] * (c.num_layers + c.mimo_layers) if cache is None else [
            (k, v) for k, v in zip(cache.keys, cache.values, strict=True)]
        # What each layer keeps for a backward pass: with `remat` nothing; otherwise its
        # matmul outputs only, the elementwise work between them (norms, SiLU, RoPE,
        # softmax) being recomputed. That holds less memory than keeping every
        # intermediate and, on CPU, is faster too (fewer per-layer buffers to fill and read
        # back: ~11% of a small model's GRPO update). Without a backward pass (decoding)
        # the checkpoint changes nothing.
        run = functools.partial(run_layers, cos=cos, sin=sin, mask=mask,
                                policy=checkpoint_policy(c.remat),
                                # One-token decode steps stay unrolled: stacking the
                                # cache for a scan would cost more than the step.
                                scan=c.scan_layers and length > 1,
                                dtype=c.compute_dtype, cache_index=cache_index)
        split = c.mimo_from_layer + 1 if c.mimo_layers else c.num_layers
        layers = list(self.layers)
        h = run(layers[:split], x, kv, 0)
        branch = h  # the audio branch reads the raw residual stream here
        h = run(layers[split:], h, kv, split)
        text_hidden = constrain(self.norm(h), RESIDUAL_AXES)
        audio_hidden = None
        if c.mimo_layers:
            branch = run(list(self.mimo_layers), branch, kv, c.num_layers)
            audio_hidden = constrain(self.mimo_norm(branch), RESIDUAL_AXES)

        new_cache = None
        if cache is not None:
            new_cache = KVCache(
                keys=tuple(k for k, _ in kv),
                values=tuple(v for _, v in kv),
                valid=mask.key_valid,
                next_position=cache.next_position + attention_mask.sum(axis=1, dtype=jnp.int32),
                index=cache.index + length,
            )
        return KimiAudioHidden(text=text_hidden, audio=audio_hidden, cache=new_cache)

    def head(self, stream: str) -> Dense:
        """The output projection of "text" (`lm_head`) or "audio" (`mimo_output`)."""
        return self.lm_head if stream == "text" else self.mimo_output

    def logits(self, stream: str, hidden: jax.Array) -> jax.Array:
        """float32[B, S, V] logits of `stream` from its normalised hidden states."""
        return constrain(self.head(stream)(hidden, out_dtype=jnp.float32), LOGIT_AXES)

    def __call__(
        self,
        text_ids: jax.Array,
        audio_ids: jax.Array | None = None,
        *,
        attention_mask: jax.Array | None = None,
        positions: jax.Array | None = None,
        whisper_features: jax.Array | None = None,
        continuous_mask: jax.Array | None = None,
        cache: KVCache | None = None,
        last_only: bool = False,
    ) -> KimiAudioOutput:
        """Logits of both heads for every position (or only the last: `last_only`).

        text_ids, audio_ids: int32[B, S] (audio_ids=None embeds the text stream alone, as
        a plain Qwen2 model does); attention_mask: bool[B, S], False on padding;
        positions: int32[B, S], by default counted over the real tokens (so left padding
        is harmless); whisper_features: [B, S, 5120] aligned to the sequence, used where
        continuous_mask: bool[B, S] is True. With `cache`, the S tokens are appended to
        it and the updated cache is returned in the output. `last_only` applies the
        heads to the last position alone (S = 1 in the output): prefill, scoring.
        """
        hidden = self.hidden_states(
            text_ids, audio_ids, attention_mask=attention_mask, positions=positions,
            whisper_features=whisper_features, continuous_mask=continuous_mask, cache=cache)
        pick = (lambda h: h[:, -1:]) if last_only else (lambda h: h)
        text_logits = self.logits("text", pick(hidden.text))
        audio_logits = None
        if hidden.audio is not None:
            audio_logits = self.logits("audio", pick(hidden.audio))
        return KimiAudioOutput(text_logits=text_logits, audio_logits=audio_logits,
                               cache=hidden.cache)


def count_params(model_or_state) -> int:
    """Number of parameter scalars of a model, a state, or an abstract (eval_shape) one."""
    state = model_or_state if isinstance(model_or_state, nnx.State) else nnx.state(
        model_or_state, nnx.Param
    )
    return sum(math.prod(x.shape) for x in jax.tree.leaves(state))
