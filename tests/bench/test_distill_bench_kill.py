"""Stage 2 with --config.distill.scorer=bench: SFT replies spoken and judged on the local
OpenAI-compatible server; SIGKILL mid-distillation, run again: no reply is judged twice."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.bench.conftest import PLANTED_KEY, make_remote_set
from tests.bench.fake_openai import MARKER_RE

ROOT = Path(__file__).resolve().parents[2]


def _judge_bodies(server) -> list[str]:
    return [text for name, text in server.bodies if name == "judge"]


def _unwritten(server, shards: Path) -> list[str]:
    """Judge requests for items whose shard is not written yet (the prompt's transcript,
    hence the request, names its item: marker q01a is item q01:a)."""
    written = {json.loads(line)["query_id"] for f in shards.glob("*.jsonl")
               for line in f.read_text().splitlines()}
    return [b for b in _judge_bodies(server)
            if (m := MARKER_RE.search(b).group(0)) and f"{m[:3]}:{m[3]}" not in written]


def _train(argv: list[str]) -> subprocess.Popen:
    env = {**os.environ, "BENCH_TEST_KEY": PLANTED_KEY}
    return subprocess.Popen([sys.executable, "launch/train.py", *argv], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.slow  # two reward-stage runs: sampling, detokenizer and training compilations
def test_bench_scored_distillation_resumes_without_paying_twice(tmp_path, fake_server):
    from paras2s_jax.audio import write_random_speech
    from paras2s_jax.checkpoint import import_hf
    from paras2s_jax.checkpoint.orbax_io import save_model
    from paras2s_jax.checkpoint.random_checkpoint import write_random_checkpoint
    from paras2s_jax.model.config import tiny

    write_random_checkpoint(tmp_path / "hf", tiny(), seed=0)
    save_model(tmp_path / "sft", import_hf(tmp_path / "hf"))
    write_random_speech(tmp_path / "speech", "tiny")
    queries, _ = make_remote_set(tmp_path / "data", fake_server, 4)  # 8 items
    server = f"--key-env BENCH_TEST_KEY --base-url {fake_server.base_url}"
    bench_args = (f"--queries {queries} --cache {tmp_path / 'cache.sqlite'} --asr openai "
                  f"{server.replace('--', '--asr-')} --style prosody --judge openai "
                  f"--judge-model gpt-4.1 {server.replace('--', '--judge-')} --timeout 5 "
                  "--max-attempts 3 --backoff 0.01")
    work = tmp_path / "rm"
    argv = ["--config", "configs/reward.py:toy", f"--config.workdir={work}",
            f"--config.init.path={tmp_path / 'sft'}", "--config.toy.enabled=False",
            "--config.distill.scorer=bench", f"--config.distill.bench.speech_dir="
            f"{tmp_path / 'speech'}", f"--config.distill.bench.args={bench_args}",
            "--config.distill.samples_per_query=2", "--config.distill.chunk_queries=2",
            "--config.distill.sampling.max_new_tokens=24", "--config.train.total_steps=2",
            "--config.data.global_batch=8"]
    fake_server.delay_s = 0.3  # judge calls slow enough to be killed among them
    proc = _train(argv)
    shards = work / "distill" / "train"
    deadline = time.monotonic() + 900
    # Kill while a chunk is being judged: answered (cached) calls whose shard is unwritten.
    while len(_unwritten(fake_server, shards)) < 2 and proc.poll() is None \
            and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.1)
    assert proc.poll() is None, f"ended before it could be killed: {proc.stderr.read()[-3000:]}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-3000:]
    paid_before, unwritten = len(_judge_bodies(fake_server)), len(_unwritten(fake_server, shards))
    with sqlite3.connect(tmp_path / "cache.sqlite") as db:
        cached_before = db.execute("SELECT COUNT(*) FROM calls WHERE role = 'judge'").fetchone()[0]
    in_flight = paid_before - cached_before  # sent, but killed before its answer was stored
    assert 0 <= in_flight <= 1 and unwritten - in_flight >= 1

    fake_server.delay_s = 0.0
    proc = _train(argv)
    stdout, stderr = proc.communicate(timeout=1500)
    assert proc.returncode == 0, stderr.decode()[-3000:]
    assert "reward model vs judge (held-out pairs)" in stdout.decode()
    records = [json.loads(line) for part in ("train", "heldout")
               for f in sorted((work / "distill" / part).glob("*.jsonl"))
               for line in f.read_text().splitlines()]
    assert len(records) == 8 * 2  # every item, two replies each
    judged = [r for r in records if not r["rationale"].startswith("failed reply")]
    assert judged and all(r["judge"].startswith("bench/openai-judge/gpt-4.1@") for r in records)
    assert {r["score"] for r in judged} == {4}  # the server's verdict for these prompts
    # Every judge request is new (identical judge inputs hit the cache), except the one
    # that may have been in flight at the kill: no answered call was paid twice.
    bodies = _judge_bodies(fake_server)
    assert len(bodies) - len(set(bodies)) == in_flight
    print(f"killed after {paid_before} judge calls ({unwritten} for an unwritten shard, "
          f"{in_flight} in flight); {len(bodies)} in all")
