"""What the training stages need from a speech-to-speech model: the `SpeechPolicy` protocol.

SFT, distillation, the reward model, GRPO and its audits talk to a policy, never to a
model family. A policy says

- which output **streams** it samples (`streams`: "text" and "audio"); GRPO keeps one KL
  weight, one mask and one log-prob array per stream;
- its **demonstrations** for SFT: records read and checked (`read_records`), training and
  evaluation batches (`train_batches`, `eval_batches`) and the per-stream cross-entropy
  (`sft_loss`, `sft_counts`);
- its text tokenizer (`text_tokenizer`: the reward model's score suffix and digits);
- how a prompt record becomes model inputs (`prompt_batch`: layouts, left padding to the
  sampler's bucket, prompt audio features) and how long a prompt is (`prompt_length`,
  which `config.data.max_prompt_len` caps);
- how replies are **sampled** (`sample`: G replies per prompt, rows prompt-major) and read
  back (`replies`: the text token ids and speech codes of each row, which the judge and
  the distillation records take);
- how a rollout is laid out for training (`rollout_batch`) and the per-step
  **log-probabilities** of each stream's chosen tokens under a model
  (`reply_logprobs`: float32[N, T_s] per stream, with the masks of `rollout_batch`); the
  streams need not share a length or be column-aligned;
- what the **reward model** reads: its inputs for judged records (`reward_inputs`), its
  last-position logits (`reward_logits`, what the reward stage's loss takes), the digit
  logits of a jitted forward (`reward_digit_logits`, evaluation and uncertainty
  selection) and the expected Likert score of every sampled reply
  (`reward_scores`, GRPO's reward), each under the reply view it was trained with;
- for the compiled memory plans (`paras2s_jax.train.plan`): the shapes of each kind of
  batch it makes (`batch_spec`), the jitted sampler call and digit forward with their
  arguments (`sampler_program`, `reward_digit_program`: `Program`s, which a plan lowers
  with abstract arguments) and how long a reward input gets (`reward_columns`).

A model family plugs in by implementing this protocol and registering its policy for its
frozen model-config class (`paras2s_jax.policy.register`); `policy_for(config)` picks it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import jax
import numpy as np

from paras2s_jax.sampling import SampleOutput, SamplingConfig
from paras2s_jax.train.hosts import host_value

Reply = tuple[list[int], list[int]]  # (text token ids, speech codes) of one sampled reply
# {key: (shape, dtype)} or {key: (shape, dtype, logical axis names)} of a batch's arrays
# (names: `paras2s_jax.sharding.ACTIVATION_RULES`; default: the rows split on axis 0)
BatchSpec = dict[str, tuple]
# The batches `SpeechPolicy.batch_spec` describes: SFT batches (`train_batches` /
# `eval_batches`), sampler prompts (`prompt_batch` inputs), rollouts (`rollout_batch`)
# and reward-model inputs (`reward_inputs`).
BATCH_KINDS = ("train", "prompt", "rollout", "reward")


@dataclasses.dataclass(frozen=True)
class Program:
    """A jitted function and its arguments: `fn(*args, **static)` runs it; a memory plan
    lowers `fn` with abstract `args` (`fn.lower(*args, **static)`)."""

    fn: Any
    args: tuple
    static: dict = dataclasses.field(default_factory=dict)

    def __call__(self) -> Any:
        return self.fn(*self.args, **self.static)


def check_kind(kind: str) -> None:
    """Raise unless `kind` is one of `BATCH_KINDS`."""
    if kind not in BATCH_KINDS:
        raise ValueError(f"batch_spec: unknown batch kind {kind!r}; use one of {BATCH_KINDS}")


@dataclasses.dataclass
class PromptBatch:
    """Prompts ready for the sampler: the records, the policy's layout of each, the padded
    model inputs (numpy [B, P] arrays) and the prompts' audio features, if read."""

    records: list[dict]
    layouts: list[Any]
    inputs: dict[str, np.ndarray]
    features: list[np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.records)


def sample_in_parts(inputs: dict[str, np.ndarray], parts: int, rng: jax.Array,
                    run: Callable[[dict[str, np.ndarray], jax.Array], Any]) -> Any:
    """`run(inputs of one part, key)` on `parts` consecutive groups of the prompts in
    `inputs` (the key folded with the part's index when parts > 1); the outputs, fetched
    to the host, concatenated row-wise (rows stay prompt-major): the sampler's memory
    scales with the rows of one call."""
    n = len(next(iter(inputs.values())))
    if n % parts:
        raise ValueError(f"{parts} sampler calls do not divide the {n} prompts")
    size = n // parts
    outs = [jax.tree.map(host_value, run(
        {k: v[i * size:(i + 1) * size] for k, v in inputs.items()},
        rng if parts == 1 else jax.random.fold_in(rng, i))) for i in range(parts)]
    return outs[0] if parts == 1 else jax.tree.map(lambda *xs: np.concatenate(xs), *outs)


