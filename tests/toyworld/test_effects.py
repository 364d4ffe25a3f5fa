"""The demo's effect measures: intervals, tie rates, distillation scores and the table."""

import json

import pytest

from paras2s_jax.toyworld.effects import (
    ci95,
    distilled_scores,
    effects_table,
    paired_difference,
    tie_rates,
)

DIMS = ("emotion", "sarcasm", "age", "gender")


def test_ci95_is_the_t_interval():
    mean, half = ci95([1.0, 2.0, 3.0])  # sd 1, t(0.975, 2) = 4.303
    assert mean == 2.0 and half == pytest.approx(4.3027 / 3 ** 0.5, rel=1e-4)
    assert ci95([4.0])[0] == 4.0


def test_paired_difference_uses_the_pairs():
    # Every pair differs by exactly 0.3: the paired interval is a point although each
    # side alone varies a lot.
    diff, half = paired_difference([4.1, 4.9, 3.5], [3.8, 4.6, 3.2])
    assert diff == pytest.approx(0.3) and half == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="equal lengths"):
        paired_difference([1.0], [1.0, 2.0])


def test_tie_rates_cut_each_prompt_into_groups_in_order():
    scores = [[5, 5, 4, 4, 5, 4, 5, 5],  # pairs tie 3 of 4; the group of 8 has spread
              [5, 5, 5, 5, 5, 5, 5, 5]]  # all tie
    rates = tie_rates(scores)
    assert rates[2] == pytest.approx(7 / 8) and rates[8] == pytest.approx(1 / 2)
    with pytest.raises(ValueError, match="no prompt has 8"):
        tie_rates([[5, 5]])


def test_distilled_scores_group_by_prompt_in_sample_order(tmp_path):
    recs = [{"query_id": q, "sample": s, "score": 1 + s + (q == "b")}
            for q in ("a", "b") for s in (2, 0, 1)]
    (tmp_path / "distill-00000.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    assert sorted(distilled_scores(tmp_path)) == [[1, 2, 3], [2, 3, 4]]
    with pytest.raises(FileNotFoundError, match="launch/demo.py"):
        distilled_scores(tmp_path / "missing")


def _row(score: float, general: float) -> dict:
    return {**{d: score for d in DIMS}, "overall": score, "general": general}


def test_effects_table_has_a_row_per_effect_and_judges_each():
    runs = {0.2: [_row(4.9, 4.8), _row(4.9, 4.7), _row(4.9, 4.75)],
            0.0: [_row(4.9, 4.5), _row(4.9, 4.4), _row(4.9, 4.45)]}
    rows = effects_table(_row(1.0, 1.1), _row(4.4, 5.0), runs, {2: 0.4, 8: 0.02},
                         {"pearson": 0.75, "accuracy": 0.93}, 576, 432)
    text = "\n".join(rows)
    for dim in (*DIMS, "overall"):
        assert f"| base < SFT < GRPO | {dim}: toy-judge score (1-5) | 1.000 < 4.400 < 4.900 " \
               "| yes |" in text
    kl = next(r for r in rows if r.startswith("| KL term keeps general ability"))
    assert "paired difference +0.300 ± 0.000" in kl and kl.endswith("| yes |")
    assert "| 40.0% vs 2.0% | yes |" in text
    assert "| 0.750 (0.930) | measured |" in text
    # No difference between the betas: the interval includes 0 and the table says so.
    runs[0.0] = [_row(4.9, 4.8), _row(4.9, 4.6), _row(4.9, 4.8)]
    kl = next(r for r in effects_table(_row(1.0, 1.1), _row(4.4, 5.0), runs, {2: 0.4, 8: 0.02},
                                       {"pearson": 0.75, "accuracy": 0.93}, 576, 432)
              if r.startswith("| KL term"))
    assert kl.endswith("| no: the interval includes 0 |")
    # The opposite effect is named as such.
    runs[0.0] = [_row(4.9, 4.9), _row(4.9, 4.8), _row(4.9, 4.85)]
    kl = next(r for r in effects_table(_row(1.0, 1.1), _row(4.4, 5.0), runs, {2: 0.4, 8: 0.02},
                                       {"pearson": 0.75, "accuracy": 0.93}, 576, 432)
              if r.startswith("| KL term"))
    assert kl.endswith("| no: β = 0 kept more |")
    # GRPO below SFT on a dimension is reported, not hidden.
    runs[0.2][0]["age"] = runs[0.2][1]["age"] = runs[0.2][2]["age"] = 4.0
    rows = effects_table(_row(1.0, 1.1), _row(4.4, 5.0), runs, {2: 0.4, 8: 0.02},
                         {"pearson": 0.75, "accuracy": 0.93}, 576, 432)
    assert any(r.startswith("| base < SFT < GRPO | age") and r.endswith("| no |") for r in rows)
