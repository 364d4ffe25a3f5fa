"""Kimi-Audio as a `SpeechPolicy`: two column-aligned streams from one model.

The text head and the audio head read one shared trunk; each reply step emits a token on
both streams (`paras2s_jax.layout`), so the streams share the reply's columns. Sampling
is `paras2s_jax.sampling.generate`; the log-prob and reward forwards are those of
`paras2s_jax.train.rollout`; the reward model is a Kimi-Audio with LoRA adapters that
reads the prompt and the reply's streams under its view, then a score suffix.
"""

from __future__ import annotations

from collections.abc import Sequence

import grain
import jax
import numpy as np
from flax import nnx

from paras2s_jax import layout
from paras2s_jax.model.config import KimiAudioConfig
from paras2s_jax.model.kimi_audio import KimiAudio
from paras2s_jax.policy.base import (
    BatchSpec,
    Program,
    PromptBatch,
    Reply,
    check_kind,
    sample_in_parts,
)
from paras2s_jax.sampling import SampleOutput, SamplingConfig, decode_program, generate
from paras2s_jax.tokenizer import KimiTextTokenizer
from paras2s_jax.train import data, prompt_features, rollout, sft
from paras2s_jax.train.data import bucket_for
from paras2s_jax.train.reward import reward_input, reward_reply


