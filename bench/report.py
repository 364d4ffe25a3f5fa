"""Paper-style tables and plots from judgements: `python -m bench.report`.

Per dimension and Synthetic / Real / Overall: the mean 1-5 score with a 95% percentile
bootstrap CI over items (10,000 resamples, fixed seed). Overall pools all items, as the
paper's Overall does (it is the item-weighted mean of Synthetic and Real).

Failed items (no reply, bad audio, a judge that never gave a score, ...) count as 1 in
the headline mean, so a system cannot gain by failing its hardest items; the number of
failures is shown beside it, and so is the mean over scored items only (what the paper
reports, since its systems did not fail).

    python -m bench.report runs/bench/A/judgements.jsonl [B.jsonl ...] --paper --out DIR
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.data.paper_results import PAPER_RESULTS
from bench.data.schema import DIMENSIONS, Judgement, read_judgements

SPLIT_COLUMNS = ("synthetic", "real", "overall")
N_BOOT = 10_000


FAILURE_SCORE = 1


@dataclass(frozen=True)
class Cell:
    mean: float | None  # headline: failed items count as FAILURE_SCORE
    lo: float | None  # 95% bootstrap CI of `mean`
    hi: float | None
    n: int  # items, failed ones included
    failed: int
    scored_mean: float | None = None  # scored items only (paper-comparable)


def bootstrap_ci(scores: list[int] | np.ndarray, n_boot: int = N_BOOT, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean."""
    x = np.asarray(scores, dtype=float)
    if len(x) == 0:
        raise ValueError("bootstrap_ci: no scores")
    rng = np.random.default_rng(seed)
    # Chunks bound memory (n_boot x n indices) for sets of thousands of items.
    chunk = max(1, 2_000_000 // len(x))
    means = np.concatenate([
        x[rng.integers(0, len(x), size=(min(chunk, n_boot - i), len(x)))].mean(axis=1)
        for i in range(0, n_boot, chunk)])
    a = (1 - level) / 2
    return float(np.quantile(means, a)), float(np.quantile(means, 1 - a))


def cell(js: list[Judgement]) -> Cell:
    scores = [j.score for j in js if j.score is not None]
    failed = len(js) - len(scores)
    if not js:
        return Cell(None, None, None, 0, 0)
    counted = scores + [FAILURE_SCORE] * failed
    lo, hi = bootstrap_ci(counted)
    return Cell(float(np.mean(counted)), lo, hi, len(js), failed,
                float(np.mean(scores)) if scores else None)


def failure_summary(judgements: list[Judgement], where: Path | str = "") -> str:
    """One line: items, how many failed and at which stage."""
    failed = [j for j in judgements if j.score is None]
    line = f"Items: {len(judgements)}, scored {len(judgements) - len(failed)}, failed {len(failed)}"
    if failed:
        stages = Counter(j.error_stage or "unknown" for j in failed)
        line += " (by stage: " + ", ".join(f"{s} {n}" for s, n in stages.most_common()) + ")"
        line += f"; see 'error' in {where}" if where else ""
        if all(j.error_stage == "system" for j in judgements):
            line += ". Every item failed at the system: check --system / --system-path"
    return line


def dimensions_of(judgements: list[Judgement]) -> list[str]:
    """The dimensions present: the paper's four in order, then extension dimensions."""
    present = list(dict.fromkeys(j.dimension for j in judgements))
    return [d for d in DIMENSIONS if d in present] + [d for d in present if d not in DIMENSIONS]


def table(judgements: list[Judgement]) -> dict[str, dict[str, Cell]]:
    """row (dimension or 'all') -> column (synthetic/real/overall) -> Cell."""
    dims = dimensions_of(judgements)
    out = {}
    for row in [*dims, "all"]:
        rj = [j for j in judgements if row == "all" or j.dimension == row]
        out[row] = {c: cell([j for j in rj if c == "overall" or j.split == c])
                    for c in SPLIT_COLUMNS}
    return out


def _fmt(c: Cell) -> str:
    if c.mean is None:
        return "-"
    if not c.failed:
        return f"{c.mean:.3f} [{c.lo:.2f}, {c.hi:.2f}] (n={c.n})"
    scored = "-" if c.scored_mean is None else f"{c.scored_mean:.3f}"
    return (f"{c.mean:.3f} [{c.lo:.2f}, {c.hi:.2f}] (n={c.n}, {c.failed} failed as 1; "
            f"scored only {scored})")


HEADLINE_NOTE = ("_Means count failed items as 1 (failures as 1); \"scored only\" is the mean "
                 "over scored items, as the paper reports._")


def headline(judgements: list[Judgement]) -> str:
    """The run's two numbers, labelled: failures as 1 (with the count) and scored only."""
    c = cell(judgements)
    if c.mean is None:
        return "**Overall: no items**"
    scored = "-" if c.scored_mean is None else f"{c.scored_mean:.3f}"
    return (f"**Overall (failures as 1): {c.mean:.3f}** [{c.lo:.2f}, {c.hi:.2f}], "
            f"{c.failed} of {c.n} items failed; scored items only (paper-comparable): "
            f"{scored} (n={c.n - c.failed})")


def render_markdown(judgements: list[Judgement]) -> str:
    """One system's table."""
    systems = sorted({j.system for j in judgements})
    heuristic = any(j.heuristic for j in judgements)
    lines = [f"### ParaS2SBench - {', '.join(systems) or '(no results)'}", ""]
    if heuristic:
        lines += ["_Judge: HEURISTIC offline rule judge; not comparable with the paper._", ""]
    lines += [headline(judgements), "", HEADLINE_NOTE, ""]
    lines += ["| Dimension | Synthetic | Real | Overall |", "|---|---|---|---|"]
    for row, cols in table(judgements).items():
        name = "**All**" if row == "all" else row
        lines.append(f"| {name} | " + " | ".join(_fmt(cols[c]) for c in SPLIT_COLUMNS) + " |")
    return "\n".join(lines)


def csv_rows(system: str, t: dict[str, dict[str, Cell]]) -> list[dict]:
    return [{"system": system, "dimension": row, "split": col,
             "mean_failures_as_1": "" if c.mean is None else round(c.mean, 4),
             "ci_low": "" if c.lo is None else round(c.lo, 4),
             "ci_high": "" if c.hi is None else round(c.hi, 4), "n": c.n, "failed": c.failed,
             "mean_scored_only": "" if c.scored_mean is None else round(c.scored_mean, 4)}
            for row, cols in t.items() for col, c in cols.items()]


def _write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["system"])
        w.writeheader()
        w.writerows(rows)


