"""bench.score --batch and distillation's batch mode against the loopback server's Batch
API: same bodies, cache and scores as online; a stopped run resumes the same batch;
unusable and missing answers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench import score
from bench.backends import batch
from bench.backends.batch import BatchError
from bench.backends.cache import Cache
from bench.backends.judge import REASK
from bench.data.schema import read_judgements
from bench.scoring.distill_judge import BenchJudge
from tests.bench.conftest import PLANTED_KEY, make_remote_set, remote_argv

BATCH = ["--batch", "--batch-poll", "0.01"]


def _setup(tmp_path, server, monkeypatch, n_queries=3):
    monkeypatch.setenv("BENCH_TEST_KEY", PLANTED_KEY)
    queries, markers = make_remote_set(tmp_path / "data", server, n_queries)
    server.judge_scores = {m: 1 + i % 5 for i, m in enumerate(markers)}
    return queries, markers


def _sent(server, name: str) -> list[dict]:
    return [json.loads(b) for n, b in server.bodies if n == name]


def _scores(out) -> dict[str, tuple]:
    return {j.item_id: (j.score, j.judge_version, j.error)
            for j in read_judgements(out / "judgements.jsonl")}


def _requests(out, n=1) -> list[dict]:
    return [json.loads(x) for x in (out / f"batch/requests-{n}.jsonl").read_text().splitlines()]


def _canonical(bodies: list[dict]) -> list[str]:
    return sorted(json.dumps(b, sort_keys=True) for b in bodies)


def test_batch_run_sends_the_online_bodies_and_shares_the_cache(tmp_path, fake_server,
                                                                  monkeypatch, capsys):
    s = fake_server
    queries, markers = _setup(tmp_path, s, monkeypatch)
    online = tmp_path / "online"
    assert score.main(remote_argv(s, queries, online, tmp_path / "online.sqlite")) == 0
    online_bodies = _sent(s, "judge")
    assert len(online_bodies) == len(markers)
    s.bodies.clear()
    capsys.readouterr()

    out, cache = tmp_path / "batch", tmp_path / "cache.sqlite"
    assert score.main(remote_argv(s, queries, out, cache, BATCH)) == 0
    printed = capsys.readouterr().out
    assert len(s.uploads) == 1 and list(s.batches) == ["batch_1"]
    assert _sent(s, "judge") == []  # no online judge call
    lines = _requests(out)
    assert len(lines) == len(markers)
    assert {(x["method"], x["url"]) for x in lines} == {("POST", "/v1/chat/completions")}
    # Each line carries exactly the body the online call sent; the upload is that file.
    assert _canonical([x["body"] for x in lines]) == _canonical(online_bodies)
    assert s.files[s.uploads[0]] == (out / "batch/requests-1.jsonl").read_bytes()
    assert _scores(out) == _scores(online)
    assert all(v[0] is not None for v in _scores(out).values())
    # Same set-up, same fingerprint: batch and online results are interchangeable.
    assert (out / "fingerprint.json").read_text() == (online / "fingerprint.json").read_text()
    assert f"OpenAI batch batch_1 (completed): {len(markers)} of {len(markers)} cached" in printed
    state = json.loads((out / "batch/state.json").read_text())["batches"]
    assert [(b["id"], b["status"], b["cached"]) for b in state] == [
        ("batch_1", "completed", len(markers))]
    # Ledger: one line per batch answer at half the online price the server's usage gives.
    ledger = [json.loads(x) for x in (out / "ledger.jsonl").read_text().splitlines()]
    batched = [c for c in ledger if c.get("batch") == "batch_1"]
    assert len(batched) == len(markers)
    assert all(abs(c["cost_usd"] - 0.5 * (1000 * 2 + 50 * 8) / 1e6) < 1e-12 for c in batched)

    # A later online run on the same cache asks the judge nothing.
    s.bodies.clear()
    assert score.main(remote_argv(s, queries, tmp_path / "later", cache)) == 0
    assert _sent(s, "judge") == [] and _sent(s, "batch_judge") == []
    assert _scores(tmp_path / "later") == _scores(online)


def test_a_stopped_run_resumes_the_same_batch(tmp_path, fake_server, monkeypatch, capsys):
    s = fake_server
    queries, markers = _setup(tmp_path, s, monkeypatch)
    out, cache = tmp_path / "out", tmp_path / "cache.sqlite"
    # Stop waiting at the first poll: the batch is submitted and recorded, still validating.
    assert score.main(remote_argv(s, queries, out, cache, BATCH + ["--batch-timeout", "0"])) == 3
    err = capsys.readouterr().err
    assert "batch batch_1 is still validating" in err and str(out / "batch/state.json") in err
    assert list(s.batches) == ["batch_1"] and s.polls["batch_1"] == 1
    # Deferred items are not recorded as failures.
    results = out / "judgements.jsonl"
    assert not results.exists() or not results.read_text().strip()

    # A new run (fresh objects, as a new process) polls the same batch: nothing resubmitted.
    assert score.main(remote_argv(s, queries, out, cache, BATCH)) == 0
    assert len(s.uploads) == 1 and list(s.batches) == ["batch_1"]
    assert s.polls["batch_1"] == 3  # validating (first run), in_progress, completed
    assert _sent(s, "judge") == [] and len(_sent(s, "batch_judge")) == len(markers)
    scores = _scores(out)
    assert {k: v[0] for k, v in scores.items()} == {
        f"{m[:3]}:{m[3]}": s.judge_scores[m] for m in markers}


def test_an_unusable_batch_answer_is_not_cached_and_is_re_asked_online(
        tmp_path, fake_server, monkeypatch, capsys):
    s = fake_server
    queries, markers = _setup(tmp_path, s, monkeypatch, n_queries=2)
    s.script = {("judge", "q01a"): ["malformed"]}  # the batch's answer for q01a
    out, cache = tmp_path / "out", tmp_path / "cache.sqlite"
    assert score.main(remote_argv(s, queries, out, cache, BATCH)) == 0
    assert "3 of 4 cached, 1 unusable (re-asked online)" in capsys.readouterr().out
    # One online call: the re-ask, showing the judge the batch's malformed answer.
    online = _sent(s, "judge")
    assert len(online) == 1
    assert online[0]["messages"][-2:] == [
        {"role": "assistant", "content": "Looks good to me, maybe four."},
        {"role": "user", "content": REASK}]
    assert _scores(out)["q01:a"][0] == s.judge_scores["q01a"]
    # The malformed answer is not in the cache; the others are, under their custom_id.
    db = Cache(cache)
    by_marker = {m: x["custom_id"] for x in _requests(out) for m in markers
                 if m in x["body"]["messages"][-1]["content"]}
    assert db.get(by_marker["q01a"]) is None
    assert all(db.get(cid)["text"].endswith("The score is "
                                            f"{s.judge_scores[m]}.")
               for m, cid in by_marker.items() if m != "q01a")
    db.close()


def test_a_failed_or_expired_batch_names_itself_and_loses_nothing(tmp_path, fake_server,
                                                                 monkeypatch, capsys):
    s = fake_server
    queries, markers = _setup(tmp_path, s, monkeypatch)
    out, cache = tmp_path / "out", tmp_path / "cache.sqlite"
    state = out / "batch/state.json"
    s.batch_steps = ["validating", "failed"]
    assert score.main(remote_argv(s, queries, out, cache, BATCH)) == 3
    err = capsys.readouterr().err
    assert "batch batch_1 ended failed (fake batch failure)" in err and str(state) in err
    assert json.loads(state.read_text())["batches"][0]["status"] == "failed"

    # Expired with 2 of 6 answered: those 2 are cached, the run says so.
    s.batch_steps, s.batch_answered = ["in_progress", "expired"], 2
    assert score.main(remote_argv(s, queries, out, cache, BATCH)) == 3
    err = capsys.readouterr().err
    assert "batch batch_2 ended expired: 2 of 6 answers received and cached" in err
    assert str(state) in err

    # The next run submits only the 4 unanswered requests; ASR, captions and replies come
    # from the cache, nothing is asked twice.
    s.batch_steps, s.batch_answered = ["completed"], None
    s.bodies.clear()
    before = s.counts.copy()
    assert score.main(remote_argv(s, queries, out, cache, BATCH)) == 0
    assert len(_requests(out, 3)) == 4 and list(s.batches)[-1] == "batch_3"
    asked = {e for e, n in s.counts.items() if n != before[e]}
    assert {e for e, _ in asked} == {"judge"} and len(asked) == 4  # the 4 batch lines
    assert _sent(s, "judge") == []
    assert all(v[0] is not None for v in _scores(out).values())
    assert [b["status"] for b in json.loads(state.read_text())["batches"]] == [
        "failed", "expired", "completed"]


class _Speech:
    """Speaks reply codes as a tone per first code (the detokenizer's part in BenchJudge)."""

    detokenizer = object()
    output_rate = 16000

    def decode(self, codes, seed=0):
        t = np.arange(int(0.8 * self.output_rate)) / self.output_rate
        return (0.3 * np.sin(2 * np.pi * (180 + 20 * codes[0]) * t)).astype(np.float32)


def _distill_argv(server, queries, tmp_path, extra=()):
    argv = remote_argv(server, queries, tmp_path / "out", tmp_path / "cache.sqlite",
                       ["--batch-poll", "0.01", *extra])
    argv[argv.index("--style") + 1] = "prosody"  # reply tones are not registered captions
    return argv


def test_distillation_batch_mode_sends_a_chunk_as_one_batch_and_resumes(
        tmp_path, fake_server, monkeypatch):
    s = fake_server
    queries, markers = _setup(tmp_path, s, monkeypatch, n_queries=2)
    replies = [({"id": f"{m[:3]}:{m[3]}"}, [], [k + 1, 7, 9]) for k, m in enumerate(markers)]
    replies.append(({"id": "q01:a"}, [], []))  # no audio codes: a failed reply, no request
    judge = BenchJudge(_distill_argv(s, queries, tmp_path, ["--batch-timeout", "0"]),
                       _Speech(), batch=True)
    with pytest.raises(BatchError, match="batch batch_1 is still validating"):
        judge.prepare(replies)  # stopped while the batch is pending

    judge = BenchJudge(_distill_argv(s, queries, tmp_path), _Speech(), batch=True)  # restart
    judge.prepare(replies)
    assert list(s.batches) == ["batch_1"] and len(s.uploads) == 1  # the same batch, polled
    assert len(_sent(s, "batch_judge")) == len(markers)
    scores = [judge(*r) for r in replies]
    assert [sc for sc, _ in scores[:-1]] == [s.judge_scores[m] for m in markers]
    assert scores[-1][0] == 1 and _sent(s, "judge") == []  # every answer from the batch


def test_distillation_batch_mode_refuses_what_it_cannot_do(tmp_path, fake_server, monkeypatch):
    s = fake_server
    queries, _ = _setup(tmp_path, s, monkeypatch, n_queries=1)
    argv = _distill_argv(s, queries, tmp_path)
    with pytest.raises(ValueError, match="needs the OpenAI judge"):
        BenchJudge(argv[:argv.index("--judge")] + ["--judge", "rule"]
                   + argv[argv.index("--judge") + 2:], _Speech(), batch=True)
    with pytest.raises(ValueError, match="set config.distill.batch=True instead"):
        BenchJudge(argv + ["--batch"], _Speech())


def test_requests_past_the_api_limit_go_in_several_batches(tmp_path, fake_server, monkeypatch,
                                                           capsys):
    s = fake_server
    queries, markers = _setup(tmp_path, s, monkeypatch)
    monkeypatch.setattr(batch, "MAX_REQUESTS", 4)
    out = tmp_path / "out"
    assert score.main(remote_argv(s, queries, out, tmp_path / "cache.sqlite", BATCH)) == 0
    assert list(s.batches) == ["batch_1", "batch_2"]
    assert [len(_requests(out, n)) for n in (1, 2)] == [4, 2]
    assert _sent(s, "judge") == [] and all(v[0] is not None for v in _scores(out).values())


def test_a_run_stopped_before_the_batch_id_was_recorded_finds_its_batch(
        tmp_path, fake_server, monkeypatch, capsys):
    s = fake_server
    queries, markers = _setup(tmp_path, s, monkeypatch)
    out, cache = tmp_path / "out", tmp_path / "cache.sqlite"
    state = out / "batch/state.json"
    save, saves = batch._State.save, []

    def killed_after_create(self):
        saves.append(1)
        if len(saves) == 2:  # the batch exists on the server, its id is not written yet
            raise KeyboardInterrupt
        save(self)

    monkeypatch.setattr(batch._State, "save", killed_after_create)
    assert score.main(remote_argv(s, queries, out, cache, BATCH)) == 130
    assert list(s.batches) == ["batch_1"]
    assert json.loads(state.read_text())["batches"][0]["status"] == "submitting"

    monkeypatch.setattr(batch._State, "save", save)
    assert score.main(remote_argv(s, queries, out, cache, BATCH)) == 0
    assert list(s.batches) == ["batch_1"] and len(s.uploads) == 1  # found, not made again
    assert json.loads(state.read_text())["batches"][0]["id"] == "batch_1"
    assert _sent(s, "judge") == [] and all(v[0] is not None for v in _scores(out).values())