class KimiAudioPolicy:
    """The `SpeechPolicy` of `KimiAudio` models (see the module docstring)."""

    config_class = KimiAudioConfig
    streams = ("text", "audio")

    def __init__(self, config: KimiAudioConfig):
        self.config = config

    def text_tokenizer(self, directory: str) -> KimiTextTokenizer:
        return KimiTextTokenizer(directory)

    def read_records(self, paths: Sequence[str], features: bool = False) -> list[dict]:
        return data.read_records(paths, self.config, whisper_features=features)

    def train_batches(self, records: list[dict], global_batch: int, buckets: Sequence[int],
                      seed: int, features: bool = False) -> grain.IterDataset:
        return data.train_dataset(records, self.config, global_batch, tuple(buckets), seed=seed,
                                  whisper_features=features)

    def eval_batches(self, records: list[dict], global_batch: int, buckets: Sequence[int],
                     features: bool = False) -> list[dict]:
        return data.eval_batches(records, self.config, global_batch, tuple(buckets), features)

    def sft_loss(self, model: KimiAudio, batch: dict,
                 rng: jax.Array | None = None) -> dict[str, tuple[jax.Array, jax.Array]]:
        return sft.sft_loss(model, batch, rng)

    def sft_counts(self, batch: dict) -> dict[str, jax.Array]:
        return sft.sft_counts(batch)

    def prompt_length(self, record: dict) -> int:
        return len(layout.record_prompt(record, self.config))

    def prompt_batch(self, records: Sequence[dict], bucket: int, features: bool = False,
                     rows: int | None = None) -> PromptBatch:
        records = list(records)
        layouts = [layout.record_prompt(r, self.config) for r in records]
        feats = [prompt_features.load(r) for r in records] if features else None
        filler = (rows or len(records)) - len(records)
        if filler < 0:
            raise ValueError(f"prompt_batch: {len(records)} prompts exceed rows={rows}")
        inputs = rollout.pad_prompts(layouts + layouts[:1] * filler, bucket,
                                     self.config.special.pad,
                                     None if feats is None else feats + feats[:1] * filler)
        return PromptBatch(records, layouts, inputs, feats)

    def sample(self, model: KimiAudio, prompts: PromptBatch, rng: jax.Array,
               sampling: SamplingConfig, parts: int = 1) -> SampleOutput:
        return sample_in_parts(prompts.inputs, parts, rng,
                               lambda part, key: generate(model, part, key, sampling))

    def replies(self, out: SampleOutput) -> list[Reply]:
        out = jax.device_get(out)
        return [layout.parse_reply(out.text[row], out.audio[row], self.config)
                for row in range(out.text.shape[0])]

    def rollout_batch(self, prompts: PromptBatch, out: SampleOutput, group: int) -> dict:
        return rollout.rollout_batch(prompts.inputs, out, group)

    def reply_logprobs(self, model: KimiAudio, batch: dict, sampling: SamplingConfig,
                       with_entropy: bool = False, group: int = 1) -> dict[str, jax.Array]:
        return rollout.reply_logprobs(model, batch, sampling, with_entropy, group)

    def reward_inputs(self, records: Sequence[dict], suffix_ids: Sequence[int], view: str,
                      buckets: Sequence[int], rows: int,
                      features: bool = False) -> dict[str, np.ndarray]:
        c = self.config
        seqs = [reward_input(layout.record_prompt(r, c),
                             reward_reply(r["reply_text"], r["reply_audio"], c, view),
                             suffix_ids, c) for r in records]
        length = bucket_for(max(len(s) for s in seqs), buckets)
        filler = rows - len(seqs)
        out = layout.left_pad(seqs + seqs[:1] * filler, length, c.special.pad)
        batch = {k: out[k] for k in ("text", "audio", "attention_mask")}
        if features:
            feats = [prompt_features.load(r) for r in records]
            batch["continuous"] = out["continuous"]
            batch["whisper_features"] = prompt_features.left_padded(
                seqs + seqs[:1] * filler, feats + feats[:1] * filler, length)
        return batch

    def reward_logits(self, model: KimiAudio, batch: dict) -> jax.Array:
        return model(batch["text"], batch["audio"], attention_mask=batch["attention_mask"],
                     last_only=True, **prompt_features.model_inputs(batch)).text_logits

    def reward_digit_logits(self, model: KimiAudio, batch: dict, digit_ids: Sequence[int],
                            micro: int = 1) -> jax.Array:
        return self.reward_digit_program(model, batch, digit_ids, micro)()

    def reward_scores(self, reward_model: KimiAudio, prompts: PromptBatch,
                      out: SampleOutput, group: int, suffix_ids: Sequence[int],
                      digit_ids: Sequence[int], view: str, micro: int = 1) -> np.ndarray:
        return rollout.score_replies(reward_model, prompts.layouts, out, group, suffix_ids,
                                     digit_ids, view, micro=micro, features=prompts.features)

    # --- memory plans ----------------------------------------------------------------------

    def batch_spec(self, kind: str, rows: int, length: int, features: bool = False,
                   reply: int = 0, view: str = "text") -> BatchSpec:
        """Kimi-Audio's batches: the two streams share the columns. "train": `length`
        columns of `data.BATCH_KEYS`; "prompt": `length` prompt columns (`layout.left_pad`);
        "rollout": `length` prompt + `reply` columns, the per-step fields `reply`
        columns; "reward": `length` columns. Features float32[rows, columns, D] cover
        the prompt (the whole row for SFT and reward inputs)."""
        check_kind(kind)
        columns = length + reply if kind == "rollout" else length
        keys = {"train": data.BATCH_KEYS, "prompt": data.BATCH_KEYS,
                "rollout": ("text", "audio", "attention_mask"),
                "reward": ("text", "audio", "attention_mask")}[kind]
        spec: BatchSpec = {k: ((rows, columns), np.int32 if k in ("text", "audio") else np.bool_)
                           for k in keys}
        if features:
            spec["continuous"] = ((rows, columns), np.bool_)
            spec["whisper_features"] = ((rows, length if kind == "rollout" else columns,
                                         self.config.adaptor_input_dim), np.float32)
        if kind == "rollout":
            for s in self.streams:
                spec[f"{s}_mask"] = ((rows, reply), np.bool_)
            for s in self.streams:
                spec[f"sampler_{s}_logprobs"] = ((rows, reply), np.float32)
        return spec

    def sampler_program(self, model: KimiAudio, inputs: dict, rng: jax.Array,
                        sampling: SamplingConfig) -> Program:
        graphdef, state = nnx.split(model)
        return Program(decode_program, (graphdef, state, inputs["text"], inputs["audio"],
                                        inputs["attention_mask"], inputs["continuous"],
                                        inputs.get("whisper_features"), rng),
                       {"config": sampling})

    def reward_digit_program(self, model: KimiAudio, batch: dict, digit_ids: Sequence[int],
                             micro: int = 1) -> Program:
        return Program(rollout.digit_forward, (
            model, batch["text"], batch["audio"], batch["attention_mask"], tuple(digit_ids),
            micro, batch.get("whisper_features"), batch.get("continuous")))

    def reward_columns(self, prompt: int, reply: int, suffix: int, view: str) -> int:
        return prompt + reply + suffix  # the reply keeps its columns under every view
