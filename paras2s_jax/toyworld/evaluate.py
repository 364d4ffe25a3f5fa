"""Score a model on held-out toy queries: sample a spoken reply, listen, judge.

Queries are (record, target) pairs: a paralinguistic `Scenario` (judged by `judge`) or a
general-ability `Request` (judged by `judge_general`); both name their score column in
`.dimension`.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict

import jax
import numpy as np

from paras2s_jax import layout
from paras2s_jax.model import KimiAudio
from paras2s_jax.toyworld.general import Request, judge_general
from paras2s_jax.toyworld.judge import Judgement, judge
from paras2s_jax.toyworld.world import DIMENSIONS, Scenario


@dataclasses.dataclass(frozen=True)
class ToyScore:
    """Mean judge score overall and per dimension, and every judgement."""

    mean: float
    per_dimension: dict[str, float]
    judgements: list[Judgement]

    def summary(self) -> str:
        dims = "  ".join(f"{d} {self.per_dimension.get(d, float('nan')):.2f}" for d in DIMENSIONS)
        return f"{self.mean:.3f}  ({dims})"


def score_model(
    model: KimiAudio,
    queries: list[tuple[dict, Scenario | Request]],
    rng: jax.Array,
    sampling,  # paras2s_jax.sampling.SamplingConfig
    batch_size: int = 64,
) -> ToyScore:
    """Sample one reply per query with `sampling` and judge each; deterministic in `rng`."""
    from paras2s_jax.sampling import generate  # the sampler is optional for training alone

    mc = model.config
    judgements: list[Judgement] = []
    by_dim: dict[str, list[int]] = defaultdict(list)
    for start in range(0, len(queries), batch_size):
        chunk = queries[start:start + batch_size]
        streams = [layout.record_prompt(rec, mc) for rec, _ in chunk]
        # A fixed batch size keeps one compilation: pad with copies of the first prompt.
        streams += [streams[0]] * (batch_size - len(streams))
        length = max(len(s) for s in streams)
        prompts = layout.left_pad(streams, length, mc.special.pad)
        out = generate(model, prompts, jax.random.fold_in(rng, start), sampling)
        text, audio = np.asarray(out.text), np.asarray(out.audio)
        g = sampling.num_samples
        for i, (_, sc) in enumerate(chunk):
            _, codes = layout.parse_reply(text[i * g], audio[i * g], mc)
            j = judge_general(sc, codes) if isinstance(sc, Request) else judge(sc, codes)
            judgements.append(j)
            by_dim[sc.dimension].append(j.score)
    scores = [j.score for j in judgements]
    return ToyScore(
        mean=float(np.mean(scores)) if scores else float("nan"),
        per_dimension={d: float(np.mean(v)) for d, v in by_dim.items()},
        judgements=judgements,
    )
