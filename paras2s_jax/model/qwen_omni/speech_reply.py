"""From a thinker prompt and its text reply to the talker's inputs, and greedy generation.

What transformers' `Qwen2_5OmniForConditionalGeneration.generate` feeds the talker, for
a left-padded prompt of P tokens whose thinker reply has L_b tokens in row b (its stop
token included; L_b = max when it never stopped):

- reply row j (j = 0, 1, ...): the thinker's final hidden state plus the token embedding
  of reply token j, taken when token j is fed back to the thinker (`ThinkerOutput.hidden
  + .embeds` of that decode step);
- prefill, P + 2 rows: per prompt token hidden + input embedding, with the embedding (not
  the hidden state) of audio placeholders zeroed; the embedding of the speaker's text-BOS
  id (`spk_dict.pt`: speaker_map[name]["bos_token"]); reply row 0. Mask: the prompt's,
  then two ones. `Talker.prompt_embeds` adds the codec pad / start embeddings;
- decode step t (feeding codec t): codec embedding + part t, where with e_b =
  max(1, L_b - 1), part t is reply row t + 1 while t < e_b - 1, the text-EOS embedding
  (`tts_text_end_token_id`) at t = e_b - 1, the text-pad embedding after (so the stop
  token itself never reaches the talker, nor does the last token of a capped reply).

Codec choice: scores = logits with a repetition penalty over every codec id seen so far
(the prompt's mask / pad / start ids and the codes produced: positive scores divided by
it, negative ones multiplied), and the codec start id suppressed (-inf). The talker
stops on `codec_stop_ids` (transformers: [8292, 8294], codec pad and end).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx, struct

from paras2s_jax.checkpoint.torch_pickle import read_torch_file
from paras2s_jax.model.qwen_omni.decoder import OmniCache
from paras2s_jax.model.qwen_omni.model import QwenOmni


@dataclasses.dataclass(frozen=True)
class OmniSampling:
    """Generation settings. Defaults: the talker's are the arguments of transformers'
    `generate` (top-k 40, top-p 0.8, T 0.9, repetition penalty 1.05, at most 4096 codes);
    the thinker's are transformers' sampling defaults (top-k 50, top-p 1, T 1) with
    `generate`'s 1024 new tokens. Temperature 0 is greedy."""

    speaker_bos: int  # the speaker's text-BOS id (spk_dict.pt "bos_token")
    max_text_tokens: int = 1024
    max_codec_tokens: int = 4096
    text_temperature: float = 1.0
    text_top_k: int = 50  # 0: the whole vocabulary
    text_top_p: float = 1.0
    codec_temperature: float = 0.9
    codec_top_k: int = 40
    codec_top_p: float = 0.8
    repetition_penalty: float = 1.05  # over the codec ids seen; 1 = off
    text_stop_ids: tuple[int, ...] | None = None  # default: (thinker eos_token_id,)
    codec_stop_ids: tuple[int, ...] | None = None  # default: talker_eos_token_id

    def __post_init__(self) -> None:
        if self.max_text_tokens <= 0 or self.max_codec_tokens <= 0:
            raise ValueError("OmniSampling.max_text_tokens and max_codec_tokens must be > 0")
        for name in ("text_temperature", "codec_temperature", "text_top_k", "codec_top_k"):
            if getattr(self, name) < 0:
                raise ValueError(f"OmniSampling.{name} must be >= 0")
        for name in ("text_top_p", "codec_top_p"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"OmniSampling.{name} must be in (0, 1]")
        if self.repetition_penalty <= 0:
            raise ValueError("OmniSampling.repetition_penalty must be > 0")

    def text_stops(self, model: QwenOmni) -> tuple[int, ...]:
        return self.text_stop_ids or (model.config.thinker.eos_token_id,)

    def codec_stops(self, model: QwenOmni) -> tuple[int, ...]:
        return self.codec_stop_ids or model.config.talker.talker_eos_token_id


SPEAKER_FILE = "spk_dict.pt"


