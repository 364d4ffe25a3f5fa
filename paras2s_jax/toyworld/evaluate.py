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
from flax import nnx

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
    model: nnx.Module,
    queries: list[tuple[dict, Scenario | Request]],
    rng: jax.Array,
    sampling,  # paras2s_jax.sampling.SamplingConfig
    batch_size: int = 64,
) -> ToyScore:
    """Sample one reply per query with `sampling` and judge each; deterministic in `rng`."""
    from paras2s_jax.policy import policy_for  # the sampler is optional for training alone

    policy = policy_for(model.config)
    judgements: list[Judgement] = []
    by_dim: dict[str, list[int]] = defaultdict(list)
    for start in range(0, len(queries), batch_size):
        chunk = queries[start:start + batch_size]
        # A fixed batch size keeps one compilation: pad with copies of the first prompt.
        prompts = policy.prompt_batch([rec for rec, _ in chunk], sampling.prompt_bucket,
                                      rows=batch_size)
        replies = policy.replies(policy.sample(model, prompts, jax.random.fold_in(rng, start),
                                               sampling))
        g = sampling.num_samples
        for i, (_, sc) in enumerate(chunk):
            codes = replies[i * g][1]
            j = judge_general(sc, codes) if isinstance(sc, Request) else judge(sc, codes)
            judgements.append(j)
            by_dim[sc.dimension].append(j.score)
    scores = [j.score for j in judgements]
    return ToyScore(
        mean=float(np.mean(scores)) if scores else float("nan"),
        per_dimension={d: float(np.mean(v)) for d, v in by_dim.items()},
        judgements=judgements,
    )