def plot(by_system: dict[str, list[Judgement]], out: Path) -> list[Path]:
    """Per-dimension bars per system (with CIs) and score histograms."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers
    import matplotlib.pyplot as plt

    tables = {s: table(js) for s, js in by_system.items()}
    every = [j for js in by_system.values() for j in js]
    rows = [*dimensions_of(every), "all"]
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(rows), 3.6))
    width = 0.8 / max(len(tables), 1)
    for i, (system, t) in enumerate(tables.items()):
        cells = [t.get(r, {}).get("overall") for r in rows]
        means = [c.mean if c and c.mean is not None else 0.0 for c in cells]
        pairs = list(zip(means, cells, strict=True))
        err = [[m - (c.lo if c and c.lo is not None else m) for m, c in pairs],
               [(c.hi if c and c.hi is not None else m) - m for m, c in pairs]]
        ax.bar(np.arange(len(rows)) + i * width, means, width, yerr=err, capsize=3,
               label=system[:40])
    ax.set_xticks(np.arange(len(rows)) + width * (len(tables) - 1) / 2, rows)
    ax.set_ylim(1, 5)
    ax.set_ylabel("mean score, failures as 1 (95% CI)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    paths = [out / "scores_by_dimension.png"]
    fig.savefig(paths[0], dpi=120)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for system, js in by_system.items():
        counts = [sum(j.score == k for j in js) for k in range(1, 6)]
        ax.plot(range(1, 6), counts, marker="o", label=system[:40])
    ax.set_xticks(range(1, 6))
    ax.set_xlabel("score")
    ax.set_ylabel("items")
    ax.legend(fontsize=7)
    fig.tight_layout()
    paths.append(out / "score_histogram.png")
    fig.savefig(paths[1], dpi=120)
    plt.close(fig)
    return paths


def ledger_markdown(ledger: dict) -> str:
    """Calls, cache hits, estimated cost and time per back end."""
    lines = ["| back end | calls | from cache | est. cost (USD) | time (s) |",
             "|---|---|---|---|---|"]
    for name, b in sorted(ledger.get("by_backend", {}).items()):
        lines.append(f"| {name} | {b['calls']} | {b['cached']} | {b['cost_usd']:.4f} | "
                     f"{b['latency_s']:.1f} |")
    return "\n".join(lines)


def write_report(judgements: list[Judgement], out: Path, plots: bool = True,
                 ledger: dict | None = None) -> None:
    """report.md, table.csv and (optionally) PNG plots for one system's run."""
    out.mkdir(parents=True, exist_ok=True)
    text = render_markdown(judgements) + "\n\n" + failure_summary(judgements)
    backends = judgements[0].backends if judgements else {}
    if backends:
        text += "\n\nScored by: " + "; ".join(f"{k}={v}" for k, v in backends.items())
    if ledger:
        text += "\n\n#### Calls of the last run\n\n" + ledger_markdown(ledger)
    (out / "report.md").write_text(text + "\n")
    by_system: dict[str, list[Judgement]] = {}
    for j in judgements:
        by_system.setdefault(j.system, []).append(j)
    _write_csv(out / "table.csv", [r for s, js in by_system.items()
                                   for r in csv_rows(s, table(js))])
    if plots and judgements:
        plot(by_system, out)


