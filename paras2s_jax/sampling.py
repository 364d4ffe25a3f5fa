"""Jitted dual-stream sampling for Kimi-Audio: prefill, then a KV-cache decode loop.

At every step both heads are read at the last position and each stream gets a token,
following Kimi-Audio's generation rules (see `paras2s_jax.layout`):

- text: sampled until it emits `text_eos`; afterwards it is forced to `text_blank`;
- audio: forced to `text_blank` for the first `audio_delay` steps (and always when
  `output_type == "text"`), sampled afterwards;
- a row stops when its audio stream emits `msg_end` or `media_end` ("both"), or its
  text stream emits `text_eos` ("text"), or after `max_new_tokens` steps.

Sampling per stream: temperature 0 is greedy; otherwise softmax(logits / T) restricted to
the top k. The returned log-probability of a chosen token is log softmax(logits / T) over
the full vocabulary (T = 1 when greedy): a function of the logits alone, so a training
step can recompute it exactly with a full forward pass (the GRPO ratio depends on this).
Forced tokens have mask False and log-probability 0.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx, struct

from paras2s_jax import sharding
from paras2s_jax.model.config import KimiAudioConfig
from paras2s_jax.model.kimi_audio import KimiAudio, KVCache


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    """How to sample; defaults are Kimi-Audio's recommended values."""

    max_new_tokens: int = 256  # reply columns at most (12.5 per second of audio)
    text_temperature: float = 0.0  # 0 = greedy
    text_top_k: int = 5
    audio_temperature: float = 0.8
    audio_top_k: int = 10
    output_type: str = "both"  # "both": text + speech; "text": text only
    num_samples: int = 1  # G replies per prompt, rows prompt-major (row = prompt * G + g)
    prompt_bucket: int = 16  # prompts are left-padded to a power-of-two multiple of this

    def __post_init__(self) -> None:
        if self.max_new_tokens <= 0:
            raise ValueError("SamplingConfig.max_new_tokens must be > 0")
        if self.output_type not in ("text", "both"):
            raise ValueError(f"SamplingConfig.output_type must be 'text' or 'both', "
                             f"got {self.output_type!r}")
        if self.num_samples <= 0:
            raise ValueError("SamplingConfig.num_samples must be > 0")
        for name in ("text_temperature", "audio_temperature"):
            if getattr(self, name) < 0:
                raise ValueError(f"SamplingConfig.{name} must be >= 0")
        for name in ("text_top_k", "audio_top_k"):
            if getattr(self, name) < 0:
                raise ValueError(f"SamplingConfig.{name} must be >= 0 (0 = whole vocabulary)")


def sampling_from_settings(settings, num_samples: int = 1) -> SamplingConfig:
    """A `SamplingConfig` from a config group with the per-stream fields
    (max_new_tokens, text_/audio_temperature, text_/audio_top_k) and, optionally,
    prompt_bucket (default 16)."""
    return SamplingConfig(
        max_new_tokens=settings.max_new_tokens, text_temperature=settings.text_temperature,
        text_top_k=settings.text_top_k, audio_temperature=settings.audio_temperature,
        audio_top_k=settings.audio_top_k, num_samples=num_samples,
        prompt_bucket=getattr(settings, "prompt_bucket", SamplingConfig.prompt_bucket))


@struct.dataclass
class SampleOutput:
    """Reply columns of N = B * G rows and T = max_new_tokens steps."""

    text: jax.Array  # int32[N, T] text-stream tokens fed back (chosen or forced)
    audio: jax.Array  # int32[N, T] audio-stream tokens fed back
    text_mask: jax.Array  # bool[N, T] text tokens the model chose
    audio_mask: jax.Array  # bool[N, T] audio tokens the model chose
    text_logprobs: jax.Array  # float32[N, T], 0 where not chosen
    audio_logprobs: jax.Array  # float32[N, T]
    lengths: jax.Array  # int32[N] steps taken, the stop step included
    finished: jax.Array  # bool[N] stopped on a stop token (not on the length cap)

    def reply_mask(self) -> jax.Array:
        """bool[N, T]: the columns that belong to each reply (attention mask)."""
        return jnp.arange(self.text.shape[1])[None, :] < self.lengths[:, None]


def bucket_length(n: int, bucket: int) -> int:
    """The smallest `bucket * 2**k` >= n: prompts of similar length share a compilation."""
    size = bucket
    while size < n:
        size *= 2
    return size


