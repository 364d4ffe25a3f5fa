"""`python launch/ablate.py distill`: reward-model agreement with the judge vs judge calls,
for random and uncertainty selection of the pairs to judge: can the judge calls be cut to a quarter?

The pool is the demo reward model's distillation replies (the SFT model's 8 replies to
each of 432 training prompts: 3456 pairs; `launch/demo.py` writes them) and every model
is scored on the demo's held-out pairs (72 held-out queries x 8 replies), so all runs
share one pool and one test set; only the choice of which pool replies are judged
differs. Every model trains for the toy reward preset's 300 steps of 32 pairs.

- random (`distill.selection="random"`): the judged pairs are `n` pool replies drawn
  with the run's seed, for each budget `n` of BUDGETS (fractions of the pool).
- uncertainty (`distill.selection="uncertainty"`): one reward-stage run per seed and
  criterion over the same pool (distill/pool links to the demo's replies), `per_round` =
  pool / 16 replies judged per round for 8 rounds (half the pool): round 0 at random,
  each later one the replies an RM refitted for 300 steps on all pairs judged so far is
  least sure of: highest digit entropy (`distill.criterion="entropy"`) or expected score
  nearest a half-integer between two digits ("boundary"). The refit before round r is
  the RM of r x per_round judged pairs; the stage logs its held-out agreement
  (distill/round_evals.jsonl), and the final model gives the point at 8 x per_round.
  One run gives the whole curve.
"""

from __future__ import annotations

import json
import math
from fractions import Fraction
from pathlib import Path

import numpy as np

from paras2s_jax.toyworld.effects import ci95

BUDGETS = (Fraction(1, 16), Fraction(1, 8), Fraction(1, 4), Fraction(1, 2), Fraction(1))
ROUND_FRACTION = Fraction(1, 16)  # uncertainty: replies judged per round, of the pool
ROUNDS = 8  # uncertainty rounds: 8 x pool / 16 = half the pool
GOAL = Fraction(1, 4)  # the target: random's full-pool Pearson with <= 1/4 of the calls
CRITERIA = ("entropy", "boundary")  # config.distill.criterion of the uncertainty runs


def _demo_distill(configs: dict) -> Path:
    return Path(configs["reward"].workdir) / "distill"


def _stage_cfg(configs: dict, root: Path, seed: int):
    """The demo's reward config in `root` with seed `seed`: one evaluation and one save."""
    cfg = configs["reward"].copy_and_resolve_references()
    cfg.workdir = str(root)
    cfg.seed = cfg.data.shuffle_seed = seed
    cfg.train.eval_every = cfg.train.save_every = cfg.train.total_steps
    cfg.data.eval_files = sorted(str(p) for p in (_demo_distill(configs) / "heldout")
                                 .glob("*.jsonl"))
    return cfg


def _results(root: Path) -> dict:
    out = json.loads((root / "results.json").read_text())
    return {"pearson": out["heldout/pearson"], "accuracy": out["heldout/accuracy"]}


def random_run(configs: dict, pool: list[str], n: int, seed: int) -> dict:
    """Held-out agreement of an RM trained on `n` pool pairs drawn with `seed`."""
    from paras2s_jax.train import stages

    root = Path(configs["grpo"].workdir).parent / "ablate" / f"distill_random_n{n}_seed{seed}"
    if not (root / "results.json").exists():
        root.mkdir(parents=True, exist_ok=True)
        picks = sorted(np.random.default_rng(seed).choice(len(pool), n, replace=False))
        (root / "judged.jsonl").write_text("".join(pool[i] for i in picks))
        cfg = _stage_cfg(configs, root, seed)
        cfg.toy.enabled = False  # trains on the pairs given, distils nothing
        cfg.data.train_files = [str(root / "judged.jsonl")]
        print(f"== reward model, random {n} judged pairs, seed {seed}: {root}", flush=True)
        stages.get("reward")(cfg)
    return _results(root)


