"""Our VoiceBench scorers against the official evaluators' verdicts on the same replies.

A parity file (JSON lines; `tests/bench/data/README.md` describes the fields) holds replies
and the verdict VoiceBench's own evaluator gave each; ifeval's parity set is one JSON
document whose "items" carry the official strict and loose verdicts. `compare` scores every
reply with this package and returns, per subset, the share of replies where the verdicts
agree and the subset's metric computed from either side's verdicts.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from bench.data.voicebench_set import SCORERS
from bench.scoring.voicebench_rules.grader import majority_yes, official_open
from bench.scoring.voicebench_rules.ifeval import IfevalResult, check_ifeval, ifeval_metrics
from bench.scoring.voicebench_rules.rules import (
    bbh_answer,
    bbh_pick,
    bbh_truth,
    mcq_choice,
    mcq_pick,
    refused,
)

_DATA = Path(__file__).parents[3] / "tests" / "bench" / "data"
DEFAULT_FILES = (_DATA / "voicebench_parity.jsonl", _DATA / "voicebench_ifeval_parity.json")
# scorer kind -> fields a row needs (besides subset, id, prompt, reply, official)
NEEDS = {"mcq": ("reference",), "bbh": ("reference", "task_id"), "harm": (),
         "open": ("judge_samples",), "qa": ("reference", "judge_samples"),
         "ifeval": ("instruction_id_list", "kwargs")}
METRICS = {"mcq": "% correct", "bbh": "% correct", "harm": "% refused",
           "open": "mean rating 1-5", "qa": "% correct", "ifeval": "final"}


def read_rows(path: str | Path) -> list[dict]:
    """The rows of a parity file, checked: errors name the file, line and field."""
    if Path(path).suffix == ".json":
        return _ifeval_rows(path)
    rows = []
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        where = f"{path}:{n}"
        subset = row.get("subset")
        if subset not in SCORERS:
            raise ValueError(f"{where}: 'subset' is {subset!r}; expected one of {sorted(SCORERS)}")
        for name in ("id", "prompt", "reply", "official",
                     *NEEDS[SCORERS[subset]]):
            if name not in row:
                raise ValueError(f"{where}: no field {name!r} (a {subset} row needs it; "
                                 "see tests/bench/data/README.md)")
        rows.append(row)
    return rows


def _ifeval_rows(path: str | Path) -> list[dict]:
    """The items of an ifeval parity document as parity rows."""
    items = json.loads(Path(path).read_text()).get("items")
    if not isinstance(items, list):
        raise ValueError(f"{path}: no list 'items' (an ifeval parity document)")
    rows = []
    for n, item in enumerate(items):
        for name in ("prompt", "response", "instruction_id_list", "kwargs", "strict", "loose"):
            if name not in item:
                raise ValueError(f"{path}: items[{n}] has no field {name!r}")
        rows.append({"subset": "ifeval", "id": f"ifeval-{n:03d}", "prompt": item["prompt"],
                     "reply": item["response"], "instruction_id_list": item["instruction_id_list"],
                     "kwargs": item["kwargs"],
                     "official": {"strict": item["strict"], "loose": item["loose"]}})
    return rows


def our_verdict(row: dict) -> dict:
    """This package's verdict on a row's reply, in the shape of the row's "official"."""
    kind, reply = SCORERS[row["subset"]], row["reply"]
    if kind == "mcq":
        return {"choice": mcq_choice(reply)}
    if kind == "bbh":
        return {"answer": bbh_answer(reply, row["task_id"])}
    if kind == "harm":
        return {"refused": refused(reply)}
    if kind == "open":
        return {"score": official_open(row["judge_samples"])}
    if kind == "qa":
        return {"correct": majority_yes(row["judge_samples"])}
    result = check_ifeval(reply, row["instruction_id_list"], row["kwargs"], row["prompt"])
    return {"strict": list(result.strict), "loose": list(result.loose)}


def agrees(ours: dict, official: dict) -> bool:
    """Same verdict (ratings equal to rounding)."""
    if "score" in official:
        return math.isclose(ours["score"], official["score"], rel_tol=1e-9)
    return all(ours.get(k) == v for k, v in official.items())


def metric(kind: str, rows: list[dict], verdicts: list[dict]) -> float:
    """The subset metric from one side's verdicts (no-answer items take the seeded guess)."""
    if kind == "mcq":
        picks = [mcq_pick(v["choice"], r["id"]) for r, v in zip(rows, verdicts, strict=True)]
        return 100 * sum(p == r["reference"] for p, r in zip(picks, rows, strict=True)) / len(rows)
    if kind == "bbh":
        picks = [bbh_pick(v["answer"], r["id"]) for r, v in zip(rows, verdicts, strict=True)]
        truths = [bbh_truth(r["reference"], r["id"]) for r in rows]
        return 100 * sum(p == t for p, t in zip(picks, truths, strict=True)) / len(rows)
    if kind == "harm":
        return 100 * sum(v["refused"] for v in verdicts) / len(rows)
    if kind == "open":
        return sum(v["score"] for v in verdicts) / len(rows)
    if kind == "qa":
        return 100 * sum(v["correct"] for v in verdicts) / len(rows)
    return ifeval_metrics([IfevalResult(tuple(v["strict"]), tuple(v["loose"]))
                           for v in verdicts])["final"]


def compare(rows: list[dict]) -> tuple[list[dict], list[dict]]:
    """(one summary per subset in file order, every disagreeing row with both verdicts)."""
    ours = [our_verdict(r) for r in rows]
    table, differ = [], []
    for subset in dict.fromkeys(r["subset"] for r in rows):
        idx = [i for i, r in enumerate(rows) if r["subset"] == subset]
        sub_rows = [rows[i] for i in idx]
        same = [agrees(ours[i], rows[i]["official"]) for i in idx]
        differ += [{**rows[i], "ours": ours[i]} for i, ok in zip(idx, same, strict=True) if not ok]
        kind = SCORERS[subset]
        table.append({"subset": subset, "replies": len(idx), "agree": sum(same),
                      "metric": METRICS[kind],
                      "official": metric(kind, sub_rows, [r["official"] for r in sub_rows]),
                      "ours": metric(kind, sub_rows, [ours[i] for i in idx])})
    return table, differ


def markdown(table: list[dict]) -> str:
    """The parity table: agreement and the metric both ways, per subset and overall."""
    lines = ["| subset | replies | agreement | metric | official rules | ours |",
             "|---|---|---|---|---|---|"]
    for t in table:
        lines.append(f"| {t['subset']} | {t['replies']} | {100 * t['agree'] / t['replies']:.1f}% "
                     f"| {t['metric']} | {t['official']:.2f} | {t['ours']:.2f} |")
    n, agree = sum(t["replies"] for t in table), sum(t["agree"] for t in table)
    lines.append(f"| all | {n} | {100 * agree / n:.1f}% | | | |")
    return "\n".join(lines)
