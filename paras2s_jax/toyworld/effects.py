"""The paper's effects as the toy demo measures them, and the one table that shows them.

- base < SFT < GRPO on every dimension (toy-judge means);
- the KL term keeps general ability: GRPO with beta = 0.2 minus beta = 0 on the
  general-ability probe, paired by training seed, with a 95% t-interval;
- small groups tie: the share of groups whose integer judge scores are all equal, with
  G = 8 replies and with G = 2 (the same replies cut into pairs);
- the reward model agrees with the judge: held-out Pearson.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

from paras2s_jax.toyworld.world import DIMENSIONS


def ci95(values: Sequence[float]) -> tuple[float, float]:
    """(mean, half-width of the 95% t-interval); half-width nan for one value."""
    from scipy import stats

    n = len(values)
    if n == 0:
        raise ValueError("ci95 needs at least one value")
    mean = sum(values) / n
    if n < 2:
        return mean, float("nan")
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, float(stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n))


def paired_difference(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Mean of a[i] - b[i] and its 95% t half-width (pairs share a training seed)."""
    if len(a) != len(b):
        raise ValueError(f"paired_difference needs equal lengths, got {len(a)} and {len(b)}")
    return ci95([x - y for x, y in zip(a, b, strict=True)])


def tie_rates(scores_by_prompt: Iterable[Sequence[int]], sizes: Sequence[int] = (2, 8)
              ) -> dict[int, float]:
    """Share of groups with no spread (all scores equal: zero advantage, no learning
    signal) when each prompt's replies are cut, in order, into groups of G in `sizes`."""
    prompts = [list(s) for s in scores_by_prompt]
    out = {}
    for g in sizes:
        groups = [s[i:i + g] for s in prompts for i in range(0, len(s) - g + 1, g)]
        if not groups:
            raise ValueError(f"no prompt has {g} scored replies")
        out[g] = sum(len(set(x)) == 1 for x in groups) / len(groups)
    return out


def distilled_scores(distill_dir: str | Path) -> list[list[int]]:
    """The judge's scores of each prompt's sampled replies, in sample order, from the
    reward stage's distillation shards (`distill-*.jsonl`)."""
    by_prompt: dict[str, dict[int, int]] = defaultdict(dict)
    paths = sorted(Path(distill_dir).glob("distill-*.jsonl"))
    if not paths:
        raise FileNotFoundError(f"{distill_dir} has no distill-*.jsonl shards; run the "
                                "reward stage (python launch/demo.py) first")
    for path in paths:
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            by_prompt[rec["query_id"]][int(rec["sample"])] = int(rec["score"])
    return [[s[k] for k in sorted(s)] for s in by_prompt.values()]


def _fmt(values: Sequence[float]) -> str:
    mean, half = ci95(values)
    return f"{mean:.3f}" if math.isnan(half) else f"{mean:.3f} ± {half:.3f}"


def effects_table(base: dict, sft: dict, grpo: dict[float, list[dict]], ties: dict[int, float],
                  reward: dict, heldout_pairs: int, distill_prompts: int) -> list[str]:
    """Markdown rows of the demo's table. `base`, `sft`: evaluation rows (per dimension,
    "overall", "general"); `grpo`: beta -> evaluation rows of its training seeds (same
    seeds, same order, for every beta); `ties`: G -> tie rate; `reward`: "pearson",
    "accuracy"."""
    kept = grpo[0.2]
    seeds = len(kept)
    rows = ["| effect (paper) | measure | this run | shown |", "|---|---|---|---|"]
    for col in (*DIMENSIONS, "overall"):
        b, s = base[col], sft[col]
        g = sum(r[col] for r in kept) / seeds
        rows.append(f"| base < SFT < GRPO | {col}: toy-judge score (1-5) | "
                    f"{b:.3f} < {s:.3f} < {g:.3f} | {'yes' if b < s < g else 'no'} |")
    gen = {beta: [r["general"] for r in runs] for beta, runs in grpo.items()}
    diff, half = paired_difference(gen[0.2], gen[0.0])
    if math.isnan(half):
        shown = "no: one seed"
    elif diff - half > 0:
        shown = "yes"
    elif diff + half < 0:
        shown = "no: β = 0 kept more"
    else:
        shown = "no: the interval includes 0"
    rows.append(f"| KL term keeps general ability | general ability: SFT {sft['general']:.3f}"
                f"; GRPO β = 0.2 vs β = 0 ({seeds} training seeds) | {_fmt(gen[0.2])} vs "
                f"{_fmt(gen[0.0])}; paired difference {diff:+.3f} ± {half:.3f} | {shown} |")
    rows.append(f"| small groups often tie (no signal) | integer judge, groups with equal "
                f"scores, G = 2 vs G = 8 (SFT replies to {distill_prompts} RL prompts) | "
                f"{ties[2]:.1%} vs {ties[8]:.1%} | {'yes' if ties[2] > ties[8] else 'no'} |")
    rows.append(f"| reward model reads what the judge hears | RM vs judge, {heldout_pairs} "
                f"held-out pairs: Pearson (exact digit) | {reward['pearson']:.3f} "
                f"({reward['accuracy']:.3f}) | measured |")
    return rows