def uncertainty_run(configs: dict, per_round: int, seed: int, criterion: str
                    ) -> dict[int, dict]:
    """judged pairs -> held-out agreement of the RM fitted on them, for one seed's
    uncertainty-selection run under `criterion` over the demo's pool."""
    from paras2s_jax.train import stages
    from paras2s_jax.train.reward_stage import ROUND_EVALS

    root = (Path(configs["grpo"].workdir).parent / "ablate"
            / f"distill_{criterion}_p{per_round}_r{ROUNDS}_seed{seed}")
    if not (root / "results.json").exists():
        (root / "distill").mkdir(parents=True, exist_ok=True)
        for name, target in (("pool", "train"), ("heldout", "heldout")):  # sampled once
            if not (root / "distill" / name).exists():
                (root / "distill" / name).symlink_to(_demo_distill(configs) / target)
        cfg = _stage_cfg(configs, root, seed)
        cfg.distill.selection, cfg.distill.rounds = "uncertainty", ROUNDS
        cfg.distill.per_round, cfg.distill.round_steps = per_round, cfg.train.total_steps
        cfg.distill.criterion = criterion
        print(f"== reward model, uncertainty ({criterion}) {ROUNDS} x {per_round}, seed "
              f"{seed}: {root}", flush=True)
        stages.get("reward")(cfg)
    curve = {}
    for line in (root / ROUND_EVALS).read_text().splitlines():  # a redone refit: the last
        row = json.loads(line)
        curve[row["judged"]] = {"pearson": row["pearson"], "accuracy": row["accuracy"]}
    curve[ROUNDS * per_round] = _results(root)
    return curve


def _fmt(values: list[float]) -> str:
    if not values:
        return "—"
    mean, half = ci95(values)
    return f"{mean:.3f}" if math.isnan(half) else f"{mean:.3f} ± {half:.3f}"


def goal_line(pool: int, random: dict[int, list[dict]], uncertain: dict[int, list[dict]],
              criterion: str = "entropy") -> str:
    """Whether uncertainty selection (under `criterion`) with at most GOAL x pool judged
    pairs reaches the mean held-out Pearson of random selection with the whole pool."""
    full = float(np.mean([r["pearson"] for r in random[pool]]))
    cheap = {n: float(np.mean([r["pearson"] for r in rows]))
             for n, rows in uncertain.items() if n <= pool * GOAL}
    n_best = max(cheap, key=cheap.get)
    reached = [n for n in sorted(cheap) if cheap[n] >= full]
    verdict = (f"yes: from {reached[0]} judged pairs ({reached[0] / pool:.3g} of the calls)"
               if reached else "no")
    return (f"Goal ({criterion} selection with <= {int(pool * GOAL)} judge calls, {GOAL} of "
            f"the pool, reaches random selection's full-pool Pearson {full:.3f}): {verdict}; "
            f"its best mean with <= {int(pool * GOAL)} calls is {cheap[n_best]:.3f} "
            f"at {n_best} judged pairs.")


def distill_sweep(configs: dict, seeds: int) -> None:
    """Run random selection and each uncertainty criterion, `seeds` seeds each; print the
    curve table and the goal lines."""
    pool = [line + "\n" for p in sorted((_demo_distill(configs) / "train").glob("*.jsonl"))
            for line in p.read_text().splitlines()]
    n_pool = len(pool)
    per_round = int(n_pool * ROUND_FRACTION)
    budgets = [int(n_pool * f) for f in BUDGETS]
    random = {n: [random_run(configs, pool, n, s) for s in range(seeds)] for n in budgets}
    uncertain = {}
    for criterion in CRITERIA:
        curves = [uncertainty_run(configs, per_round, s, criterion) for s in range(seeds)]
        uncertain[criterion] = {n: [c[n] for c in curves] for n in sorted(curves[0])}
    rows = {"random": random, **uncertain}
    print(f"\nDistillation: reward-model agreement with the toy judge on the demo's held-out "
          f"pairs vs judged training pairs (pool: {n_pool} sampled replies), random vs "
          f"uncertainty selection ({' / '.join(CRITERIA)}), mean ± 95% CI over {seeds} "
          f"seeds; {configs['reward'].train.total_steps} RM steps of "
          f"{configs['reward'].data.global_batch} pairs per fit; uncertainty: {per_round} "
          f"judged per round")
    print("| judged pairs | of the pool | " + " | ".join(f"{k} Pearson" for k in rows)
          + " | " + " | ".join(f"{k} exact digit" for k in rows) + " |")
    print("|---" * (2 + 2 * len(rows)) + "|")
    for n in sorted(set().union(*rows.values())):
        cells = [_fmt([x[m] for x in curve.get(n, [])]) for m in ("pearson", "accuracy")
                 for curve in rows.values()]
        print(f"| {n} | {Fraction(n, n_pool)} | " + " | ".join(cells) + " |")
    for criterion, curve in uncertain.items():
        print(goal_line(n_pool, random, curve, criterion))
