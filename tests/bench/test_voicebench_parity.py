"""Our VoiceBench scorers give the official evaluators' verdict on every hand-written reply."""

import json

import pytest

from bench.scoring.voicebench_rules import grader, parity, rules
from bench.voicebench import main

ROWS = [r for f in parity.DEFAULT_FILES for r in parity.read_rows(f)]
# the forms that VoiceBench's rules read and a naive scorer misses
TRICKY = {"openbookqa": ["Answer: B. Because", "I'd go with B.", "My answer would be A.",
                         "Choice A.", "It's B."],
          "bbh": ["Yes, that sentence is plausible", "Jerry is lying."],
          "advbench": ["That's illegal", "No. I don't do that."]}


def test_the_set_is_large_and_has_the_tricky_forms():
    non_ifeval = [r for r in ROWS if r["subset"] != "ifeval"]
    assert len(non_ifeval) >= 150
    assert {r["subset"] for r in ROWS} >= {"openbookqa", "mmsu", "bbh", "advbench",
                                            "alpacaeval", "commoneval", "wildvoice", "sd-qa"}
    for subset, forms in TRICKY.items():
        replies = [r["reply"] for r in ROWS if r["subset"] == subset]
        for form in forms:
            assert any(reply.startswith(form) for reply in replies), (subset, form)
    assert any(r["reply"] == "" for r in ROWS if r["subset"] == "advbench")
    assert any(r["reply"] == "A" and r["reference"] == "(A)" for r in ROWS if r["subset"] == "bbh")


@pytest.mark.parametrize("row", ROWS, ids=[r["id"] for r in ROWS])
def test_official_verdict(row):
    assert parity.agrees(parity.our_verdict(row), row["official"]), (
        row["reply"], row["official"], parity.our_verdict(row))


def test_parity_command_prints_the_table(capsys):
    assert main(["parity"]) == 0
    out = capsys.readouterr().out
    assert "| bbh | 46 | 100.0% | % correct |" in out
    assert "| ifeval | 100 | 100.0% | final | 58.82 | 58.82 |" in out  # the official run: 58.82
    assert f"| all | {len(ROWS)} | 100.0% |" in out and "differs" not in out


def test_parity_command_lists_a_disagreement(tmp_path, capsys):
    row = next(r for r in ROWS if r["subset"] == "openbookqa" and r["official"]["choice"])
    wrong = {**row, "official": {"choice": None}}
    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps(wrong) + "\n")
    assert main(["parity", "--file", str(path)]) == 1
    out = capsys.readouterr().out
    assert "| openbookqa | 1 | 0.0% |" in out and f"differs: {row['id']}" in out


def test_a_row_without_a_needed_field_is_named(tmp_path, capsys):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"subset": "bbh", "id": "x", "prompt": "p", "reply": "yes",
                                "official": {"answer": 1}, "reference": "yes"}) + "\n")
    assert main(["parity", "--file", str(path)]) == 2
    assert f"{path}:1: no field 'task_id'" in capsys.readouterr().err


def _without(key, task=None):
    """The official tables with one list emptied (a rule of VoiceBench's left out)."""
    def tables():
        t = json.loads(rules.TABLES_PATH.read_text())
        if task is None:
            t[key] = []
        else:
            t["bbh_tasks"][task]["rules"] = []
        return t
    return tables


BROKEN = {
    "mcq templates": ("tables", _without("mcq_templates")),
    "bbh yes/no phrases": ("tables", _without("bbh_yes_no")),
    **{f"bbh {task} phrases": ("tables", _without("rules", task))
       for task in ("sports", "hyperbaton", "navigate", "lies")},
    "refusal phrases": ("tables", _without("refusals")),
    "bbh punctuation read as spaces": ("bbh_normalise", str.lower),
    "an empty reply refuses": ("refused", lambda r: bool(r.strip()) and rules.refused(r)),
    "mean of the judge's ratings": ("official_open", lambda s: grader.official_rating(s[0])),
    "exact 'yes' majority": ("majority_yes", lambda s: any("yes" in x.lower() for x in s)),
}


@pytest.mark.parametrize("name", BROKEN)
def test_each_official_rule_left_out_changes_a_verdict(name, monkeypatch):
    target, broken = BROKEN[name]
    module = rules if target in ("tables", "bbh_normalise") else parity
    monkeypatch.setattr(module, target, broken)
    rows = [r for r in ROWS if r["subset"] != "ifeval"]  # ifeval's rules: its own tests
    assert any(not parity.agrees(parity.our_verdict(r), r["official"]) for r in rows), name
