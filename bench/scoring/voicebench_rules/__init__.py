"""VoiceBench's scoring: per-reply scores by subset, per-subset metrics, the report table.

Each subset is scored as VoiceBench's own evaluators score it (`rules.py` for multiple
choice, bbh and advbench; `grader.py` for the LLM-judged subsets; `ifeval.py` for IFEval's
instruction checks). The command that runs a system over VoiceBench is
`python -m bench.voicebench`.
"""

from __future__ import annotations

from typing import Any

from bench.data.voicebench_set import SCORERS, Item
from bench.scoring.voicebench_rules.grader import SETUPS, GraderSetup, LLMGrader
from bench.scoring.voicebench_rules.ifeval import (
    IfevalResult,
    UnsupportedInstruction,
    check_ifeval,
    ifeval_metrics,
)
from bench.scoring.voicebench_rules.rules import (
    bbh_answer,
    bbh_pick,
    bbh_truth,
    mcq_choice,
    mcq_pick,
    refused,
)

__all__ = ["SETUPS", "GraderSetup", "LLMGrader", "LEADERBOARD", "score_item", "summarise",
           "markdown"]

# The nine subsets of VoiceBench's leaderboard Overall, in its column order; the alpacaeval
# column is scored on alpacaeval_full when that subset was run.
LEADERBOARD = ("alpacaeval", "commoneval", "wildvoice", "sd-qa", "mmsu", "openbookqa", "bbh",
               "ifeval", "advbench")


def _field(item: Item, name: str) -> Any:
    if name not in item.fields:
        raise ValueError(f"{item.id}: no field {name!r}, which the {item.subset} scorer needs "
                         "(is the local copy of VoiceBench complete?)")
    return item.fields[name]


def score_item(item: Item, response: str, grader: LLMGrader | None, pedant=None) -> dict:
    """{"score": float, ...} of one reply under its subset's official rule.

    `pedant` (sd-qa only, optional) adds VoiceBench's PEDANT score of the reply.
    """
    kind = SCORERS[item.subset]
    if kind == "open":
        return grader.grade_open(item.prompt, response)
    if kind == "qa":
        reference = str(_field(item, "reference"))
        rec = grader.grade_qa(item.prompt, reference, response)
        if pedant is not None:
            rec["pedant"] = pedant.score(reference, response, item.prompt)
        return rec
    if kind == "mcq":
        choice = mcq_choice(response)
        reference = str(_field(item, "reference")).strip()
        return {"score": float(mcq_pick(choice, item.id) == reference),
                "choice": choice, "guessed": choice is None}
    if kind == "bbh":
        answer = bbh_answer(response, str(_field(item, "id")))
        truth = bbh_truth(str(_field(item, "reference")), item.id)
        return {"score": float(bbh_pick(answer, item.id) == truth), "answer": answer,
                "guessed": answer is None}
    if kind == "harm":
        return {"score": float(refused(response))}
    try:
        result = check_ifeval(response, list(_field(item, "instruction_id_list")),
                              [dict(k or {}) for k in _field(item, "kwargs")], item.prompt)
    except UnsupportedInstruction as err:
        raise UnsupportedInstruction(f"{item.id}: {err}") from err
    return {"score": float(all(result.strict)), "strict": list(result.strict),
            "loose": list(result.loose)}


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _subset_metrics(kind: str, ok: list[dict]) -> dict:
    mean = _mean([r["score"] for r in ok])
    if kind == "open":
        return {"metric": "mean rating 1-5", "value": mean, "normalised": 20 * mean}
    if kind == "ifeval":
        metrics = ifeval_metrics([IfevalResult(tuple(r["strict"]), tuple(r["loose"]))
                                  for r in ok])
        return {"metric": "final: mean of prompt/instruction x strict/loose %",
                "value": metrics["final"], "normalised": metrics["final"], **metrics}
    entry = {"metric": {"qa": "% correct (judge majority)", "mcq": "% correct",
                        "bbh": "% correct", "harm": "% refused"}[kind],
             "value": 100 * mean, "normalised": 100 * mean}
    if kind in ("mcq", "bbh"):  # VoiceBench guesses these at random (seeded here)
        entry["guessed"] = 100 * _mean([float(r.get("guessed", False)) for r in ok])
    if kind == "qa" and all("pedant" in r for r in ok):
        entry["pedant"] = 100 * _mean([r["pedant"] for r in ok])
    return entry


def summarise(records: list[dict], subsets: list[str], graded: bool) -> dict:
    """Per subset: metric, value, 0-100 normalised value, items, failures; and the Overall.

    A failed item (its error recorded, e.g. an IFEval instruction the checks cannot score)
    is counted under "failed" and left out of the metric, never scored as wrong.
    """
    out: dict[str, dict] = {}
    for subset in subsets:
        kind = SCORERS[subset]
        recs = [r for r in records if r["subset"] == subset]
        if kind in ("open", "qa") and not graded:
            out[subset] = {"metric": "skipped: needs --grader openai", "n": 0}
            continue
        ok = [r for r in recs if r.get("error") is None and r.get("score") is not None]
        entry: dict = {"n": len(ok), "failed": len(recs) - len(ok)}
        if kind == "ifeval":
            entry["unsupported"] = sum(str(r.get("error")).startswith("UnsupportedInstruction")
                                       for r in recs)
        out[subset] = {**entry, **(_subset_metrics(kind, ok) if ok else
                                   {"metric": "no scored items"})}
    out["overall"] = overall(out)
    return out


def overall(summary: dict[str, dict]) -> dict:
    """VoiceBench's Overall: the mean of the nine leaderboard subsets' 0-100 scores.

    With fewer than nine scored it is the mean of those present, marked partial.
    """
    slots = {s: ("alpacaeval_full" if s == "alpacaeval" and "normalised" in
                 summary.get("alpacaeval_full", {}) else s) for s in LEADERBOARD}
    scored = {s: summary[name]["normalised"] for s, name in slots.items()
              if "normalised" in summary.get(name, {})}
    entry: dict = {"n": len(scored), "missing": [s for s in LEADERBOARD if s not in scored]}
    if scored:
        entry["normalised"] = _mean(list(scored.values()))
    entry["metric"] = ("VoiceBench Overall: mean of the nine leaderboard subsets"
                       if len(scored) == len(LEADERBOARD) else
                       f"partial: mean of {len(scored)} of the 9 leaderboard subsets")
    return entry


def markdown(summaries: dict[str, dict]) -> str:
    """A table: one row per system, one column per subset (normalised 0-100)."""
    subsets = [s for s in SCORERS if any(s in v for v in summaries.values())] + ["overall"]
    lines = ["General ability (VoiceBench subsets, 0-100: open-ended ratings x 20, "
             "others % correct / followed / refused; Overall over fewer than the nine "
             "leaderboard subsets shows how many)", "",
             "| system | " + " | ".join(subsets) + " |", "|---" * (len(subsets) + 1) + "|"]
    for system, summary in summaries.items():
        cells = []
        for s in subsets:
            entry = summary.get(s, {})
            cell = f"{entry['normalised']:.1f}" if "normalised" in entry else "–"
            if s == "overall" and "normalised" in entry and entry["n"] < len(LEADERBOARD):
                cell += f" ({entry['n']} of 9)"
            cells.append(cell)
        lines.append(f"| {system} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
