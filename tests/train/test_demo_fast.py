"""The embedded demo end to end in its fast form: every stage, checkpoint and table."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_demo_fast_runs_every_stage(tmp_path):
    result = subprocess.run(
        [sys.executable, "launch/demo.py", "--fast", "--seeds", "1", "--workdir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    for effect in ("| base < SFT < GRPO | emotion:", "| base < SFT < GRPO | gender:",
                   "| base < SFT < GRPO | overall:", "| KL term keeps general ability |",
                   "| small groups often tie (no signal) |",
                   "| reward model reads what the judge hears |"):
        assert effect in out, effect
    assert "time: sft " in out and "grpo + evaluation" in out
    saved = json.loads((tmp_path / "demo_results.json").read_text())
    assert set(saved["grpo"]) == {"0.2", "0"} and all(len(v) == 2 for v in saved["grpo"].values())
    dims = ("emotion", "sarcasm", "age", "gender")
    for row in (saved["base"], saved["sft"], *saved["grpo"]["0.2"], *saved["grpo"]["0"]):
        # balanced queries: overall = mean of dimensions
        assert row["overall"] == pytest.approx(sum(row[d] for d in dims) / 4, abs=1e-9)
        assert row["general"] == pytest.approx(sum(row["per_seed"]["general"]) / 1)
    assert 0 <= saved["tie_rates"]["8"] <= saved["tie_rates"]["2"] <= 1
    # the beta = 0 runs come from the second process, with their own KL weight
    for seed in (0, 1):
        assert (tmp_path / "grpo_runs" / f"beta0_seed{seed}" / "eval.json").exists()
    history = [json.loads(x) for x in (tmp_path / "grpo" / "metrics.jsonl").read_text()
               .splitlines()]
    assert len(history) == 4
    for key in ("reward_mean", "zero_spread_groups", "kl_text", "kl_audio", "entropy_audio",
                "clip_fraction_text", "reply_length_audio", "reward_group_std",
                "judge_zero_spread_groups", "judge_reward_group_std", "judge_reward_mean"):
        assert key in history[-1]
    # The first step's reference (= the sampling policy) gives the sampler's log-probs.
    assert history[0]["sampler_gap_text"] < 1e-4 and history[0]["sampler_gap_audio"] < 1e-4
    assert "sampler_gap_text" not in history[1]
    # Re-running resumes every finished stage instead of training again.
    again = subprocess.run(
        [sys.executable, "launch/demo.py", "--fast", "--seeds", "1", "--workdir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )
    # sft, reward and the two beta = 0.2 runs here; the beta = 0 runs in the second process
    assert again.returncode == 0 and again.stdout.count("already done") == 4
    assert (tmp_path / "grpo_runs" / "beta0.log").read_text().count("already done") == 2