class SpeechPolicy(Protocol):
    """A speech-to-speech model as the stages see it (see the module docstring)."""

    streams: tuple[str, ...]
    config: Any  # the frozen model config

    def text_tokenizer(self, directory: str) -> Any:
        """The model's text tokenizer in `directory` (has `encode(str) -> list[int]`)."""

    def read_records(self, paths: Sequence[str], features: bool = False) -> list[dict]:
        """Demonstration records of JSONL `paths`, checked against the model (errors name
        the file and line); `features`: each names its prompt features."""

    def train_batches(self, records: list[dict], global_batch: int, buckets: Sequence[int],
                      seed: int, features: bool = False) -> Any:
        """Endless shuffled SFT batches (this process's rows of each global batch; a
        grain iterable with a checkpointable iterator) padded to `buckets`."""

    def eval_batches(self, records: list[dict], global_batch: int, buckets: Sequence[int],
                     features: bool = False) -> list[dict]:
        """Every record once, in order, as full SFT batches (this process's rows)."""

    def sft_loss(self, model: Any, batch: dict,
                 rng: jax.Array | None = None) -> dict[str, tuple[jax.Array, jax.Array]]:
        """{stream: (CE sum, token count)} over the batch's demonstrated reply tokens."""

    def sft_counts(self, batch: dict) -> dict[str, jax.Array]:
        """{stream: loss tokens in the whole batch} (the accumulation denominators)."""

    def prompt_length(self, record: dict) -> int:
        """Prompt tokens of `record` as the model reads them."""

    def prompt_batch(self, records: Sequence[dict], bucket: int, features: bool = False,
                     rows: int | None = None) -> PromptBatch:
        """`records` laid out and left-padded to `bucket * 2**k` columns; `features`: read
        each record's prompt features; `rows`: repeat the first prompt up to that many
        rows (one compiled shape for every chunk)."""

    def sample(self, model: Any, prompts: PromptBatch, rng: jax.Array,
               sampling: SamplingConfig, parts: int = 1) -> SampleOutput:
        """`sampling.num_samples` replies per prompt (host numpy), rows prompt-major, in
        `parts` sampler calls of consecutive prompts."""

    def replies(self, out: SampleOutput) -> list[Reply]:
        """(text ids, speech codes) of every sampled row."""

    def rollout_batch(self, prompts: PromptBatch, out: SampleOutput, group: int) -> dict:
        """The training batch of a rollout: model inputs, f"{s}_mask" and
        f"sampler_{s}_logprobs" [N, T_s] per stream."""

    def reply_logprobs(self, model: Any, batch: dict, sampling: SamplingConfig,
                       with_entropy: bool = False, group: int = 1) -> dict[str, jax.Array]:
        """Per-stream log-probs [N, T_s] of `batch`'s reply tokens under `model` (and
        f"entropy_{s}"); `group`: consecutive rows sharing a prompt."""

    def reward_inputs(self, records: Sequence[dict], suffix_ids: Sequence[int], view: str,
                      buckets: Sequence[int], rows: int,
                      features: bool = False) -> dict[str, np.ndarray]:
        """The reward model's left-padded inputs [rows, bucket] for scored records (prompt
        fields + "reply_text"/"reply_audio"): prompt, the reply under `view`, then
        `suffix_ids`; padded to the smallest of `buckets` that fits, rows past
        len(records) repeating the first."""

    def reward_logits(self, model: Any, batch: dict) -> jax.Array:
        """float32[N, 1, V]: the reward model's text logits at each row's last position
        (traceable: the reward stage's loss takes them)."""

    def reward_digit_logits(self, model: Any, batch: dict, digit_ids: Sequence[int],
                            micro: int = 1) -> jax.Array:
        """float32[N, 5]: the jitted forward's logits of the digits "1".."5" at each row's
        last position, the rows in `micro` micro-batches."""

    def reward_scores(self, reward_model: Any, prompts: PromptBatch, out: SampleOutput,
                      group: int, suffix_ids: Sequence[int], digit_ids: Sequence[int],
                      view: str, micro: int = 1) -> np.ndarray:
        """float32[N]: the reward model's expected score of every sampled reply (row r
        answers prompt r // group), read under `view`."""

    def batch_spec(self, kind: str, rows: int, length: int, features: bool = False,
                   reply: int = 0, view: str = "text") -> BatchSpec:
        """Shapes and dtypes of a batch of `kind` (`BATCH_KINDS`) with `rows` rows,
        padded to `length` columns (SFT: the bucket of each padded stream; prompts,
        rollouts: the prompt columns; reward: the input's columns) and, for rollouts,
        `reply` sampled steps; `features`: prompt features; `view`: the reward view."""

    def sampler_program(self, model: Any, inputs: dict, rng: jax.Array,
                        sampling: SamplingConfig) -> Program:
        """The jitted sampler call on prompt `inputs` (a "prompt" batch whose rows are
        already repeated `sampling.num_samples` times, padded to its bucket)."""

    def reward_digit_program(self, model: Any, batch: dict, digit_ids: Sequence[int],
                             micro: int = 1) -> Program:
        """The jitted forward `reward_digit_logits` runs on a "reward" batch."""

    def reward_columns(self, prompt: int, reply: int, suffix: int, view: str) -> int:
        """Columns of the reward input of a `prompt`-column prompt, a reply of `reply`
        sampled steps and `suffix` score ids, read under `view` (before bucketing)."""
