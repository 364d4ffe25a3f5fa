"""Our VoiceBench scorers give the official evaluators' verdict on every hand-written reply."""

import json

import pytest

from bench.scoring.voicebench_rules import parity
from bench.voicebench import main

ROWS = parity.read_rows(parity.DEFAULT_FILE)
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
