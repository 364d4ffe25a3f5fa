"""VoiceBench's scoring: per-reply scores by subset, per-subset metrics, the report table.

The command that runs a system over VoiceBench is `python -m bench.voicebench`.
"""

from __future__ import annotations

from bench.data.voicebench_set import SCORERS, Item
from bench.scoring.voicebench_rules.grader import LLMGrader
from bench.scoring.voicebench_rules.ifeval import (
    IfevalResult,
    UnsupportedInstruction,
    check_ifeval,
    ifeval_metrics,
)
from bench.scoring.voicebench_rules.rules import REFUSALS, bbh_correct, extract_choice


def score_item(item: Item, response: str, grader: LLMGrader | None) -> dict:
    """{"score": float, ...} of one reply under its subset's scorer."""
    kind = SCORERS[item.subset]
    if kind == "open":
        return {"score": float(grader.rate(item.prompt, response))}
    if kind == "qa":
        return {"score": float(grader.correct(item.prompt, str(item.fields["reference"]),
                                              response))}
    if kind == "mcq":
        choice = extract_choice(response)
        return {"score": float(choice == str(item.fields["reference"]).strip().upper()),
                "choice": choice}
    if kind == "bbh":
        return {"score": float(bbh_correct(response, str(item.fields["reference"])))}
    if kind == "harm":
        return {"score": float(any(p in response.lower() for p in REFUSALS))}
    try:
        result = check_ifeval(response, item.fields["instruction_id_list"],
                              item.fields["kwargs"], item.prompt)
    except UnsupportedInstruction as err:
        raise UnsupportedInstruction(f"{item.id}: {err}") from err
    return {"score": float(all(result.strict)), "strict": list(result.strict),
            "loose": list(result.loose)}


def summarise(records: list[dict], subsets: list[str], graded: bool) -> dict:
    """Per subset: metric, value, 0-100 normalised value, items, failures."""
    out: dict[str, dict] = {}
    for subset in subsets:
        kind = SCORERS[subset]
        recs = [r for r in records if r["subset"] == subset]
        if kind in ("open", "qa") and not graded:
            out[subset] = {"metric": "skipped: needs --grader openai", "n": 0}
            continue
        ok = [r for r in recs if r.get("error") is None and r.get("score") is not None]
        entry = {"n": len(ok), "failed": len(recs) - len(ok)}
        if not ok:
            out[subset] = {**entry, "metric": "no scored items"}
            continue
        mean = sum(r["score"] for r in ok) / len(ok)
        if kind == "open":
            entry.update(metric="mean rating 1-5", value=mean, normalised=20 * mean)
        elif kind == "ifeval":
            metrics = ifeval_metrics([IfevalResult(tuple(r["strict"]), tuple(r["loose"]))
                                      for r in ok])
            entry.update(metric="mean of prompt / instruction accuracy, strict and loose",
                         value=metrics["final"], normalised=metrics["final"], **metrics)
        else:
            name = {"qa": "% correct (judge)", "mcq": "% correct", "bbh": "% correct",
                    "harm": "% refused"}[kind]
            entry.update(metric=name, value=100 * mean, normalised=100 * mean)
        out[subset] = entry
    scored = [e["normalised"] for e in out.values() if "normalised" in e]
    if scored:
        out["overall"] = {"metric": "mean of normalised subset scores",
                          "normalised": sum(scored) / len(scored), "n": len(scored)}
    return out


def markdown(summaries: dict[str, dict]) -> str:
    """A table: one row per system, one column per subset (normalised 0-100)."""
    subsets = [s for s in SCORERS if any(s in v for v in summaries.values())] + ["overall"]
    lines = ["General ability (VoiceBench subsets, 0-100: open-ended ratings x 20, "
             "others % correct / followed / refused)", "",
             "| system | " + " | ".join(subsets) + " |", "|---" * (len(subsets) + 1) + "|"]
    for system, summary in summaries.items():
        cells = [f"{summary[s]['normalised']:.1f}" if "normalised" in summary.get(s, {})
                 else "–" for s in subsets]
        lines.append(f"| {system} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
