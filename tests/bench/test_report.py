"""Report numbers recomputed by hand on a tiny fixture."""

from __future__ import annotations

import csv

import pytest

from bench import report
from bench.paper import PAPER_RESULTS
from bench.schema import Judgement, write_jsonl


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
    assert t["sarcasm"]["synthetic"].mean == pytest.approx(1.0)
    assert t["sarcasm"]["synthetic"].failed == 1 and t["sarcasm"]["synthetic"].n == 1
    assert t["sarcasm"]["overall"].mean == pytest.approx((1 + 2 + 2) / 3)
    assert t["all"]["synthetic"].mean == pytest.approx((5 + 3 + 1) / 3)
    assert t["all"]["real"].mean == pytest.approx((4 + 2 + 2) / 3)
    # Overall pools items (the paper's Overall is the item-weighted mean of the splits).
    assert t["all"]["overall"].mean == pytest.approx(17 / 6)
    assert t["all"]["overall"].n == 6 and t["all"]["overall"].failed == 1


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
    assert "| **All** | 3.000 [" in md and "2.833 [" in md and "1 failed" in md
    rows = list(csv.DictReader(open(tmp_path / "table.csv")))
    cell = {(r["dimension"], r["split"]): r for r in rows}
    assert float(cell[("all", "overall")]["mean"]) == pytest.approx(17 / 6, abs=1e-4)
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
    assert "3.176" in md and "4.725" in md  # pipeline baseline and topline, PAPER.md
    rows = list(csv.DictReader(open(tmp_path / "cmp" / "compare.csv")))
    sys_b = {(r["dimension"], r["split"]): r for r in rows if r["system"] == "sysB"}
    assert float(sys_b[("all", "overall")]["mean"]) == pytest.approx(3.0)
    assert (tmp_path / "cmp" / "scores_by_dimension.png").exists()


def test_system_failures_can_count_as_one_but_harness_failures_never():
    extra = [
        Judgement("q8:a", "q8", "a", "emotion", "real", "sysA", None, error="no reply file",
                  error_stage="system"),
        Judgement("q9:a", "q9", "a", "emotion", "real", "sysA", None, error="silent",
                  error_stage="reply_audio"),
        Judgement("q10:a", "q10", "a", "emotion", "real", "sysA", None, error="judge format",
                  error_stage="judge"),
        Judgement("q11:a", "q11", "a", "emotion", "real", "sysA", None, error="429s",
                  error_stage="system", transient=True),
    ]
    plain = report.table(FIXTURE + extra)
    assert plain["emotion"]["real"].mean == pytest.approx(4.0)
    assert plain["emotion"]["real"].failed == 4
    t = report.table(report.penalise_system_failures(FIXTURE + extra))
    # Real emotion: 4 plus two system failures scored 1 -> (4 + 1 + 1) / 3.
    assert t["emotion"]["real"].mean == pytest.approx(2.0)
    assert t["emotion"]["real"].n == 3 and t["emotion"]["real"].failed == 2
    # The Sarcasm synthetic failure in FIXTURE has no stage: it stays unscored.
    assert t["sarcasm"]["synthetic"].failed == 1


def test_extension_dimensions_get_their_own_rows_after_the_papers():
    judgements = [_j(1, "pauses", "synthetic", 4), _j(2, "emotion", "synthetic", 2),
                  _j(3, "pauses", "synthetic", 2)]
    t = report.table(judgements)
    assert list(t) == ["emotion", "pauses", "all"]
    assert t["pauses"]["overall"].mean == pytest.approx(3.0)
    md = report.compare_markdown({"sysA": judgements}, paper=False)
    assert "| System | Synthetic | Real | Overall | emotion | pauses |" in md
