"""Uncertainty-driven distillation: judge in rounds the replies the reward model is least
sure of (`config.distill.selection="uncertainty"` in `reward_stage`).

Sampling replies is cheap, judging them is the paid part. The replies are sampled first
(the pool); round 0 judges `per_round` of them picked at random, then each later round
fits the reward model on every pair judged so far, scores the pool's unjudged replies
with it and judges the `per_round` it is least sure of (`pick_uncertain`) under one of
two criteria (`config.distill.criterion`): "entropy", the highest entropy of the 5-way
digit distribution, or "boundary", the expected score nearest a boundary between two
digits (a half-integer: the RM cannot tell which side the reply is on). Ensemble
disagreement is not implemented.

Round r is written atomically to `round-{r:03d}.jsonl` (records as `distill.distill`
writes them, plus "pool_index" and "round"), so a killed run resumes at its first
missing round with the judged set of the rounds on disk, and a judged reply is never
judged twice. Single-process.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from paras2s_jax.train.distill import Judge, judge_all, judged_record

# A pool reply: (query record, reply text ids, reply audio codes), as `distill` judges them.
Reply = tuple[dict, list[int], list[int]]


def digit_entropy(probs: np.ndarray) -> np.ndarray:
    """float64[N]: entropy (nats) of each row of a [N, 5] digit distribution."""
    p = np.clip(np.asarray(probs, np.float64), 1e-12, 1.0)
    return -np.sum(p * np.log(p), axis=-1)


def boundary_closeness(probs: np.ndarray) -> np.ndarray:
    """float64[N]: minus the distance of each row's expected score (1..5 under a [N, 5]
    digit distribution) to the nearest half-integer between two digits (1.5 .. 4.5)."""
    expected = np.asarray(probs, np.float64) @ np.arange(1, 6)
    return -np.abs(expected % 1.0 - 0.5)


CRITERIA = {"entropy": digit_entropy, "boundary": boundary_closeness}


def pick_uncertain(probs: np.ndarray, judged: np.ndarray, k: int,
                   criterion: str = "entropy") -> np.ndarray:
    """Indices of the `k` unjudged rows of `probs` ([N, 5] digit distributions) scoring
    highest under `criterion` (a key of CRITERIA), most uncertain first; ties go to the
    lower index. Rows where `judged` (bool[N]) is set are never picked (their
    probabilities are ignored)."""
    if criterion not in CRITERIA:
        raise ValueError(f"config.distill.criterion={criterion!r}: use one of "
                         f"{tuple(CRITERIA)}")
    probs, judged = np.asarray(probs), np.asarray(judged, bool)
    if probs.ndim != 2 or judged.shape != probs.shape[:1]:
        raise ValueError(f"probs {probs.shape} and judged {judged.shape} do not match")
    free = np.flatnonzero(~judged)
    if not 0 <= k <= len(free):
        raise ValueError(f"config.distill.per_round={k}: only {len(free)} unjudged replies "
                         "are left in the pool")
    order = np.argsort(-CRITERIA[criterion](probs[free]), kind="stable")
    return free[order[:k]]


def round_path(out_dir: Path, r: int) -> Path:
    return out_dir / f"round-{r:03d}.jsonl"


def judge_in_rounds(
    pool: Sequence[Reply],
    judge_fn: Judge,
    out_dir: str | Path,
    rounds: int,
    per_round: int,
    fit: Callable[[list[dict]], None],
    score: Callable[[list[Reply]], np.ndarray],
    judge_name: str,
    seed: int = 0,
    criterion: str = "entropy",
) -> list[dict]:
    """Judge `per_round` replies of `pool` in each of `rounds` rounds (see the module
    docstring); returns every judged record, in round order. `fit(records)` (re)trains
    the reward model on the judged records; `score(replies)` gives its [len, 5] digit
    probabilities, ranked by `criterion` (`pick_uncertain`). The caller trains the final
    reward model on the returned records."""
    if rounds < 1:
        raise ValueError(f"config.distill.rounds={rounds} must be >= 1")
    if criterion not in CRITERIA:  # before any call is paid for
        raise ValueError(f"config.distill.criterion={criterion!r}: use one of "
                         f"{tuple(CRITERIA)}")
    if per_round < 1 or rounds * per_round > len(pool):
        raise ValueError(f"config.distill.per_round={per_round} x config.distill.rounds="
                         f"{rounds} must be >= 1 and at most the pool's {len(pool)} replies")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    judged = np.zeros(len(pool), bool)
    records: list[dict] = []
    for r in range(rounds):
        path = round_path(out, r)
        if path.exists():  # a finished round of an earlier run: its judged set, no calls
            done = [json.loads(line) for line in path.read_text().splitlines()]
            for rec in done:
                i = rec["pool_index"]
                if not 0 <= i < len(pool) or list(pool[i][2]) != rec["reply_audio"]:
                    raise ValueError(f"{path}: pool_index {i} is not the reply it was judged "
                                     "as: the pool changed since (sample it as before)")
                judged[i] = True
            records += done
            continue
        if r == 0:  # nothing to fit yet: a random first round
            picked = np.random.default_rng(seed).choice(len(pool), per_round, replace=False)
        else:
            fit(list(records))
            free = np.flatnonzero(~judged)
            probs = np.zeros((len(pool), 5))
            probs[free] = np.asarray(score([pool[i] for i in free]))
            picked = pick_uncertain(probs, judged, per_round, criterion)
        verdicts = judge_all(judge_fn, [pool[i] for i in picked])
        new = [{**judged_record(pool[i], s, why, judge_name), "pool_index": int(i), "round": r}
               for i, (s, why) in zip(picked, verdicts, strict=True)]
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(rec) + "\n" for rec in new))
        tmp.replace(path)
        judged[picked] = True
        records += new
    return records
