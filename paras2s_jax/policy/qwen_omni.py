"""Qwen2.5-Omni as a `SpeechPolicy`: "text" = the thinker's reply tokens, "audio" = the
talker's codec ids; the streams have their own lengths and are not column-aligned.

Records and batch layouts: `paras2s_jax.policy.qwen_omni_data`. Sampling is the jitted
`model.qwen_omni.sampler` (text, then codes); `SamplingConfig` maps onto its settings
with `max_new_tokens` text tokens and `codecs_per_text` times as many codes, top-p and
the codec repetition penalty set on the policy. Log-probs (`reply_logprobs`) and SFT
losses are teacher-forced forwards (`qwen_omni_forward`); the codec stream's gradient
flows into the thinker through the hidden states the talker reads. Prompt sharing
across a group's rows is not implemented: `group` is accepted and ignored.

The reward model is a Qwen2.5-Omni whose thinker reads the prompt, the reply under its
view ("text": reply text as assistant text; "audio": the reply speech as an audio
segment; "both": text then audio), then the score suffix. Reply speech is rendered to a
mel with the toy renderer on test-sized vocabularies (`qwen_omni_data.is_test_sized`);
for a real checkpoint's codec ids that needs token2wav -> waveform -> log-mel, which is
not wired: the "audio"/"both" views raise NotImplementedError there. Audio is placed
only at the prompt's and the speech segment's placeholders, never at a placeholder id
that a sampled reply text happens to hold (`QwenOmni.thinker_forward`'s `audio_slots`).
"""

from __future__ import annotations

from collections.abc import Sequence

import grain
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx, struct
from transformers import AutoTokenizer

from paras2s_jax.model.qwen_omni.model import QwenOmni, QwenOmniConfig
from paras2s_jax.model.qwen_omni.sampler import OmniSample
from paras2s_jax.model.qwen_omni.sampler import program as sampler_jit
from paras2s_jax.model.qwen_omni.sampler import sample as omni_sample
from paras2s_jax.model.qwen_omni.speech_reply import OmniSampling
from paras2s_jax.policy import qwen_omni_data as data
from paras2s_jax.policy import qwen_omni_forward as fwd
from paras2s_jax.policy.base import (
    BatchSpec,
    Program,
    PromptBatch,
    Reply,
    check_kind,
    sample_in_parts,
)
from paras2s_jax.sampling import SamplingConfig, bucket_length
from paras2s_jax.train.hosts import host_value
from paras2s_jax.train.reward import expected_score
from paras2s_jax.train.step import micro_batches, unmicro


@struct.dataclass
class OmniPolicySample:
    """A sampler output as the stages read it: `sample` (OmniSample, N rows) and
    `finished` bool[N] (both streams stopped on a stop id, not on a cap)."""

    sample: OmniSample

    @property
    def finished(self) -> np.ndarray:
        return np.asarray(self.sample.text_finished) & np.asarray(self.sample.codec_finished)


class _Tokenizer:
    """`encode(str) -> list[int]` without special tokens."""

    def __init__(self, directory: str):
        self._tok = AutoTokenizer.from_pretrained(directory, local_files_only=True)

    def encode(self, text: str) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=False))


def _stop_trimmed(ids: np.ndarray, length: int, finished: bool) -> list[int]:
    return [int(t) for t in ids[:length - int(bool(finished))]]


def _reward_last_logits(model: QwenOmni, batch: dict) -> jax.Array:
    """float32[N, 1, V]: the thinker's logits at the last position of reward inputs."""
    mel = batch["mel"]  # [N, k, M, F]: each row's clips
    return model.thinker_forward(
        batch["input_ids"], batch["attention_mask"], mel.reshape(-1, *mel.shape[2:]),
        batch["mel_mask"].reshape(-1, mel.shape[-1]), audio_slots=batch["audio_slots"],
        last_only=True).logits


@nnx.jit(static_argnums=(2, 3))
def _digit_logits(model: QwenOmni, batch: dict, digit_ids: tuple[int, ...],
                  micro: int) -> jax.Array:
    graphdef, state = nnx.split(model)

    def one(rows):
        logits = _reward_last_logits(nnx.merge(graphdef, state), rows)
        return logits[:, -1, jnp.asarray(digit_ids)].astype(jnp.float32)

    if micro == 1:
        return one(batch)
    return unmicro(jax.lax.map(one, micro_batches(batch, micro)))


