"""The default run: bundled espeak-ng set, offline back ends, no keys, prints the table."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.data import make_offline_set
from bench.data.schema import read_judgements, read_queries
from bench.scoring.options import OFFLINE_DIR

ROOT = Path(__file__).resolve().parents[2]


def test_default_offline_run_scores_the_bundled_set_without_keys(tmp_path):
    env = {k: v for k, v in os.environ.items() if "API_KEY" not in k}
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.score", "--out", str(out), "--cache",
         str(tmp_path / "cache.sqlite"), "--no-progress"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=170)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| **All** |" in proc.stdout
    assert "judge=rule-judge/heuristic-v1" in proc.stdout and "HEURISTIC" in proc.stdout
    assert "ASR=pocketsphinx/en-us" in proc.stdout and "style=prosody/egemaps-v1" in proc.stdout
    res = read_judgements(out / "judgements.jsonl")
    queries = read_queries(OFFLINE_DIR / "queries.jsonl")
    assert len(res) == 2 * len(queries) == 8
    assert all(j.score is not None and j.heuristic for j in res), [j.error for j in res]
    assert all(j.input_caption and j.reply_caption for j in res)
    for name in ("report.md", "table.csv", "scores_by_dimension.png", "ledger.jsonl"):
        assert (out / name).exists(), name


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")
def test_make_offline_set_reproduces_the_bundled_layout(tmp_path):
    path = make_offline_set.build(tmp_path, per_dimension=1)
    assert path.read_text() == (OFFLINE_DIR / "queries.jsonl").read_text()
    made = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.flac"))
    bundled = sorted(p.relative_to(OFFLINE_DIR) for p in OFFLINE_DIR.rglob("*.flac"))
    assert made == bundled and len(made) == 8 * 3
    assert sum(p.stat().st_size for p in OFFLINE_DIR.rglob("*")) < 2_000_000


@pytest.mark.slow
def test_offline_style_aware_replies_beat_style_blind_ones(tmp_path, capsys):
    from bench import report, score

    cells = {}
    for name in ("style_aware", "style_blind"):
        argv = ["--system-path", str(OFFLINE_DIR / "replies" / name), "--system-name", name,
                "--out", str(tmp_path / name), "--cache", str(tmp_path / "c.sqlite"),
                "--no-progress", "--no-plots"]
        assert score.main(argv) == 0
        cells[name] = report.cell(read_judgements(tmp_path / name / "judgements.jsonl"))
    aware, blind = cells["style_aware"], cells["style_blind"]
    assert aware.failed == blind.failed == 0
    assert aware.mean > blind.mean, (aware, blind)  # docs/benchmark.md: 3.125 vs 2.500
    assert "**Overall (failures as 1): " in capsys.readouterr().out
