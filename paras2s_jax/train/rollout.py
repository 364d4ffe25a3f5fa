"""GRPO rollouts: sample G replies per prompt, lay them out for training, score them.

A rollout batch is the left-padded prompts repeated G times followed by the sampled
reply columns. Column `P - 1 + i` (P = prompt length) predicts reply step i, so the
per-token log-probabilities of a full forward over the batch line up with the
sampler's (`token_logprobs`), which is what the clipped ratio and the KL need.
The G rows of a prompt share its columns: the log-probability forwards (reference, old,
the update's) run them once per prompt and continue each reply from a copy of its KV
cache (`reply_hidden`).
With prompt Whisper features (`config.data.whisper_features`, as in SFT) the sampler,
every log-probability forward and the reward model read them at the prompt's
user-audio positions (see `train/prompt_features.py`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from paras2s_jax import layout, sharding
from paras2s_jax.model import KimiAudio
from paras2s_jax.model.heads import token_logprobs
from paras2s_jax.model.kimi_audio import KVCache
from paras2s_jax.sampling import SampleOutput, SamplingConfig, bucket_length
from paras2s_jax.train import prompt_features
from paras2s_jax.train.hosts import host_value
from paras2s_jax.train.reward import digit_logits, expected_score, reward_input, reward_reply
from paras2s_jax.train.step import micro_batches, unmicro

STREAMS = ("text", "audio")


def rollout_batch(prompts: dict[str, np.ndarray], out: SampleOutput, group: int) -> dict:
    """The training batch of a rollout (numpy, [N, P + T]) with its reply-aligned fields.

    prompts: `layout.left_pad` dict padded to the sampler's bucket (see `pad_prompts`).
    Keys: text, audio, attention_mask (the sequence); text_mask, audio_mask,
    sampler_text_logprobs, sampler_audio_logprobs ([N, T], the reply steps, as the
    sampler computed them; the loss takes "old" log-probs only from a forward pass).
    With prompt features: "continuous" [N, P + T] and "whisper_features" [N, P, D].
    """
    keys = ("text", "audio", "attention_mask") + (
        ("continuous", "whisper_features") if "whisper_features" in prompts else ())
    rep = {k: np.repeat(np.asarray(prompts[k]), group, axis=0) for k in keys}
    out = jax.device_get(out)
    batch = {
        "text": np.concatenate([rep["text"], out.text], 1).astype(np.int32),
        "audio": np.concatenate([rep["audio"], out.audio], 1).astype(np.int32),
        "attention_mask": np.concatenate([rep["attention_mask"], out.reply_mask()], 1),
        "text_mask": np.asarray(out.text_mask),
        "audio_mask": np.asarray(out.audio_mask),
        "sampler_text_logprobs": np.asarray(out.text_logprobs, np.float32),
        "sampler_audio_logprobs": np.asarray(out.audio_logprobs, np.float32),
    }
    if "whisper_features" in rep:  # reply columns carry none
        batch["continuous"] = np.pad(rep["continuous"], ((0, 0), (0, out.text.shape[1])))
        batch["whisper_features"] = rep["whisper_features"]
    return batch


def pad_prompts(streams: Sequence[layout.Streams], bucket: int, pad_id: int,
                features: Sequence[np.ndarray] | None = None) -> dict:
    """Left-pad prompt streams to the sampler's bucket length (so shapes line up); with
    `features` (float[T, D] per prompt) also "whisper_features" [B, P, D]."""
    length = bucket_length(max(len(s) for s in streams), bucket)
    prompts = layout.left_pad(streams, length, pad_id)
    if features is not None:
        prompts["whisper_features"] = prompt_features.left_padded(streams, features, length)
    return prompts


def reply_hidden(model: KimiAudio, batch: dict, steps: int,
                 group: int = 1) -> tuple[jax.Array, jax.Array | None]:
    """Normalised hidden states [N, T, E] of the text and audio heads (audio None for a
    text-only model) at the positions that predict the T reply steps: columns P - 1 ..
    P + T - 2 of a rollout batch.

    group > 1: rows come `group` at a time per prompt, as `rollout_batch` lays them out.
    Each prompt's columns then run once, and its rows continue from copies of its KV
    cache: the same values as a forward over every row, with 1/group of the prompt's
    cost (forward and backward).
    """
    text, mask = batch["text"], batch["attention_mask"]
    audio = batch["audio"] if model.config.mimo_layers else None  # text-only: Qwen2 alone
    features = prompt_features.model_inputs(batch)
    total = text.shape[1]
    prompt = total - steps
    if group == 1:
        if features:  # prompt features [N, P, D], zero over the reply columns
            features["whisper_features"] = jnp.pad(features["whisper_features"],
                                                   ((0, 0), (0, steps), (0, 0)))
        hidden = model.hidden_states(text, audio, attention_mask=mask, **features)
        pick = lambda h: None if h is None else h[:, prompt - 1:total - 1]  # noqa: E731
        return pick(hidden.text), pick(hidden.audio)
    if text.shape[0] % group:
        raise ValueError(f"reply_hidden: {text.shape[0]} rows are not groups of {group}")
    first = lambda x: None if x is None else x[::group, :prompt]  # noqa: E731
    if features:
        features = {"whisper_features": features["whisper_features"][::group],
                    "continuous_mask": first(features["continuous_mask"])}
    cache = KVCache.init(model.config, text.shape[0] // group, total - 1)
    head = model.hidden_states(first(text), first(audio), attention_mask=first(mask),
                               cache=cache, **features)
    reply = lambda x: None if x is None else x[:, prompt:total - 1]  # noqa: E731
    tail = model.hidden_states(reply(text), reply(audio), attention_mask=reply(mask),
                               cache=head.cache.repeat(group))
    join = lambda h, t: None if h is None else jnp.concatenate(  # noqa: E731
        [jnp.repeat(h[:, -1:], group, axis=0), t], axis=1)
    return join(head.text, tail.text), join(head.audio, tail.audio)


def reply_logprobs(
    model: KimiAudio, batch: dict, sampling: SamplingConfig, with_entropy: bool = False,
    group: int = 1,
) -> dict[str, jax.Array]:
    """Per-step log-probabilities [N, T] of the reply tokens under `model` (and entropies).

    The heads run on the reply positions only, in chunks (`paras2s_jax.model.heads`).
    `group`: rows sharing each prompt, consecutive (see `reply_hidden`).
    """
    steps = batch["text_mask"].shape[1]
    hidden = dict(zip(STREAMS, reply_hidden(model, batch, steps, group), strict=True))
    result = {}
    for stream, temp in (("text", sampling.text_temperature),
                         ("audio", sampling.audio_temperature)):
        tokens = batch[stream][:, -steps:]
        h = hidden[stream]
        if h is None:  # a text-only model never chooses audio tokens
            result[stream] = jnp.zeros(tokens.shape, jnp.float32)
            if with_entropy:
                result[f"entropy_{stream}"] = result[stream]
            continue
        result[stream], ent = token_logprobs(
            model.head(stream), h, tokens, temp, model.config.head_chunk, with_entropy)
        if with_entropy:
            result[f"entropy_{stream}"] = ent
    return result


def score_replies(
    reward_model: KimiAudio,
    prompt_streams: Sequence[layout.Streams],
    out: SampleOutput,
    group: int,
    suffix_ids: Sequence[int],
    digit_ids: Sequence[int],
    view: str,
    bucket: int = 16,
    micro: int = 1,
    features: Sequence[np.ndarray] | None = None,
) -> np.ndarray:
    """Expected Likert score [N] of every sampled reply under the reward model.

    Replies are re-laid out as the reward model saw them in training (parsed, then
    `reward_reply` under its `view`), so the sampler's exact column timing does not leak
    into the reward and a channel outside the view cannot change it.
    `features`: float[T, D] per prompt (row r reads prompt r // group's), as in training.
    """
    mc = reward_model.config
    out = jax.device_get(out)
    seqs = []
    for row in range(out.text.shape[0]):
        text, audio = layout.parse_reply(out.text[row], out.audio[row], mc)
        reply = reward_reply(text, audio, mc, view)
        seqs.append(reward_input(prompt_streams[row // group], reply, suffix_ids, mc))
    length = bucket_length(max(len(s) for s in seqs), bucket)
    batch = layout.left_pad(seqs, length, mc.special.pad)
    if features is not None:
        batch["whisper_features"] = prompt_features.left_padded(
            seqs, [features[row // group] for row in range(len(seqs))], length)
    mesh = sharding.mesh_of(nnx.state(reward_model))
    if mesh is not None:  # global arrays split over the batch, traced in the mesh
        batch = {k: sharding.replicated_batch_to_global(np.asarray(v), mesh)
                 for k, v in batch.items()}
    with jax.set_mesh(mesh) if mesh is not None else contextlib.nullcontext():
        scores = reward_forward(reward_model, batch["text"], batch["audio"],
                                batch["attention_mask"], tuple(digit_ids), micro,
                                batch.get("whisper_features"), batch["continuous"])
    return host_value(scores)


def judge_replies(records: Sequence[dict], replies: Sequence[tuple[list[int], list[int]]],
                  group: int, judge_fn) -> np.ndarray:
    """float32[N]: `judge_fn(record, text, audio)`'s score of every reply (text ids,
    speech codes), row r judged against its own prompt record r // G (see
    `train.distill.Judge`)."""
    return np.asarray([judge_fn(records[row // group], *reply)[0]
                       for row, reply in enumerate(replies)], np.float32)


def _digit_logits_in_parts(model: KimiAudio, text, audio, mask, digit_ids: tuple[int, ...],
                           micro: int, features, continuous) -> jax.Array:
    """float32[N, 5]: logits of "1".."5" at each left-padded row's last position, the rows
    in `micro` micro-batches one after another."""
    graphdef, state = nnx.split(model)

    def one(rows):
        logits = nnx.merge(graphdef, state)(
            rows["text"], rows["audio"], attention_mask=rows["mask"], last_only=True,
            **prompt_features.model_inputs(rows)).text_logits
        return digit_logits(logits, digit_ids)

    rows = {"text": text, "audio": audio, "mask": mask}
    if features is not None:
        rows.update(whisper_features=features, continuous=continuous)
    if micro == 1:
        return one(rows)
    return unmicro(jax.lax.map(one, micro_batches(rows, micro)))


@nnx.jit(static_argnums=(4, 5))
def digit_forward(model: KimiAudio, text, audio, mask, digit_ids: tuple[int, ...],
                  micro: int = 1, features=None, continuous=None):
    """float32[N, 5]: the RM's logits of the digits "1".."5" for each left-padded row
    (last position only), the rows in `micro` micro-batches one after another;
    `features` float[N, L, D] are read at the `continuous` positions."""
    return _digit_logits_in_parts(model, text, audio, mask, digit_ids, micro, features,
                                  continuous)


@nnx.jit(static_argnums=(4, 5))
def reward_forward(model: KimiAudio, text, audio, mask, digit_ids: tuple[int, ...],
                   micro: int = 1, features=None, continuous=None):
    """float32[N]: the RM's expected score of each left-padded row (last position only),
    the rows in `micro` micro-batches one after another; `features` float[N, L, D] are
    read at the `continuous` positions (the prompts' user audio)."""
    return expected_score(_digit_logits_in_parts(model, text, audio, mask, digit_ids, micro,
                                                 features, continuous))