class QwenOmniPolicy:
    """The `SpeechPolicy` of `QwenOmni` models (see the module docstring).

    speaker_bos: the speaker's text-BOS id (`speech_reply.speaker_bos_ids`; default the
    tts text-start id, a stand-in for test and toy models)."""

    config_class = QwenOmniConfig
    streams = ("text", "audio")

    def __init__(self, config: QwenOmniConfig, speaker_bos: int | None = None,
                 codecs_per_text: int = 4, text_top_p: float = 1.0, codec_top_p: float = 0.8,
                 repetition_penalty: float = 1.05):
        self.config = config
        self.speaker_bos = config.talker.text_start_token_id if speaker_bos is None \
            else speaker_bos
        self.codecs_per_text = codecs_per_text
        self.text_top_p, self.codec_top_p = text_top_p, codec_top_p
        self.repetition_penalty = repetition_penalty

    def settings(self, sampling: SamplingConfig) -> OmniSampling:
        """The Omni sampler's settings for `sampling`."""
        return OmniSampling(
            speaker_bos=self.speaker_bos, max_text_tokens=sampling.max_new_tokens,
            max_codec_tokens=sampling.max_new_tokens * self.codecs_per_text,
            text_temperature=sampling.text_temperature, text_top_k=sampling.text_top_k,
            text_top_p=self.text_top_p, codec_temperature=sampling.audio_temperature,
            codec_top_k=sampling.audio_top_k, codec_top_p=self.codec_top_p,
            repetition_penalty=self.repetition_penalty)

    def text_tokenizer(self, directory: str) -> _Tokenizer:
        return _Tokenizer(directory)

    # --- SFT ---------------------------------------------------------------------------

    def read_records(self, paths: Sequence[str], features: bool = False) -> list[dict]:
        _no_features(features)
        return data.read_records(paths, self.config)

    def train_batches(self, records: list[dict], global_batch: int, buckets: Sequence[int],
                      seed: int, features: bool = False) -> grain.IterDataset:
        _no_features(features)
        pi, pc = jax.process_index(), jax.process_count()
        if global_batch % pc:
            raise ValueError(f"config.data.global_batch={global_batch} is not divisible by "
                             f"{pc} processes")

        def share(batch: list[dict]) -> dict[str, np.ndarray]:
            whole = data.demo_batch(batch, self.config, global_batch, tuple(buckets))
            return {k: v[pi::pc] for k, v in whole.items()}

        ds = grain.MapDataset.source(records).shuffle(seed=seed).repeat(None)
        return ds.batch(global_batch, drop_remainder=True, batch_fn=list).map(
            share).to_iter_dataset()

    def eval_batches(self, records: list[dict], global_batch: int, buckets: Sequence[int],
                     features: bool = False) -> list[dict]:
        _no_features(features)
        pi, pc = jax.process_index(), jax.process_count()
        out = []
        for start in range(0, len(records), global_batch):
            whole = data.demo_batch(records[start:start + global_batch], self.config,
                                    global_batch, tuple(buckets))
            out.append({k: v[pi::pc] for k, v in whole.items()})
        return out

    def sft_loss(self, model: QwenOmni, batch: dict,
                 rng: jax.Array | None = None) -> dict[str, tuple[jax.Array, jax.Array]]:
        return fwd.demo_ce(model, batch, self.speaker_bos)

    def sft_counts(self, batch: dict) -> dict[str, jax.Array]:
        return {s: jnp.sum(jnp.asarray(batch[f"{s}_mask"], jnp.float32)) for s in self.streams}

    # --- prompts and sampling ------------------------------------------------------------

    def prompt_length(self, record: dict) -> int:
        mel = data.prompt_mel(record, self.config.audio.num_mel_bins)
        return len(data.prompt_ids(record, self.config, mel.shape[1]))

    def prompt_batch(self, records: Sequence[dict], bucket: int, features: bool = False,
                     rows: int | None = None) -> PromptBatch:
        _no_features(features)
        records = list(records)
        filler = (rows or len(records)) - len(records)
        if filler < 0:
            raise ValueError(f"prompt_batch: {len(records)} prompts exceed rows={rows}")
        mels = [data.prompt_mel(r, self.config.audio.num_mel_bins) for r in records]
        layouts = [data.prompt_ids(r, self.config, m.shape[1])
                   for r, m in zip(records, mels, strict=True)]
        seqs = layouts + layouts[:1] * filler
        ids, mask = data.left_pad(seqs, bucket_length(max(map(len, seqs)), bucket),
                                  self.config.thinker.pad_token_id)
        mel, mel_mask = data.stack_mels(mels + mels[:1] * filler,
                                        self.config.audio.chunk_frames)
        return PromptBatch(records, layouts, {"input_ids": ids, "attention_mask": mask,
                                              "mel": mel, "mel_mask": mel_mask})

    def sample(self, model: QwenOmni, prompts: PromptBatch, rng: jax.Array,
               sampling: SamplingConfig, parts: int = 1) -> OmniPolicySample:
        g, settings = sampling.num_samples, self.settings(sampling)

        def run(part: dict[str, np.ndarray], key: jax.Array) -> OmniSample:
            rows = {k: np.repeat(v, g, axis=0) for k, v in part.items()}
            return omni_sample(model, rows["input_ids"], rows["attention_mask"], key, settings,
                               rows["mel"], rows["mel_mask"],
                               prompt_bucket=sampling.prompt_bucket)

        return OmniPolicySample(sample_in_parts(prompts.inputs, parts, rng, run))

    def replies(self, out: OmniPolicySample) -> list[Reply]:
        s = jax.device_get(out.sample)
        return [(_stop_trimmed(s.text[r], s.text_lengths[r], s.text_finished[r]),
                 _stop_trimmed(s.codes[r], s.codec_lengths[r], s.codec_finished[r]))
                for r in range(s.text.shape[0])]

    # --- rollouts ------------------------------------------------------------------------

    def rollout_batch(self, prompts: PromptBatch, out: OmniPolicySample, group: int) -> dict:
        s = jax.device_get(out.sample)
        batch = {k: np.repeat(np.asarray(v), group, axis=0) for k, v in prompts.inputs.items()}
        batch.update(
            reply_text=np.asarray(s.text, np.int32),
            reply_text_attention=np.asarray(s.text_mask, bool),
            text_lengths=np.asarray(s.text_lengths, np.int32),
            reply_audio=np.asarray(s.codes, np.int32),
            reply_audio_attention=np.asarray(s.codec_mask, bool),
            text_mask=np.asarray(s.text_mask, bool), audio_mask=np.asarray(s.codec_mask, bool),
            sampler_text_logprobs=np.asarray(s.text_logprobs, np.float32),
            sampler_audio_logprobs=np.asarray(s.codec_logprobs, np.float32))
        return batch

    def reply_logprobs(self, model: QwenOmni, batch: dict, sampling: SamplingConfig,
                       with_entropy: bool = False, group: int = 1) -> dict[str, jax.Array]:
        out = fwd.sampled_logprobs(model, batch, self.settings(sampling))
        return out if with_entropy else {s: out[s] for s in self.streams}

    # --- reward model --------------------------------------------------------------------

    def _reply_segment(self, text: Sequence[int], codes: Sequence[int], view: str
                       ) -> tuple[list[int], list[int], list[np.ndarray]]:
        """(reply text ids, speech segment ids, its clips) under `view`."""
        if view not in ("text", "audio", "both"):
            raise ValueError(f"reward view must be 'text', 'audio' or 'both', got {view!r}")
        text = list(text) if view in ("text", "both") else []
        ids, clips = [], []
        if view in ("audio", "both"):
            if not data.is_test_sized(self.config):
                raise NotImplementedError(
                    "the reward model's audio view of a real Qwen2.5-Omni reply needs its "
                    "codec ids as a mel (token2wav -> waveform -> log-mel), not wired here")
            # a reply without codes is heard as one code-0 group (one clip per segment)
            mel = data.render_codes_to_mel(codes or [0], self.config.audio.num_mel_bins)
            ids = data.audio_span(self.config, mel.shape[1])
            clips.append(mel)
        return text, ids, clips

    def reward_inputs(self, records: Sequence[dict], suffix_ids: Sequence[int], view: str,
                      buckets: Sequence[int], rows: int,
                      features: bool = False) -> dict[str, np.ndarray]:
        _no_features(features)
        records = list(records)
        records += records[:1] * (rows - len(records))
        seqs, slots, clips = [], [], []
        audio = self.config.thinker.audio_token_index
        for r in records:
            mel = data.prompt_mel(r, self.config.audio.num_mel_bins)
            prompt = data.prompt_ids(r, self.config, mel.shape[1])
            text, speech, reply_clips = self._reply_segment(r["reply_text"], r["reply_audio"],
                                                            view)
            seqs.append(prompt + text + speech + list(suffix_ids))
            # audio goes where the prompt's and the speech segment's placeholders are,
            # never at a placeholder id inside the reply text
            slots.append([t == audio for t in prompt] + [0] * len(text)
                         + [t == audio for t in speech] + [0] * len(suffix_ids))
            clips += [mel, *reply_clips]
        length = data.bucket_for(max(map(len, seqs)), buckets)
        ids, mask = data.left_pad(seqs, length, self.config.thinker.pad_token_id)
        audio_slots, _ = data.left_pad(slots, length, 0)
        mel, mel_mask = data.stack_mels(clips, self.config.audio.chunk_frames)
        per_row = len(clips) // len(records)  # the same in every row under one view
        return {"input_ids": ids, "attention_mask": mask, "audio_slots": audio_slots.astype(bool),
                "mel": mel.reshape(len(records), per_row, *mel.shape[1:]),
                "mel_mask": mel_mask.reshape(len(records), per_row, -1)}

    def reward_logits(self, model: QwenOmni, batch: dict) -> jax.Array:
        return _reward_last_logits(model, batch)

    def reward_digit_logits(self, model: QwenOmni, batch: dict, digit_ids: Sequence[int],
                            micro: int = 1) -> jax.Array:
        return self.reward_digit_program(model, {k: jnp.asarray(v) for k, v in batch.items()},
                                         digit_ids, micro)()

    def reward_scores(self, reward_model: QwenOmni, prompts: PromptBatch,
                      out: OmniPolicySample, group: int, suffix_ids: Sequence[int],
                      digit_ids: Sequence[int], view: str, micro: int = 1) -> np.ndarray:
        replies = self.replies(out)
        recs = prompts.records  # rows past them repeat the first (`prompt_batch`)
        scored = [{**(recs[row // group] if row // group < len(recs) else recs[0]),
                   "reply_text": text, "reply_audio": codes}
                  for row, (text, codes) in enumerate(replies)]
        longest = max(self.prompt_length(r) for r in prompts.records)
        buckets = [bucket_length(longest, 16) * 2**k for k in range(12)]
        batch = self.reward_inputs(scored, suffix_ids, view, buckets, len(scored))
        return host_value(expected_score(self.reward_digit_logits(reward_model, batch,
                                                                  digit_ids, micro)))

    # --- memory plans ----------------------------------------------------------------------

    def reward_clips(self, view: str) -> int:
        """Clips per reward input row under `view`: the prompt's, and the reply speech's
        for "audio" / "both"."""
        return 1 + int(view in ("audio", "both"))

    def batch_spec(self, kind: str, rows: int, length: int, features: bool = False,
                   reply: int = 0, view: str = "text") -> BatchSpec:
        """Qwen2.5-Omni's batches (`qwen_omni_data`'s layout). "train": prompt, reply
        text and reply codes each `length` columns; "prompt": `length` prompt columns,
        the clips replicated as the sampler places them; "rollout": `length` prompt
        columns, `reply` text steps and `reply * codecs_per_text` codes; "reward":
        `length` columns, `reward_clips(view)` clips a row. Mel frames: the longest clip
        that `length` columns hold (`qwen_omni_data.max_frames`)."""
        check_kind(kind)
        _no_features(features)
        c = self.config
        frames = data.max_frames(c, length)
        mels = c.audio.num_mel_bins
        spec: BatchSpec = {"input_ids": ((rows, length), np.int32),
                           "attention_mask": ((rows, length), np.bool_)}
        if kind == "reward":
            k = self.reward_clips(view)
            return spec | {"audio_slots": ((rows, length), np.bool_),
                           "mel": ((rows, k, mels, frames), np.float32),
                           "mel_mask": ((rows, k, frames), np.int32)}
        if kind == "prompt":  # `sample` hands the sampler every clip, replicated
            return spec | {"mel": ((rows, mels, frames), np.float32, (None,) * 3),
                           "mel_mask": ((rows, frames), np.int32, (None,) * 2)}
        spec |= {"mel": ((rows, mels, frames), np.float32),
                 "mel_mask": ((rows, frames), np.int32)}
        text, codes = (length, length) if kind == "train" else (
            reply, reply * self.codecs_per_text)
        spec |= {"reply_text": ((rows, text), np.int32),
                 "reply_text_attention": ((rows, text), np.bool_),
                 "text_lengths": ((rows,), np.int32),
                 "reply_audio": ((rows, codes), np.int32),
                 "reply_audio_attention": ((rows, codes), np.bool_),
                 "text_mask": ((rows, text), np.bool_), "audio_mask": ((rows, codes), np.bool_)}
        if kind == "rollout":
            spec |= {"sampler_text_logprobs": ((rows, text), np.float32),
                     "sampler_audio_logprobs": ((rows, codes), np.float32)}
        return spec

    def sampler_program(self, model: QwenOmni, inputs: dict, rng: jax.Array,
                        sampling: SamplingConfig) -> Program:
        graphdef, state = nnx.split(model)
        return Program(sampler_jit, (graphdef, state, inputs["input_ids"],
                                     inputs["attention_mask"], inputs["mel"],
                                     inputs["mel_mask"], rng),
                       {"settings": self.settings(sampling)})

    def reward_digit_program(self, model: QwenOmni, batch: dict, digit_ids: Sequence[int],
                             micro: int = 1) -> Program:
        return Program(_digit_logits, (model, batch, tuple(digit_ids), micro))

    def reward_columns(self, prompt: int, reply: int, suffix: int, view: str) -> int:
        text = reply if view in ("text", "both") else 0
        speech = reply * self.codecs_per_text + 2 if view in ("audio", "both") else 0
        return prompt + text + speech + suffix


def _no_features(features: bool) -> None:
    if features:
        raise ValueError("config.data.whisper_features is a Kimi-Audio option; Qwen2.5-Omni "
                         "reads its prompts' log-mel (record field 'prompt_mel')")
