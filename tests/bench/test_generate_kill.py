"""SIGKILL `python -m bench.generate run` mid-way, run it again: no answered call repeats."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from bench.data.drafts import read_drafts
from tests.bench.conftest import PLANTED_KEY
from tests.bench.gen_script import EXPECTED_DROPPED, EXPECTED_KEPT, script

ROOT = Path(__file__).resolve().parents[2]


def _run(server, out: Path) -> subprocess.Popen:
    env = {**os.environ, "BENCH_TEST_KEY": PLANTED_KEY}
    argv = ["run", "--out", str(out), "--base-url", server.base_url, "--key-env",
            "BENCH_TEST_KEY", "--concurrency", "1", "--timeout", "5", "--backoff", "0.01"]
    return subprocess.Popen([sys.executable, "-m", "bench.generate", *argv], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_sigkill_then_resume_repeats_no_answered_call(tmp_path, fake_server):
    script(fake_server)
    fake_server.delay_s = 0.05  # slow enough to be killed between filter calls
    out = tmp_path / "gen"
    proc = _run(fake_server, out)
    deadline = time.monotonic() + 60
    while _lines(out / "progress.jsonl") < 3 and proc.poll() is None \
            and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (out / "kept.jsonl").exists()
    time.sleep(0.3)  # let the server log a request that was in flight at the kill
    first = fake_server.rule_bodies()
    finished_first = _lines(out / "progress.jsonl")

    fake_server.delay_s = 0.0
    proc = _run(fake_server, out)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr.decode()[-2000:]
    assert {d.id for d in read_drafts(out / "kept.jsonl")} == EXPECTED_KEPT
    assert {d.id: d.dropped_by.filter for d in read_drafts(out / "dropped.jsonl")} \
        == EXPECTED_DROPPED
    # Each distinct request reached the server once; the only allowed exception is the
    # one request in flight at the kill (sent, never answered to the dead client).
    counts = Counter(fake_server.rule_bodies())
    repeated = [b for b, n in counts.items() if n > 1]
    assert len(repeated) <= 1 and all(b == first[-1] for b in repeated), repeated
    assert len(counts) == 28  # 4 generations + 24 filter calls
    total = len(fake_server.rule_bodies())
    print(f"\nkilled after {len(first)} requests ({finished_first} candidates finished); "
          f"resume sent {total - len(first)} more, {len(repeated)} repeated (in flight)")