def compare_markdown(by_system: dict[str, list[Judgement]], paper: bool) -> str:
    """Several systems side by side (Synthetic / Real / Overall + per-dimension overall)."""
    dims = dimensions_of([j for js in by_system.values() for j in js])
    head = ["System", "Synthetic", "Real", "Overall", *dims]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for system, js in by_system.items():
        t = table(js)
        tag = " (heuristic judge)" if any(j.heuristic for j in js) else ""
        # A system may not cover every dimension (filtered runs): show "-" there.
        cells = [_fmt(t["all"][c]) for c in SPLIT_COLUMNS] + [
            _fmt(t[d]["overall"]) if d in t else "-" for d in dims]
        lines.append(f"| {system}{tag} | " + " | ".join(cells) + " |")
    if paper:
        for name, r in PAPER_RESULTS.items():
            cells = [f"{r[c]:.3f}" for c in SPLIT_COLUMNS] + ["n/a"] * len(dims)
            lines.append(f"| {name} (paper, GPT-4.1 judge) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def load_systems(paths: list[Path]) -> dict[str, list[Judgement]]:
    """system name -> judgements; one name in two files is refused, never blended."""
    by_system: dict[str, list[Judgement]] = {}
    source: dict[str, Path] = {}
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"judgements file not found: {path}")
        for j in read_judgements(path):
            if source.setdefault(j.system, path) != path:
                raise ValueError(
                    f"system {j.system!r} appears in both {source[j.system]} and {path}; "
                    "score them with distinct --system-name values so their rows stay apart")
            by_system.setdefault(j.system, []).append(j)
    return by_system


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", nargs="+", type=Path, help="judgements.jsonl files")
    ap.add_argument("--paper", action="store_true", help="add the paper's published rows")
    ap.add_argument("--out", type=Path, default=None,
                    help="write compare.md/.csv and plots here (default: print only)")
    ap.add_argument("--voicebench", type=Path, action="append", default=[],
                    help="voicebench.json of `python -m bench.voicebench` (repeatable): "
                         "general ability beside the ParaS2SBench table")
    args = ap.parse_args(argv)
    try:
        by_system = load_systems(args.results)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    text = compare_markdown(by_system, args.paper) + "\n\n" + HEADLINE_NOTE
    if args.paper:
        text += " _Paper rows: scored items of the paper's runs, GPT-4.1 judge._"
    if args.voicebench:
        from bench.scoring.voicebench_rules import markdown as voicebench_markdown

        summaries = {k: v for p in args.voicebench for k, v in json.loads(p.read_text()).items()}
        text += "\n\n" + voicebench_markdown(summaries)
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "compare.md").write_text(text + "\n")
        rows = [r for s, js in by_system.items() for r in csv_rows(s, table(js))]
        if args.paper:
            rows += [{"system": f"{n} (paper)", "dimension": "all", "split": c,
                      "mean_failures_as_1": "", "ci_low": "", "ci_high": "", "n": "",
                      "failed": "", "mean_scored_only": r[c]}
                     for n, r in PAPER_RESULTS.items() for c in SPLIT_COLUMNS]
        _write_csv(args.out / "compare.csv", rows)
        plot(by_system, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
