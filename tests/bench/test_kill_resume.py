"""SIGKILL bench.score mid-run, run it again: nothing lost, nothing finished is paid twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench.data.schema import iter_jsonl, read_judgements
from tests.bench.conftest import PLANTED_KEY, make_remote_set, remote_argv

ROOT = Path(__file__).resolve().parents[2]


def _run(argv, **kw) -> subprocess.Popen:
    env = {**os.environ, "BENCH_TEST_KEY": PLANTED_KEY}
    return subprocess.Popen([sys.executable, "-m", "bench.score", *argv], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def _finished(path: Path) -> set[str]:
    if not path.exists():
        return set()
    return {raw["item_id"] for _, raw in iter_jsonl(path, tolerate_torn_tail=True)}


def test_sigkill_then_resume_loses_nothing_and_repeats_no_finished_call(tmp_path, fake_server):
    queries, markers = make_remote_set(tmp_path / "data", fake_server, 8)
    fake_server.delay_s = 0.05  # slow enough to be killed mid-run
    out, cache = tmp_path / "out", tmp_path / "cache.sqlite"
    argv = remote_argv(fake_server, queries, out, cache)
    results = out / "judgements.jsonl"

    proc = _run(argv)
    deadline = time.monotonic() + 60
    while len(_finished(results)) < 4 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    done_first = _finished(results)
    assert 4 <= len(done_first) < 16, done_first
    counts_after_kill = {m: fake_server.item_counts(m) for m in markers}

    fake_server.delay_s = 0.0
    proc = _run(argv)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr.decode()[-2000:]
    final = read_judgements(results)
    ids = [j.item_id for j in final]
    assert sorted(ids) == sorted(f"{m[:3]}:{m[3]}" for m in markers)  # all 16, once each
    assert len(results.read_text().splitlines()) == 16  # compacted: no duplicates on disk
    assert all(j.score == 4 for j in final), [j.error for j in final if j.score is None]
    for m in markers:
        if f"{m[:3]}:{m[3]}" in done_first:
            assert fake_server.item_counts(m) == counts_after_kill[m], m
        else:
            assert fake_server.item_counts(m) > 0
    print(f"killed after {len(done_first)}/16 items; resumed the other {16 - len(done_first)}")