def _pick(
    logits: jax.Array, temperature: float, top_k: int, rng: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """(token int32[N], log-prob float32[N]) from logits float32[N, V]."""
    if temperature == 0.0:
        token = jnp.argmax(logits, axis=-1).astype(jnp.int32)
        scaled = logits
    else:
        scaled = logits / temperature
        if top_k and top_k < logits.shape[-1]:
            values, index = jax.lax.top_k(scaled, top_k)
            choice = jax.random.categorical(rng, values, axis=-1)
            token = jnp.take_along_axis(index, choice[:, None], axis=-1)[:, 0].astype(jnp.int32)
        else:
            token = jax.random.categorical(rng, scaled, axis=-1).astype(jnp.int32)
    logprob = jnp.take_along_axis(jax.nn.log_softmax(scaled, axis=-1), token[:, None], -1)[:, 0]
    return token, logprob


def token_logprobs(logits: jax.Array, tokens: jax.Array, temperature: float) -> jax.Array:
    """log softmax(logits / T)[token] as the sampler defines it (T = 1 when greedy)."""
    scale = temperature if temperature > 0 else 1.0
    logp = jax.nn.log_softmax(logits.astype(jnp.float32) / scale, axis=-1)
    return jnp.take_along_axis(logp, tokens[..., None], axis=-1)[..., 0]


@functools.partial(jax.jit, static_argnames=("graphdef", "config"))
def decode_program(
    graphdef: nnx.GraphDef,
    state: nnx.State,
    text: jax.Array,
    audio: jax.Array,
    attention_mask: jax.Array,
    continuous: jax.Array,
    whisper_features: jax.Array | None,
    rng: jax.Array,
    *,
    config: SamplingConfig,
) -> SampleOutput:
    """The jitted sampler (prefill + decode loop) on prepared [N, P] prompts, each prompt
    repeated `config.num_samples` times in a row; see `generate`, which prepares them.
    Compiled once per (N, P, config)."""
    model: KimiAudio = nnx.merge(graphdef, state)
    mc = model.config
    sp, steps = mc.special, config.max_new_tokens
    n, g = text.shape[0], config.num_samples
    # A text-only model (no audio branch) is a plain Qwen2: it reads the text stream alone.
    two_streams = mc.mimo_layers > 0
    # Rows come G at a time per prompt (prompt-major): prefill each prompt once and give
    # its G replies copies of its cache and last logits.
    first = lambda x: None if x is None else x[::g]  # noqa: E731
    out = model(
        first(text), first(audio) if two_streams else None,
        attention_mask=first(attention_mask), whisper_features=first(whisper_features),
        continuous_mask=first(continuous) if whisper_features is not None else None,
        cache=KVCache.init(mc, n // g, text.shape[1] + steps), last_only=True,
    )
    cache = out.cache.repeat(g)
    out = jax.tree.map(lambda x: jnp.repeat(x, g, axis=0), out.replace(cache=None))
    # Columns after a row's stop (and after the loop ends early) hold the forced blank,
    # never id 0: 0 is a real text token and would enter the parsed reply.
    blanks = jnp.full((n, steps), sp.text_blank, jnp.int32)
    zeros_b = jnp.zeros((n, steps), bool)
    zeros_f = jnp.zeros((n, steps), jnp.float32)
    audio_stops = jnp.asarray([sp.msg_end, sp.media_end], jnp.int32)

    def audio_last(o):  # a text-only model carries a dummy audio logit row
        return o.audio_logits[:, -1] if two_streams else jnp.zeros((n, 1))

    def cond(carry):
        i, _, _, _, _, done, *_ = carry
        return (i < steps) & ~jnp.all(done)

    def body(carry):
        i, t_logits, a_logits, cache, text_done, done, lengths, finished, bufs, rng = carry
        rng, k_text, k_audio = jax.random.split(rng, 3)
        t_tok, t_lp = _pick(t_logits, config.text_temperature, config.text_top_k, k_text)
        a_tok, a_lp = _pick(a_logits, config.audio_temperature, config.audio_top_k, k_audio)

        active = ~done
        t_chosen = active & ~text_done
        t_tok = jnp.where(t_chosen, t_tok, sp.text_blank)
        audio_on = config.output_type == "both"
        a_chosen = active & (i >= mc.audio_delay) & audio_on
        a_tok = jnp.where(a_chosen, a_tok, sp.text_blank)

        if config.output_type == "both":
            stop = a_chosen & jnp.isin(a_tok, audio_stops)
        else:
            stop = t_chosen & (t_tok == sp.text_eos)
        text_done = text_done | (t_chosen & (t_tok == sp.text_eos))
        lengths = jnp.where(active, i + 1, lengths)
        finished = finished | stop

        t_buf, a_buf, tm_buf, am_buf, tl_buf, al_buf = bufs
        col = (0, i)
        bufs = (
            jax.lax.dynamic_update_slice(t_buf, t_tok[:, None], col),
            jax.lax.dynamic_update_slice(a_buf, a_tok[:, None], col),
            jax.lax.dynamic_update_slice(tm_buf, t_chosen[:, None], col),
            jax.lax.dynamic_update_slice(am_buf, a_chosen[:, None], col),
            jax.lax.dynamic_update_slice(tl_buf, jnp.where(t_chosen, t_lp, 0.0)[:, None], col),
            jax.lax.dynamic_update_slice(al_buf, jnp.where(a_chosen, a_lp, 0.0)[:, None], col),
        )
        # Rows that already stopped feed masked padding: it never reaches a real token.
        step = model(t_tok[:, None], a_tok[:, None] if two_streams else None,
                     attention_mask=active[:, None], cache=cache)
        done = done | stop
        return (i + 1, step.text_logits[:, -1], audio_last(step), step.cache,
                text_done, done, lengths, finished, bufs, rng)

    init = (
        jnp.zeros((), jnp.int32), out.text_logits[:, -1], audio_last(out), cache,
        jnp.zeros((n,), bool), jnp.zeros((n,), bool), jnp.zeros((n,), jnp.int32),
        jnp.zeros((n,), bool), (blanks, blanks, zeros_b, zeros_b, zeros_f, zeros_f), rng,
    )
    *_, lengths, finished, bufs, _ = jax.lax.while_loop(cond, body, init)
    t_buf, a_buf, tm_buf, am_buf, tl_buf, al_buf = bufs
    return SampleOutput(t_buf, a_buf, tm_buf, am_buf, tl_buf, al_buf, lengths, finished)


def generate(
    model: KimiAudio,
    prompts: Mapping[str, np.ndarray | jax.Array],
    rng: jax.Array,
    config: SamplingConfig,
) -> SampleOutput:
    """Sample `config.num_samples` replies per prompt.

    prompts: the dict of `layout.left_pad` — "text", "audio", "attention_mask" int/bool
    [B, P], optionally "continuous" bool[B, P] and "whisper_features" float[B, P, 5120].
    Prompts must be left-padded so every row's last column is real. They are padded
    further to a bucket length, so calls with similar prompt lengths reuse one
    compilation; the decode loop has a fixed shape per (batch, bucket, max_new_tokens).
    """
    for key in ("text", "audio", "attention_mask"):
        if key not in prompts:
            raise KeyError(f"prompts is missing {key!r} (build it with layout.left_pad)")
    mask = np.asarray(prompts["attention_mask"], bool)
    if not bool(np.all(mask[:, -1])):
        raise ValueError("prompts must be left-padded: the last column must be real for every row")
    mc: KimiAudioConfig = model.config
    if config.output_type == "both" and not mc.mimo_layers:
        raise ValueError("SamplingConfig.output_type='both' needs the audio branch; this model "
                         "has mimo_layers=0 (text only): use output_type='text'")
    batch, length = mask.shape
    target = bucket_length(length, config.prompt_bucket)
    pad = target - length
    g = config.num_samples

    graphdef, state = nnx.split(model)
    mesh = sharding.mesh_of(state)

    def prep(x: jax.Array | np.ndarray, fill, dtype=None) -> jax.Array:
        x = np.asarray(x, dtype)
        widths = [(0, 0), (pad, 0)] + [(0, 0)] * (x.ndim - 2)
        x = np.repeat(np.pad(x, widths, constant_values=fill), g, axis=0)
        if mesh is None:
            return jnp.asarray(x)
        return sharding.replicated_batch_to_global(x, mesh)

    continuous = prompts.get("continuous", np.zeros((batch, length), bool))
    features = prompts.get("whisper_features")
    with jax.set_mesh(mesh) if mesh is not None else contextlib.nullcontext():
        return decode_program(
            graphdef, state,
            prep(prompts["text"], mc.special.pad, np.int32),
            prep(prompts["audio"], mc.special.pad, np.int32),
            prep(mask, False), prep(continuous, False),
            None if features is None else prep(features, 0.0),
            rng, config=config,
        )
