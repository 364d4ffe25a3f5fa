"""Agreement between the judge and human ratings: `python -m bench.agreement`.

    python -m bench.agreement --human ratings.csv runs/bench/*/judgements.jsonl [--out a.json]

`ratings.csv` (or .jsonl) has columns system, item_id, rating (1-5); several raters per
item are averaged. Item level: Pearson, Spearman and Kendall with 95% bootstrap CIs
(pairs resampled, 2,000 times, fixed seed; Pearson also with a Fisher-z CI). System
level: mean human vs mean judge score per system, Kendall tau between the two rankings
and the number of swapped system pairs (the paper reports one swap).

Human ratings that meet no judge score are never dropped silently: they are counted by
reason (system name unknown, item not judged, judge failed on it) with examples, as are
judge scores that no human rated.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from itertools import combinations
from pathlib import Path

import numpy as np
from scipy import stats

from bench.data.schema import Judgement, iter_jsonl, read_judgements

METRICS = {
    "pearson": lambda x, y: stats.pearsonr(x, y)[0],
    "spearman": lambda x, y: stats.spearmanr(x, y)[0],
    "kendall": lambda x, y: stats.kendalltau(x, y)[0],
}


def read_human(path: Path) -> dict[tuple[str, str], float]:
    """(system, item_id) -> mean human rating."""
    if path.suffix == ".jsonl":
        rows = [raw for _, raw in iter_jsonl(path)]
    else:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    acc: dict[tuple[str, str], list[float]] = {}
    for n, row in enumerate(rows, start=2 if path.suffix != ".jsonl" else 1):
        try:
            key, rating = (str(row["system"]), str(row["item_id"])), float(row["rating"])
        except (KeyError, ValueError, TypeError) as err:
            raise ValueError(
                f"{path}:{n}: needs system, item_id and a numeric rating ({err})") from None
        if not 1 <= rating <= 5:
            raise ValueError(f"{path}:{n}: field 'rating': {rating} outside 1-5")
        acc.setdefault(key, []).append(rating)
    return {k: float(np.mean(v)) for k, v in acc.items()}


def bootstrap(fn, x: np.ndarray, y: np.ndarray, n_boot: int = 2000, seed: int = 0):
    """95% percentile CI of fn over resampled pairs (degenerate resamples skipped)."""
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(x), len(x))
        if np.ptp(x[idx]) == 0 or np.ptp(y[idx]) == 0:
            continue  # a constant resample has no correlation
        vals.append(fn(x[idx], y[idx]))
    if not vals:
        return float("nan"), float("nan")
    return float(np.quantile(vals, 0.025)), float(np.quantile(vals, 0.975))


def fisher_ci(r: float, n: int) -> tuple[float, float]:
    if n <= 3 or abs(r) >= 1:
        return float("nan"), float("nan")
    z, se = np.arctanh(r), 1 / np.sqrt(n - 3)
    return float(np.tanh(z - 1.96 * se)), float(np.tanh(z + 1.96 * se))


def ranking_agreement(human: dict[str, float], judge: dict[str, float]) -> dict:
    """Kendall tau between system rankings and the pairs ordered differently."""
    systems = sorted(human)
    swaps = [(a, b) for a, b in combinations(systems, 2)
             if (human[a] - human[b]) * (judge[a] - judge[b]) < 0]
    tau = (stats.kendalltau([human[s] for s in systems], [judge[s] for s in systems])[0]
           if len(systems) > 1 else float("nan"))
    return {"kendall_tau": float(tau), "swapped_pairs": swaps, "n_systems": len(systems)}


def agreement(human: dict[tuple[str, str], float], judge: dict[tuple[str, str], float]) -> dict:
    keys = sorted(set(human) & set(judge))
    if len(keys) < 3:
        raise ValueError(f"only {len(keys)} items have both a human rating and a judge score")
    x = np.array([human[k] for k in keys])
    y = np.array([judge[k] for k in keys])
    out: dict = {"n_items": len(keys)}
    for name, fn in METRICS.items():
        lo, hi = bootstrap(fn, x, y)
        out[name] = {"r": float(fn(x, y)), "ci_low": lo, "ci_high": hi}
    out["pearson"]["fisher_ci"] = fisher_ci(out["pearson"]["r"], len(keys))
    systems = sorted({s for s, _ in keys})
    hm = {s: float(np.mean([human[k] for k in keys if k[0] == s])) for s in systems}
    jm = {s: float(np.mean([judge[k] for k in keys if k[0] == s])) for s in systems}
    out["systems"] = {s: {"human": hm[s], "judge": jm[s]} for s in systems}
    out["ranking"] = ranking_agreement(hm, jm)
    return out


def unmatched(human: dict[tuple[str, str], float], judgements: list[Judgement],
              n_examples: int = 3) -> dict:
    """Ratings that cannot be paired, by reason, with counts and a few examples."""
    systems = {j.system for j in judgements}
    status = {(j.system, j.item_id): j.score is not None for j in judgements}
    reasons: dict[str, list[str]] = {"system not in the judgements": [],
                                     "item not judged for that system": [],
                                     "judge failed on the item": []}
    for system, item in sorted(human):
        if system not in systems:
            reasons["system not in the judgements"].append(f"{system}/{item}")
        elif (system, item) not in status:
            reasons["item not judged for that system"].append(f"{system}/{item}")
        elif not status[(system, item)]:
            reasons["judge failed on the item"].append(f"{system}/{item}")
    unrated = sorted(f"{s}/{i}" for (s, i), ok in status.items() if ok and (s, i) not in human)
    out = {k: {"count": len(v), "examples": v[:n_examples]} for k, v in reasons.items() if v}
    if unrated:
        out["judge score without a human rating"] = {"count": len(unrated),
                                                     "examples": unrated[:n_examples]}
    return out


def render_unmatched(un: dict) -> str:
    if not un:
        return "Every human rating met a judge score and every judge score a rating."
    lines = ["Not paired (left out of the numbers above):"]
    for reason, v in un.items():
        lines.append(f"- {reason}: {v['count']} (e.g. {', '.join(v['examples'])})")
    return "\n".join(lines)


def render(res: dict) -> str:
    lines = [f"Judge vs human, {res['n_items']} items", "",
             "| metric | r | 95% CI (bootstrap) |", "|---|---|---|"]
    for name in METRICS:
        m = res[name]
        lines.append(f"| {name} | {m['r']:.3f} | [{m['ci_low']:.3f}, {m['ci_high']:.3f}] |")
    lines += ["", "| system | human mean | judge mean |", "|---|---|---|"]
    for s, v in sorted(res["systems"].items(), key=lambda kv: -kv[1]["human"]):
        lines.append(f"| {s} | {v['human']:.3f} | {v['judge']:.3f} |")
    r = res["ranking"]
    lines += ["", f"System ranking: Kendall tau {r['kendall_tau']:.3f}, "
              f"{len(r['swapped_pairs'])} swapped pair(s) {r['swapped_pairs'] or ''}"]
    if "unmatched" in res:
        lines += ["", render_unmatched(res["unmatched"])]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.agreement", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--human", type=Path, required=True, help="CSV/JSONL: system,item_id,rating")
    ap.add_argument("results", nargs="+", type=Path, help="judgements.jsonl files")
    ap.add_argument("--out", type=Path, default=None, help="write the numbers as JSON")
    args = ap.parse_args(argv)
    try:
        if not args.human.is_file():
            raise FileNotFoundError(f"human ratings file not found: {args.human}")
        human = read_human(args.human)
        judgements = [j for p in args.results for j in read_judgements(p)]
        judge = {(j.system, j.item_id): float(j.score) for j in judgements
                 if j.score is not None}
        un = unmatched(human, judgements)
        try:
            res = agreement(human, judge)
        except ValueError as err:
            raise ValueError(f"{err}\n{render_unmatched(un)}") from None
        res["unmatched"] = un
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(render(res))
    if args.out:
        args.out.write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
