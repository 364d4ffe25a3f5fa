"""Fixtures for bench tests: a fake OpenAI-compatible server and small query sets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.bench.fake_openai import FakeOpenAI, tone_wav

PLANTED_KEY = "sk-planted-0123456789-DO-NOT-LEAK"


@pytest.fixture
def fake_server():
    server = FakeOpenAI().start()
    yield server
    server.stop()


def make_remote_set(root: Path, server: FakeOpenAI, n_queries: int) -> tuple[Path, list[str]]:
    """Queries whose prompts are tones registered on the server; returns (file, markers)."""
    dims = ["emotion", "sarcasm", "age", "gender"]
    records, markers = [], []
    for i in range(1, n_queries + 1):
        qid = f"q{i:02d}"
        styles = []
        for k, name in enumerate(("a", "b")):
            marker = f"{qid}{name}"
            wav = tone_wav(500 + 2 * i + k, seconds=0.5)
            path = root / "audio" / f"{marker}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(wav)
            server.register_audio(wav, marker, f"prompt {marker} i just bumped into my ex")
            styles.append({"name": name, "audio": str(path.relative_to(root)),
                           "description": f"style {name}", "reference": "comfort them",
                           "reply_style": "gentle"})
            markers.append(marker)
        records.append({"id": qid, "dimension": dims[i % 4], "text": "I just bumped into my ex.",
                        "scenario": "style matters", "split": "synthetic" if i % 3 else "real",
                        "styles": styles})
    qpath = root / "queries.jsonl"
    qpath.write_text("".join(json.dumps(r) + "\n" for r in records))
    return qpath, markers


def remote_argv(server: FakeOpenAI, queries: Path, out: Path, cache: Path,
                extra: list[str] | None = None) -> list[str]:
    """bench.score arguments that send every role to the fake server."""
    argv = ["--queries", str(queries), "--out", str(out), "--cache", str(cache),
            "--system", "audio-chat", "--asr", "openai", "--style", "openai",
            "--judge", "openai", "--no-progress", "--no-plots",
            "--timeout", "2", "--max-attempts", "3", "--backoff", "0.01",
            "--concurrency", "2"]
    for role in ("system", "asr", "style", "judge", "chat", "tts"):
        argv += [f"--{role}-base-url", server.base_url, f"--{role}-key-env", "BENCH_TEST_KEY"]
    return argv + (extra or [])
