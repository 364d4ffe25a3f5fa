"""Judge-human agreement: correlations and ranking checked against hand computations."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench import agreement
from bench.schema import Judgement, write_jsonl


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
