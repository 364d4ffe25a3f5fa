"""Report numbers recomputed by hand on a tiny fixture."""

from __future__ import annotations

import csv

import pytest

from bench import report
from bench.data.paper_results import PAPER_RESULTS
from bench.data.schema import Judgement, write_jsonl


def _j(i: int, dim: str, split: str, score: int | None, system: str = "sysA") -> Judgement:
    return Judgement(item_id=f"q{i}:a", query_id=f"q{i}", style="a", dimension=dim, split=split,
                     system=system, score=score, error=None if score else "ReplyError: none")


FIXTURE = [
    _j(1, "emotion", "synthetic", 5), _j(2, "emotion", "synthetic", 3),
    _j(3, "emotion", "real", 4),
    _j(4, "sarcasm", "synthetic", 1), _j(5, "sarcasm", "synthetic", None),
    _j(6, "sarcasm", "real", 2), _j(7, "sarcasm", "real", 2),
]


def test_means_counts_and_failures_match_hand_computation():
    t = report.table(FIXTURE)
    assert set(t) == {"emotion", "sarcasm", "all"}
    assert t["emotion"]["synthetic"].mean == pytest.approx((5 + 3) / 2)
    assert t["emotion"]["overall"].mean == pytest.approx((5 + 3 + 4) / 3)
    # The failed sarcasm item counts as 1 in the headline mean; scored-only leaves it out.
    assert t["sarcasm"]["synthetic"].mean == pytest.approx((1 + 1) / 2)
    assert t["sarcasm"]["synthetic"].scored_mean == pytest.approx(1.0)
    assert t["sarcasm"]["synthetic"].failed == 1 and t["sarcasm"]["synthetic"].n == 2
    assert t["sarcasm"]["overall"].mean == pytest.approx((1 + 1 + 2 + 2) / 4)
    assert t["sarcasm"]["overall"].scored_mean == pytest.approx((1 + 2 + 2) / 3)
    assert t["all"]["synthetic"].mean == pytest.approx((5 + 3 + 1 + 1) / 4)
    assert t["all"]["real"].mean == pytest.approx((4 + 2 + 2) / 3)
    # Overall pools items (the paper's Overall is the item-weighted mean of the splits).
    assert t["all"]["overall"].mean == pytest.approx(18 / 7)
    assert t["all"]["overall"].scored_mean == pytest.approx(17 / 6)
    assert t["all"]["overall"].n == 7 and t["all"]["overall"].failed == 1


def test_failing_the_hardest_items_cannot_raise_the_headline():
    hard = [_j(i, "emotion", "synthetic", 2) for i in range(4)]
    easy = [_j(i, "emotion", "synthetic", 5) for i in range(4, 8)]
    honest = report.cell(hard + easy)
    dodging = report.cell([_j(i, "emotion", "synthetic", None) for i in range(4)] + easy)
    assert dodging.mean < honest.mean  # (4 * 1 + 4 * 5) / 8 = 3.0 < 3.5
    assert dodging.scored_mean == 5.0 and dodging.failed == 4
    line = report.headline([_j(i, "emotion", "synthetic", None) for i in range(4)] + easy)
    assert "**Overall (failures as 1): 3.000**" in line and "4 of 8 items failed" in line
    assert "scored items only (paper-comparable): 5.000 (n=4)" in line


def test_bootstrap_ci_exact_cases():
    # One item, or identical scores: no spread, the CI collapses onto the mean.
    assert report.bootstrap_ci([4]) == (4.0, 4.0)
    assert report.bootstrap_ci([2, 2, 2]) == (2.0, 2.0)
    # Two items 5 and 3: resampled means are 3, 4, 5 with probability 1/4, 1/2, 1/4,
    # so the 2.5% and 97.5% quantiles are exactly 3 and 5.
    assert report.bootstrap_ci([5, 3]) == (3.0, 5.0)
    lo, hi = report.bootstrap_ci([1, 2, 3, 4, 5, 5, 4])
    assert lo < 24 / 7 < hi and 1 <= lo and hi <= 5


def test_markdown_csv_and_plots_agree(tmp_path):
    report.write_report(FIXTURE, tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert "| **All** | 2.500 [" in md and "2.571 [" in md and "1 failed as 1" in md
    assert "scored only 2.833" in md and "Items: 7, scored 6, failed 1" in md
    rows = list(csv.DictReader(open(tmp_path / "table.csv")))
    cell = {(r["dimension"], r["split"]): r for r in rows}
    assert float(cell[("all", "overall")]["mean_failures_as_1"]) == pytest.approx(18 / 7,
                                                                                  abs=1e-4)
    assert float(cell[("all", "overall")]["mean_scored_only"]) == pytest.approx(17 / 6, abs=1e-4)
    assert cell[("emotion", "real")]["ci_low"] == cell[("emotion", "real")]["ci_high"] == "4.0"
    for name in ("scores_by_dimension.png", "score_histogram.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_mode_includes_paper_rows(tmp_path, capsys):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    write_jsonl(a, FIXTURE)
    write_jsonl(b, [_j(1, "emotion", "synthetic", 2, "sysB"), _j(2, "age", "real", 4, "sysB")])
    assert report.main([str(a), str(b), "--paper", "--out", str(tmp_path / "cmp")]) == 0
    md = capsys.readouterr().out
    assert "| sysA |" in md and "| sysB |" in md
    for name, r in PAPER_RESULTS.items():
        assert f"| {name} (paper, GPT-4.1 judge) | {r['synthetic']:.3f} | {r['real']:.3f} | " \
               f"{r['overall']:.3f} |" in md
    assert "3.176" in md and "4.725" in md  # baseline, topline: bench/data/paper_results.py
    rows = list(csv.DictReader(open(tmp_path / "cmp" / "compare.csv")))
    sys_b = {(r["dimension"], r["split"]): r for r in rows if r["system"] == "sysB"}
    assert float(sys_b[("all", "overall")]["mean_failures_as_1"]) == pytest.approx(3.0)
    assert (tmp_path / "cmp" / "scores_by_dimension.png").exists()


def test_two_files_with_one_system_name_are_refused_and_a_missing_file_is_a_clean_error(
        tmp_path, capsys):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    write_jsonl(a, FIXTURE)
    write_jsonl(b, [_j(1, "emotion", "synthetic", 2)])  # also "sysA": would blend into one row
    assert report.main([str(a), str(b)]) == 2
    err = capsys.readouterr().err
    assert "'sysA' appears in both" in err and "--system-name" in err
    assert report.main([str(a), str(tmp_path / "missing.jsonl")]) == 2
    assert "judgements file not found" in capsys.readouterr().err


def test_extension_dimensions_get_their_own_rows_after_the_papers():
    judgements = [_j(1, "pauses", "synthetic", 4), _j(2, "emotion", "synthetic", 2),
                  _j(3, "pauses", "synthetic", 2)]
    t = report.table(judgements)
    assert list(t) == ["emotion", "pauses", "all"]
    assert t["pauses"]["overall"].mean == pytest.approx(3.0)
    md = report.compare_markdown({"sysA": judgements}, paper=False)
    assert "| System | Synthetic | Real | Overall | emotion | pauses |" in md
