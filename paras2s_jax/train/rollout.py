"""GRPO rollouts: sample G replies per prompt, lay them out for training, score them.

A rollout batch is the left-padded prompts repeated G times followed by the sampled
reply columns. Column `P - 1 + i` (P = prompt length) predicts reply step i, so the
per-token log-probabilities of a full forward over the batch line up with the
sampler's (`token_logprobs`), which is what the clipped ratio and the KL need.
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
from paras2s_jax.sampling import SampleOutput, SamplingConfig, bucket_length
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
    """
    rep = {k: np.repeat(np.asarray(prompts[k]), group, axis=0)
           for k in ("text", "audio", "attention_mask")}
    out = jax.device_get(out)
    return {
        "text": np.concatenate([rep["text"], out.text], 1).astype(np.int32),
        "audio": np.concatenate([rep["audio"], out.audio], 1).astype(np.int32),
        "attention_mask": np.concatenate([rep["attention_mask"], out.reply_mask()], 1),
        "text_mask": np.asarray(out.text_mask),
        "audio_mask": np.asarray(out.audio_mask),
        "sampler_text_logprobs": np.asarray(out.text_logprobs, np.float32),
        "sampler_audio_logprobs": np.asarray(out.audio_logprobs, np.float32),
    }


def pad_prompts(streams: Sequence[layout.Streams], bucket: int, pad_id: int) -> dict:
    """Left-pad prompt streams to the sampler's bucket length (so shapes line up)."""
    return layout.left_pad(streams, bucket_length(max(len(s) for s in streams), bucket), pad_id)


def reply_logprobs(
    model: KimiAudio, batch: dict, sampling: SamplingConfig, with_entropy: bool = False
) -> dict[str, jax.Array]:
    """Per-step log-probabilities [N, T] of the reply tokens under `model` (and entropies).

    The heads run on the reply positions only, in chunks (`paras2s_jax.model.heads`).
    """
    audio = batch["audio"] if model.config.mimo_layers else None  # text-only: Qwen2 alone
    hidden = model.hidden_states(batch["text"], audio, attention_mask=batch["attention_mask"])
    steps = batch["text_mask"].shape[1]
    start = batch["text"].shape[1] - steps - 1
    result = {}
    for stream, h, temp in (
        ("text", hidden.text, sampling.text_temperature),
        ("audio", hidden.audio, sampling.audio_temperature),
    ):
        tokens = batch[stream][:, start + 1:]
        if h is None:  # a text-only model never chooses audio tokens
            result[stream] = jnp.zeros(tokens.shape, jnp.float32)
            if with_entropy:
                result[f"entropy_{stream}"] = result[stream]
            continue
        h = jax.lax.dynamic_slice_in_dim(h, start, steps, axis=1)
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
) -> np.ndarray:
    """Expected Likert score [N] of every sampled reply under the reward model.

    Replies are re-laid out as the reward model saw them in training (parsed, then
    `reward_reply` under its `view`), so the sampler's exact column timing does not leak
    into the reward and a channel outside the view cannot change it.
    """
    mc = reward_model.config
    out = jax.device_get(out)
    seqs = []
    for row in range(out.text.shape[0]):
        text, audio = layout.parse_reply(out.text[row], out.audio[row], mc)
        reply = reward_reply(text, audio, mc, view)
        seqs.append(reward_input(prompt_streams[row // group], reply, suffix_ids, mc))
    batch = layout.left_pad(seqs, bucket_length(max(len(s) for s in seqs), bucket),
                            mc.special.pad)
    mesh = sharding.mesh_of(nnx.state(reward_model))
    if mesh is not None:  # global arrays split over the batch, traced in the mesh
        batch = {k: sharding.replicated_batch_to_global(np.asarray(v), mesh)
                 for k, v in batch.items()}
    with jax.set_mesh(mesh) if mesh is not None else contextlib.nullcontext():
        scores = reward_forward(reward_model, batch["text"], batch["audio"],
                                batch["attention_mask"], tuple(digit_ids), micro)
    return host_value(scores)


def judge_replies(records: Sequence[dict], out: SampleOutput, group: int, config,
                  judge_fn) -> np.ndarray:
    """float32[N]: `judge_fn(record, text, audio)`'s score of every sampled reply, row r
    judged against its own prompt record r // G (see `train.distill.Judge`)."""
    out = jax.device_get(out)
    return np.asarray([judge_fn(records[row // group],
                                *layout.parse_reply(out.text[row], out.audio[row], config))[0]
                       for row in range(out.text.shape[0])], np.float32)


@nnx.jit(static_argnums=(4, 5))
def reward_forward(model: KimiAudio, text, audio, mask, digit_ids: tuple[int, ...],
                   micro: int = 1):
    """float32[N]: the RM's expected score of each left-padded row (last position only),
    the rows in `micro` micro-batches one after another."""
    graphdef, state = nnx.split(model)

    def one(rows):
        logits = nnx.merge(graphdef, state)(
            rows["text"], rows["audio"], attention_mask=rows["mask"], last_only=True).text_logits
        return expected_score(digit_logits(logits, digit_ids))

    rows = {"text": text, "audio": audio, "mask": mask}
    if micro == 1:
        return one(rows)
    return unmicro(jax.lax.map(one, micro_batches(rows, micro)))