def speaker_bos_ids(directory: str | Path) -> dict[str, int]:
    """Speaker name -> text-BOS id (`OmniSampling.speaker_bos`) from the checkpoint's
    `spk_dict.pt`, read without torch."""
    path = Path(directory) / SPEAKER_FILE
    table = read_torch_file(path)
    out = {}
    for name, params in table.items():
        if not isinstance(params, dict) or "bos_token" not in params:
            raise ValueError(f"{path}: speaker {name!r} has no 'bos_token'")
        bos = params["bos_token"]
        out[name] = int(np.asarray(bos.numpy() if hasattr(bos, "numpy") else bos).reshape(()))
    return out


def reply_rows(out_hidden: jax.Array, out_embeds: jax.Array) -> jax.Array:
    """Reply rows [B, S, E] of a thinker decode step (hidden + input embedding)."""
    return out_hidden + out_embeds


def talker_prompt(model: QwenOmni, input_ids: jax.Array, attention_mask: jax.Array,
                  hidden: jax.Array, embeds: jax.Array, first_reply: jax.Array,
                  speaker_bos: int) -> tuple[jax.Array, jax.Array]:
    """(talker prefill inputs [B, P + 2, E] before the codec marks, mask bool[B, P + 2]).

    input_ids / attention_mask: the thinker prompt [B, P]; hidden, embeds: its thinker
    prefill outputs [B, P, E]; first_reply: reply row 0 [B, E]."""
    batch = input_ids.shape[0]
    is_audio = (input_ids == model.config.thinker.audio_token_index)[..., None]
    prompt = hidden + jnp.where(is_audio, 0, embeds)
    bos = model.thinker.embed(jnp.full((batch, 1), speaker_bos, jnp.int32))
    x = jnp.concatenate([prompt, bos.astype(prompt.dtype),
                         first_reply[:, None].astype(prompt.dtype)], axis=1)
    mask = jnp.concatenate([jnp.asarray(attention_mask, bool), jnp.ones((batch, 2), bool)], 1)
    return x, mask


def reply_part(model: QwenOmni, reply: jax.Array, text_lengths: jax.Array,
               step: jax.Array) -> jax.Array:
    """The thinker part [B, E] of talker decode step `step` (int[] or int[B]) from reply
    rows [B, T, E] and reply lengths int[B] (stop token included); see the module doc."""
    c = model.config.talker
    last = jnp.maximum(text_lengths, 2) - 2  # e - 1, with e = max(1, L - 1)
    step = jnp.broadcast_to(step, text_lengths.shape)
    row = jnp.take_along_axis(reply, jnp.clip(step + 1, 0, reply.shape[1] - 1)[:, None, None],
                              axis=1)[:, 0]
    marks = model.thinker.embed(jnp.asarray([[c.text_end_token_id, c.text_pad_token_id]]))[0]
    out = jnp.where((step == last)[:, None], marks[0], marks[1])
    return jnp.where((step < last)[:, None], row.astype(out.dtype), out)


def initial_seen(model: QwenOmni, batch: int) -> jax.Array:
    """bool[B, V_codec]: the codec ids of the talker prompt (mask, pad, start)."""
    c = model.config.talker
    ids = jnp.asarray([c.codec_mask_token_id, c.codec_pad_token_id, c.codec_start_token_id])
    return jnp.zeros((batch, c.vocab_size), bool).at[:, ids].set(True)


def codec_scores(model: QwenOmni, logits: jax.Array, seen: jax.Array,
                 penalty: float) -> jax.Array:
    """float32[B, V]: logits [B, V] with the repetition penalty on `seen` and the codec
    start id suppressed."""
    logits = logits.astype(jnp.float32)
    if penalty != 1.0:
        logits = jnp.where(seen, jnp.where(logits < 0, logits * penalty, logits / penalty),
                           logits)
    return logits.at[:, model.config.talker.codec_start_token_id].set(-jnp.inf)


@struct.dataclass
class SpeechReply:
    """text: int32[B, T_text] (thinker pad id after the stop); text_lengths: int32[B],
    stop token included; codes: int32[B, T_codec] (codec pad id after the stop);
    codec_lengths: int32[B], stop code included."""

    text: jax.Array
    text_lengths: jax.Array
    codes: jax.Array
    codec_lengths: jax.Array


