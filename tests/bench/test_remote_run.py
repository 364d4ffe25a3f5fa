"""bench.score against a real HTTP server speaking the OpenAI API, with scripted failures."""

from __future__ import annotations

import json

from bench import score
from bench.data.schema import read_judgements
from tests.bench.conftest import PLANTED_KEY, make_remote_set, remote_argv


def test_scripted_failures_are_recorded_per_item_and_the_run_completes(
        tmp_path, fake_server, monkeypatch, capsys):
    monkeypatch.setenv("BENCH_TEST_KEY", PLANTED_KEY)
    queries, markers = make_remote_set(tmp_path / "data", fake_server, 5)
    s = fake_server
    s.judge_scores = {m: 1 + i % 5 for i, m in enumerate(markers)}
    s.timeout_sleep_s = 3.0  # longer than the client timeout (2 s, conftest)
    s.script = {
        ("judge", "q01a"): ["429", "ok"],  # rate limited once, then fine
        ("transcriptions", "q01b"): ["timeout"],  # client times out once, retry succeeds
        ("judge", "q02a"): ["malformed", "malformed"],  # re-asked once, then an error
        ("judge", "q02b"): ["empty"],  # empty answer, the re-ask succeeds
        ("audio_chat", "q03a"): ["empty"],  # the system returns no audio
        ("style", "q03b"): ["500", "500", "500"],  # retries exhausted: transient error
    }
    out = tmp_path / "out"
    argv = remote_argv(s, queries, out, tmp_path / "cache.sqlite")
    assert score.main(argv) == 1  # some items failed
    printed = capsys.readouterr()
    assert "failed 3 (by stage: " in printed.err
    results = {j.item_id: j for j in read_judgements(out / "judgements.jsonl")}
    assert len(results) == 10

    failed = {"q02:a": "judge", "q03:a": "system", "q03:b": "style"}
    for marker in markers:
        item = f"{marker[:3]}:{marker[3]}"
        j = results[item]
        if item in failed:
            assert j.score is None and j.error_stage == failed[item], (item, j.error)
        else:
            assert j.score == s.judge_scores[marker], (item, j.error)
            assert j.heuristic is False and j.judge_version == "gpt-4.1-2025-04-14"
            assert f"prompt {marker}" in j.input_transcript
            assert "Emotion: excited." in j.input_caption
    assert "JudgeFormatError" in results["q02:a"].error and "2 answers" in results["q02:a"].error
    assert "ReplyError" in results["q03:a"].error
    assert results["q03:b"].transient and "after 3 attempts" in results["q03:b"].error
    assert not results["q02:a"].transient and not results["q03:a"].transient
    # Retries really happened on the wire.
    assert s.counts[("judge", "q01a")] == 2
    assert s.counts[("transcriptions", "q01b")] >= 2
    assert s.counts[("judge", "q02a")] == 2 and s.counts[("judge", "q02b")] == 2
    assert s.counts[("style", "q03b")] == 3
    # Cost ledger: usage reported by the server priced at gpt-4.1 rates for the judge.
    ledger = [json.loads(x) for x in (out / "ledger.jsonl").read_text().splitlines()]
    judge_calls = [c for c in ledger if c["role"] == "judge" and not c["cached"]]
    assert judge_calls and all(abs(c["cost_usd"] - (1000 * 2 + 50 * 8) / 1e6) < 1e-12
                               for c in judge_calls)
    # gpt-4o-audio-preview has no list price in the table: flagged, not silently free.
    assert all(not c["priced"] for c in ledger
               if c["role"] == "system" and not c["cached"] and "error" not in c)
    # The timed-out transcription and the rate-limited judge call each took two attempts.
    assert sum(c["role"] == "asr" and c.get("attempts") == 2 for c in ledger) == 1
    assert sum(c["role"] == "judge" and c.get("attempts") == 2 for c in ledger) == 1
    # Failed calls are in the ledger too, with their reason.
    failures = [c for c in ledger if "error" in c]
    assert any(c["role"] == "style" and "after 3 attempts" in c["error"] for c in failures)
    assert any(c["role"] == "system" and "ReplyError" in c["error"] for c in failures)
    assert "calls to models without a price" in printed.out
    assert "Scored by: system=audio-chat/" in printed.out and "judge=openai-judge/gpt-4.1@" \
        in printed.out

    # Re-run: everything finished comes from the cache; only the transient item is retried.
    before = s.counts.copy()
    s.script = {}
    assert score.main(argv) == 1  # q02:a and q03:a stay failed (no --retry-failed)
    capsys.readouterr()
    new = {k: n - before[k] for k, n in s.counts.items() if n != before[k]}
    assert {m for _, m in new} == {"q03b"}, new  # nothing else was asked again
    assert new[("style", "q03b")] == 2 and new[("judge", "q03b")] == 1
    assert ("transcriptions", "q03b") not in new and ("audio_chat", "q03b") not in new
    results = {j.item_id: j for j in read_judgements(out / "judgements.jsonl")}
    assert results["q03:b"].score == s.judge_scores["q03b"]
    assert results["q03:b"].cached_calls > 0  # its ASR/system calls were reused
    assert len(results) == 10


def test_planted_api_key_never_reaches_disk_or_output(tmp_path, fake_server, monkeypatch,
                                                      capsys):
    monkeypatch.setenv("BENCH_TEST_KEY", PLANTED_KEY)
    queries, _ = make_remote_set(tmp_path / "data", fake_server, 2)
    fake_server.script = {("judge", "q01a"): ["500"] * 3, ("transcriptions", "q02a"): ["429"],
                          ("judge", "q02b"): ["401echo"]}
    out = tmp_path / "out"
    assert score.main(remote_argv(fake_server, queries, out, tmp_path / "c.sqlite")) == 1
    printed = capsys.readouterr()
    res = {j.item_id: j for j in read_judgements(out / "judgements.jsonl")}
    # The server quoted the key back in its 401 error; the recorded error is scrubbed.
    assert "AuthenticationError" in res["q02:b"].error and "provided: ***" in res["q02:b"].error
    # The key really was used on the wire ...
    assert any(PLANTED_KEY in h for h in fake_server.auth_headers)
    # ... and appears nowhere we write: results, ledger, report, cache (db, WAL, blobs), output.
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".sqlite" for p in files) and any(p.name == "ledger.jsonl"
                                                             for p in files)
    for p in files:
        assert PLANTED_KEY.encode() not in p.read_bytes(), p
    assert PLANTED_KEY not in printed.out + printed.err


def test_missing_key_is_a_clear_config_error(tmp_path, fake_server, monkeypatch, capsys):
    monkeypatch.delenv("BENCH_TEST_KEY", raising=False)
    queries, _ = make_remote_set(tmp_path / "data", fake_server, 1)
    assert score.main(remote_argv(fake_server, queries, tmp_path / "o", tmp_path / "c")) == 2
    assert "BENCH_TEST_KEY is not set" in capsys.readouterr().err
    assert sum(fake_server.counts.values()) == 0


def test_redact_scrubs_partly_masked_key_echoes():
    from bench.backends.remote import redact

    text = redact("Incorrect API key provided: sk-proj-abcd1234****WXYZ. See the docs.")
    assert "abcd1234" not in text and "sk-***" in text and "See the docs." in text
