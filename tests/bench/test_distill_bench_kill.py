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

ROOT = Path(__file__).resolve().parents[2]


def _judge_calls(server) -> int:
    return sum(name == "judge" for name, _ in server.bodies)


def _judged(paths) -> set:
    """(prompt, spoken reply) pairs the judge scored in these distillation shards."""
    return {(r["query_id"], tuple(r["reply_audio"])) for f in paths
            for r in map(json.loads, f.read_text().splitlines())
            if not r["rationale"].startswith("failed reply")}


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
    while _judge_calls(fake_server) <= len(_judged(shards.glob("*.jsonl"))) + 1 \
            and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.1)
    assert proc.poll() is None, f"ended before it could be killed: {proc.stderr.read()[-3000:]}"
    written_before = len(_judged(shards.glob("*.jsonl")))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-3000:]
    paid_before = _judge_calls(fake_server)
    with sqlite3.connect(tmp_path / "cache.sqlite") as db:
        cached_before = db.execute("SELECT COUNT(*) FROM calls WHERE role = 'judge'").fetchone()[0]
    in_flight = paid_before - cached_before  # sent, but killed before its answer was stored
    assert 0 <= in_flight <= 1 and cached_before > written_before

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
    # One judge request per distinct (prompt, spoken reply): no answered call was paid twice.
    distinct = _judged((work / "distill").rglob("*.jsonl"))
    assert _judge_calls(fake_server) == len(distinct) + in_flight
    print(f"killed after {paid_before} judge calls ({cached_before - written_before} answered "
          f"for an unwritten shard, {in_flight} in flight); {len(distinct)} in all")