@nnx.jit
def _thinker_prefill(model, ids, mask, mel, mel_mask, cache):
    return model.thinker_forward(ids, mask, mel, mel_mask, cache=cache, last_only=True)


@nnx.jit
def _thinker_step(model, tokens, active, cache):
    return model.thinker(tokens[:, None], attention_mask=active[:, None], cache=cache)


@nnx.jit(static_argnames=("speaker_bos",))
def _talker_prefill(model, ids, mask, hidden, embeds, first_reply, cache, speaker_bos):
    x, talker_mask = talker_prompt(model, ids, mask, hidden, embeds, first_reply, speaker_bos)
    return model.talker(model.talker.prompt_embeds(x), attention_mask=talker_mask,
                        cache=cache, last_only=True)


@nnx.jit
def _talker_step(model, codes, part, active, cache):
    return model.talker(model.talker.step_embeds(codes[:, None], part[:, None]),
                        attention_mask=active[:, None], cache=cache)


def greedy_generate(model: QwenOmni, input_ids: np.ndarray, attention_mask: np.ndarray,
                    mel: np.ndarray | None, mel_mask: np.ndarray | None,
                    settings: OmniSampling) -> SpeechReply:
    """Greedy thinker reply, then greedy talker codes, one jitted step at a time (a
    reference for `sampler.sample`). input_ids, attention_mask: the left-padded prompt
    [B, P]; mel float[A, M, T] / mel_mask [A, T]: its clips in order (or None)."""
    c = model.config
    ids = jnp.asarray(input_ids, jnp.int32)
    mask = jnp.asarray(attention_mask, bool)
    batch, length = ids.shape
    text_stops = jnp.asarray(settings.text_stops(model))
    codec_stops = jnp.asarray(settings.codec_stops(model))

    cache = OmniCache.init(c.thinker, batch, length + settings.max_text_tokens)
    out = _thinker_prefill(model, ids, mask, mel, mel_mask, cache)
    prompt_hidden, prompt_embeds = out.hidden, out.embeds
    tokens, reply = [], []
    done = jnp.zeros((batch,), bool)
    lengths = jnp.zeros((batch,), jnp.int32)
    for i in range(settings.max_text_tokens):
        token = jnp.argmax(out.logits[:, -1], axis=-1).astype(jnp.int32)
        active = ~done
        tokens.append(jnp.where(active, token, c.thinker.pad_token_id))
        lengths = jnp.where(active, i + 1, lengths)
        done = done | jnp.isin(token, text_stops)
        out = _thinker_step(model, token, active, out.cache)
        reply.append(reply_rows(out.hidden, out.embeds)[:, 0])
        if bool(done.all()):
            break
    text, reply = jnp.stack(tokens, axis=1), jnp.stack(reply, axis=1)

    cache = OmniCache.init(c.talker, batch, length + 2 + settings.max_codec_tokens)
    out = _talker_prefill(model, ids, mask, prompt_hidden, prompt_embeds, reply[:, 0], cache,
                          speaker_bos=settings.speaker_bos)
    seen = initial_seen(model, batch)
    codes = []
    done = jnp.zeros((batch,), bool)
    codec_lengths = jnp.zeros((batch,), jnp.int32)
    for t in range(settings.max_codec_tokens):
        scores = codec_scores(model, out.logits[:, -1], seen, settings.repetition_penalty)
        code = jnp.argmax(scores, axis=-1).astype(jnp.int32)
        active = ~done
        codes.append(jnp.where(active, code, c.talker.codec_pad_token_id))
        codec_lengths = jnp.where(active, t + 1, codec_lengths)
        seen = seen.at[jnp.arange(batch), code].set(True)
        done = done | jnp.isin(code, codec_stops)
        if bool(done.all()):
            break
        part = reply_part(model, reply, lengths, jnp.asarray(t))
        out = _talker_step(model, code, part, active, out.cache)
    return SpeechReply(text, lengths, jnp.stack(codes, axis=1), codec_lengths)
