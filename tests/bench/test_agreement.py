"""Judge-human agreement: correlations and ranking checked against hand computations."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench import agreement
from bench.data.schema import Judgement, write_jsonl


def test_pearson_spearman_kendall_against_formulas():
    h = {("s", f"i{k}"): v for k, v in enumerate([1, 2, 3, 4, 5])}
    j = {("s", f"i{k}"): v for k, v in enumerate([2, 1, 4, 3, 5])}
    res = agreement.agreement(h, j)
    x, y = np.array([1, 2, 3, 4, 5.0]), np.array([2, 1, 4, 3, 5.0])
    r = ((x - x.mean()) * (y - y.mean())).sum() / np.sqrt(((x - x.mean()) ** 2).sum()
                                                          * ((y - y.mean()) ** 2).sum())
    assert res["pearson"]["r"] == pytest.approx(r) == pytest.approx(0.8)
    # No ties: Spearman = 1 - 6 sum d^2 / (n (n^2 - 1)) with d = (1, 1, 1, 1, 0).
    assert res["spearman"]["r"] == pytest.approx(1 - 6 * 4 / (5 * 24))
    # Kendall: 10 pairs, 2 discordant ((1,2) and (3,4)): (8 - 2) / 10.
    assert res["kendall"]["r"] == pytest.approx(0.6)
    for m in ("pearson", "spearman", "kendall"):
        assert res[m]["ci_low"] <= res[m]["r"] <= res[m]["ci_high"]
    lo, hi = res["pearson"]["fisher_ci"]
    assert lo < 0.8 < hi


def test_ranking_counts_swapped_system_pairs():
    human = {"A": 4.0, "B": 3.0, "C": 2.0, "D": 1.0}
    judge = {"A": 4.0, "B": 2.0, "C": 3.0, "D": 1.0}  # B and C swapped
    r = agreement.ranking_agreement(human, judge)
    assert r["swapped_pairs"] == [("B", "C")]
    assert r["kendall_tau"] == pytest.approx((5 - 1) / 6)


def test_cli_joins_human_ratings_with_judgements(tmp_path, capsys):
    js = []
    human_rows = ["system,item_id,rating"]
    for s, offset in (("good", 1), ("bad", -1)):
        for k, score in enumerate([2, 3, 4, 3]):
            js.append(Judgement(item_id=f"q{k}:a", query_id=f"q{k}", style="a",
                                dimension="emotion", split="synthetic", system=s,
                                score=min(5, max(1, score + offset))))
            # Two raters per item, averaged.
            human_rows += [f"{s},q{k}:a,{min(5, max(1, score + offset))}",
                           f"{s},q{k}:a,{min(5, max(1, score + offset + 1))}"]
    write_jsonl(tmp_path / "j.jsonl", js)
    (tmp_path / "h.csv").write_text("\n".join(human_rows) + "\n")
    out = tmp_path / "a.json"
    assert agreement.main(["--human", str(tmp_path / "h.csv"), str(tmp_path / "j.jsonl"),
                           "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["n_items"] == 8
    assert res["systems"]["good"]["human"] > res["systems"]["bad"]["human"]
    assert res["ranking"]["swapped_pairs"] == []
    assert res["pearson"]["r"] > 0.9
    assert "System ranking" in capsys.readouterr().out


def test_bad_rating_names_file_and_line(tmp_path, capsys):
    (tmp_path / "h.csv").write_text("system,item_id,rating\ns,q1:a,7\n")
    write_jsonl(tmp_path / "j.jsonl", [])
    assert agreement.main(["--human", str(tmp_path / "h.csv"), str(tmp_path / "j.jsonl")]) == 2
    assert "h.csv:2: field 'rating'" in capsys.readouterr().err


def test_unmatched_ratings_are_counted_with_examples_never_dropped_silently(tmp_path, capsys):
    js = [Judgement(item_id=f"q{k}:a", query_id=f"q{k}", style="a", dimension="emotion",
                    split="synthetic", system="sysA", score=1 + k) for k in range(4)]
    js.append(Judgement(item_id="q9:a", query_id="q9", style="a", dimension="emotion",
                        split="synthetic", system="sysA", score=None, error="ReplyError"))
    write_jsonl(tmp_path / "j.jsonl", js)
    rows = ["system,item_id,rating"] + [f"sysA,q{k}:a,{1 + k}" for k in range(3)]
    rows += ["wavdir/sysA,q0:a,3", "wavdir/sysA,q1:a,4",  # a renamed system
             "sysA,q7:a,2",  # an item the judge never saw
             "sysA,q9:a,5"]  # an item the judge failed on
    (tmp_path / "h.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "a.json"
    assert agreement.main(["--human", str(tmp_path / "h.csv"), str(tmp_path / "j.jsonl"),
                           "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "- system not in the judgements: 2 (e.g. wavdir/sysA/q0:a, wavdir/sysA/q1:a)" \
        in printed
    assert "- item not judged for that system: 1 (e.g. sysA/q7:a)" in printed
    assert "- judge failed on the item: 1 (e.g. sysA/q9:a)" in printed
    assert "- judge score without a human rating: 1 (e.g. sysA/q3:a)" in printed
    res = json.loads(out.read_text())
    assert res["n_items"] == 3 and res["unmatched"]["system not in the judgements"]["count"] == 2


def test_missing_files_are_clean_errors(tmp_path, capsys):
    write_jsonl(tmp_path / "j.jsonl", [])
    assert agreement.main(["--human", str(tmp_path / "nope.csv"), str(tmp_path / "j.jsonl")]) == 2
    assert "human ratings file not found" in capsys.readouterr().err
    (tmp_path / "h.csv").write_text("system,item_id,rating\n")
    assert agreement.main(["--human", str(tmp_path / "h.csv"), str(tmp_path / "x.jsonl")]) == 2
    assert "judgements file not found" in capsys.readouterr().err
