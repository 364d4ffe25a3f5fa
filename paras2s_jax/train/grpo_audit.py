"""Reward audits during GRPO: is the policy still getting better by the judge's measure?

A policy trained on a distilled reward model can learn replies the model over-rates
while the judge it imitates scores them lower. Every `audit.every` steps (and before the
first) the stage samples the current policy's replies to a fixed held-out prompt sample,
scores them with the reward model and with the judge, and hands the two score vectors
to `Audits.record`: means, their gap (RM - judge), Pearson over the replies, the best
judge mean so far, and what `audit.rule` does about it ("warn", "stop" or "rollback" to
the checkpoint with the best judge mean). The history is one JSON line per audit in
`<workdir>/audits.jsonl` (written by process 0); a resumed run reads it back.

Only process 0 calls the judge (`judge_scores`; its calls may be paid) and broadcasts
the scores. A judge that keeps a running cost in dollars (`cost_usd`, as the benchmark
pipeline's judge does from its cost ledger) has each audit's cost recorded too.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import ml_collections
import numpy as np

from paras2s_jax.train.distill import Judge, judge_all
from paras2s_jax.train.hosts import agreed
from paras2s_jax.train.reward import pearson

AUDIT_FILE = "audits.jsonl"
METRIC = "audit/judge_mean"  # ranks the kept checkpoints when audits are on
RULES = ("warn", "stop", "rollback")


def check_config(cfg: ml_collections.ConfigDict) -> None:
    """Refuse audit settings (`cfg.audit`) that cannot work, naming the field."""
    c = cfg.audit
    if c.rule not in RULES:
        raise ValueError(f"config.audit.rule must be one of {RULES}, got {c.rule!r}")
    for name in ("prompts", "samples_per_prompt", "patience"):
        if c[name] < 1:
            raise ValueError(f"config.audit.{name} must be >= 1, got {c[name]}")
    if c.max_gap <= 0 and c.min_judge_drop <= 0:
        raise ValueError("config.audit needs max_gap > 0 or min_judge_drop > 0 (the rule's "
                         "trigger); both are off")
    if c.max_rollbacks < 0:
        raise ValueError(f"config.audit.max_rollbacks must be >= 0, got {c.max_rollbacks}")
    if c.rule == "rollback" and cfg.checkpoint.keep_best < 1:
        raise ValueError("config.audit.rule='rollback' needs config.checkpoint.keep_best >= 1: "
                         "the best-judged checkpoint is kept as the best one")


def fixed_sample(pool: list[dict], c: ml_collections.ConfigDict) -> list[dict]:
    """`audit.prompts` records of `pool` drawn once with `audit.seed` (in pool order)."""
    if len(pool) < c.prompts:
        raise ValueError(f"config.audit.prompts={c.prompts} exceeds the {len(pool)} "
                         "held-out prompts")
    picks = np.random.default_rng(c.seed).choice(len(pool), c.prompts, replace=False)
    return [pool[i] for i in sorted(picks)]


def read_history(workdir: str | Path, upto: int) -> list[dict]:
    """The audit records of `<workdir>/audits.jsonl` at steps <= `upto` (a run killed
    after an audit but before its checkpoint redoes that audit)."""
    path = Path(workdir) / AUDIT_FILE
    if not path.exists():
        return []
    lines = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    return [r for r in lines if r["step"] <= upto]


def trigger(c: ml_collections.ConfigDict, gap: float, judge_mean: float,
            best_before: float | None) -> str:
    """Why this audit fires the rule ("" when it does not)."""
    reasons = []
    if c.max_gap > 0 and gap > c.max_gap:
        reasons.append(f"RM mean - judge mean = {gap:.3f} > config.audit.max_gap={c.max_gap}")
    if (c.min_judge_drop > 0 and best_before is not None
            and best_before - judge_mean > c.min_judge_drop):
        reasons.append(f"judge mean {judge_mean:.3f} fell {best_before - judge_mean:.3f} "
                       f"below the best audit's {best_before:.3f} > "
                       f"config.audit.min_judge_drop={c.min_judge_drop}")
    return "; ".join(reasons)


def judge_scores(judge_fn: Judge, replies: list[tuple[dict, list[int], list[int]]]
                 ) -> tuple[np.ndarray, float | None]:
    """(float32[len(replies)] judge scores of `replies`, the dollars these calls cost or
    None when the judge keeps no cost, e.g. the toy judge). Process 0 judges; every
    process gets its scores and cost."""
    priced = hasattr(judge_fn, "cost_usd")
    out = np.zeros(len(replies) + 1, np.float64)  # the scores, then the cost
    if jax.process_index() == 0:
        before = judge_fn.cost_usd if priced else 0.0
        out[:-1] = [score for score, _ in judge_all(judge_fn, replies)]
        out[-1] = judge_fn.cost_usd - before if priced else 0.0
    out = agreed(out)
    return out[:-1].astype(np.float32), float(out[-1]) if priced else None


class Audits:
    """The audit history of a run and the decisions of `audit.rule` on it."""

    def __init__(self, c: ml_collections.ConfigDict, workdir: str | Path, start: int):
        """`c`: `config.audit` (checked by `check_config`); `start`: the step resumed at."""
        self.c = c
        self.path = Path(workdir) / AUDIT_FILE
        self.history = read_history(workdir, start)
        self.writes = jax.process_index() == 0
        if self.writes and self.path.exists():  # drop records past the resumed checkpoint
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text("".join(json.dumps(r) + "\n" for r in self.history))
            tmp.replace(self.path)  # atomic: other processes read the whole file

    def due(self, step: int) -> bool:
        """Whether `step` (updates done) is an audit step not audited yet."""
        return step % self.c.every == 0 and not any(r["step"] == step for r in self.history)

    @property
    def judge_calls(self) -> int:
        return sum(r["judge_calls"] for r in self.history)

    @property
    def rollbacks(self) -> int:
        return sum(r["action"] == "rollback" for r in self.history)

    def best(self) -> dict | None:
        """The audit record with the highest judge mean (the earliest of ties)."""
        return max(self.history, key=lambda r: r["judge_mean"], default=None)

    @property
    def cost_usd(self) -> float | None:
        """Dollars the audits' judge calls cost (None when the judge keeps no cost)."""
        costs = [r["cost_usd"] for r in self.history if "cost_usd" in r]
        return sum(costs) if costs else None

    def record(self, step: int, rm: np.ndarray, judged: np.ndarray,
               cost_usd: float | None = None) -> dict:
        """Summarise one audit's scores (and the dollars its judge calls cost, when
        known), decide the action, append the record."""
        best = self.best()
        best_before = None if best is None else best["judge_mean"]
        rm_mean, judge_mean = float(np.mean(rm)), float(np.mean(judged))
        rec = {"step": step, "rm_mean": rm_mean, "judge_mean": judge_mean,
               "gap": rm_mean - judge_mean, "pearson": pearson(rm, judged),
               "judge_best": max(judge_mean, -np.inf if best_before is None else best_before),
               "judge_calls": int(np.size(judged))}
        rec["reason"] = trigger(self.c, rec["gap"], judge_mean, best_before)
        rec["action"] = self._action(rec["reason"])
        rec["judge_calls_total"] = self.judge_calls + rec["judge_calls"]
        if cost_usd is not None:
            rec["cost_usd"] = float(cost_usd)
            rec["cost_usd_total"] = (self.cost_usd or 0.0) + rec["cost_usd"]
        self.history.append(rec)
        if self.writes:
            with open(self.path, "a") as f:
                f.write(json.dumps(rec) + "\n")
        return rec

    def _action(self, reason: str) -> str:
        """The rule's action once `patience` audits in a row fired (a rollback restarts
        the count); a rollback past `max_rollbacks` stops instead."""
        if not reason:
            return ""
        streak = 1
        for r in reversed(self.history):
            if not r["reason"] or r["action"] == "rollback":
                break
            streak += 1
        if streak < self.c.patience:
            return ""
        if self.c.rule == "rollback" and not self.history:
            return "warn"  # the first audit: nothing to roll back to
        if self.c.rule == "rollback" and self.rollbacks >= self.c.max_rollbacks:
            return "stop"
        return self.c.rule

    def metrics(self, rec: dict) -> dict[str, float]:
        """The record's TensorBoard scalars (under `audit/`; the cost when known)."""
        return {k: float(rec[k]) for k in ("rm_mean", "judge_mean", "gap", "pearson",
                                           "judge_best", "judge_calls_total", "cost_usd",
                                           "cost_usd_total") if k in rec}

    def message(self, rec: dict, target: int | None = None) -> str:
        """One line saying at which step the rule fired, why, and what it does."""
        what = {"warn": "warning only", "stop": "stopping the run",
                "rollback": f"rolling back to step {target} (best judge mean "
                            f"{rec['judge_best']:.3f})"}[rec["action"]]
        if rec["action"] == "stop" and self.c.rule == "rollback":
            what += f" (config.audit.max_rollbacks={self.c.max_rollbacks} reached)"
        return f"audit at step {rec['step']}: {rec['reason']}: {what}"

    def results(self) -> dict[str, float]:
        """Summary fields for results.json (numbers only)."""
        best = self.best()
        out = {"audit_judge_calls": float(self.judge_calls),
               "audit_rollbacks": float(self.rollbacks)}
        if self.cost_usd is not None:
            out["audit_cost_usd"] = self.cost_usd
        if best is not None:
            out["audit_judge_best"] = best["judge_mean"]
            out["audit_judge_best_step"] = float(best["step"])
        stops = [r["step"] for r in self.history if r["action"] == "stop"]
        if stops:
            out["audit_stopped_at"] = float(stops[-1])
        return out
