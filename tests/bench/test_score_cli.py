"""bench.score run management: filters, back-end consistency, keeping earlier results."""

from __future__ import annotations

import pytest

from bench import score
from bench.backends.remote import RetryPolicy
from bench.data.schema import read_judgements, read_queries
from bench.scoring import options
from tests.bench.conftest import PLANTED_KEY, make_remote_set, remote_argv


def test_filters_select_split_dimension_and_limit(tmp_path, fake_server):
    queries, _ = make_remote_set(tmp_path, fake_server, 8)
    qs = read_queries(queries)
    args = score.parse_args(["--queries", str(queries), "--split", "synthetic",
                             "--dimensions", "emotion,age"])
    picked = options.select(qs, args)
    assert picked and all(q.split == "synthetic" and q.dimension in ("emotion", "age")
                          for q in picked)
    assert len(picked) == sum(q.split == "synthetic" and q.dimension in ("emotion", "age")
                              for q in qs)
    args = score.parse_args(["--queries", str(queries), "--limit", "3"])
    assert [q.id for q in options.select(qs, args)] == ["q01", "q02", "q03"]


def test_filtered_rerun_keeps_earlier_results_and_other_backends_are_refused(
        tmp_path, fake_server, monkeypatch, capsys):
    monkeypatch.setenv("BENCH_TEST_KEY", PLANTED_KEY)
    queries, _ = make_remote_set(tmp_path / "d", fake_server, 4)
    out, cache = tmp_path / "out", tmp_path / "c.sqlite"
    argv = remote_argv(fake_server, queries, out, cache)
    assert score.main(argv) == 0
    assert score.main(argv + ["--limit", "1"]) == 0
    capsys.readouterr()
    # The narrower run reports on its selection but leaves the other items on disk.
    assert len(read_judgements(out / "judgements.jsonl")) == 8
    assert "n=2)" in (out / "report.md").read_text()
    # Same folder, another judge model: refused instead of mixing back ends.
    assert score.main(argv + ["--judge-model", "gpt-4.1-mini"]) == 2
    err = capsys.readouterr().err
    assert "different set-up" in err and "judge.model:" in err and "gpt-4.1-mini" in err


def test_retry_failed_redoes_permanent_failures_only_on_request(tmp_path, fake_server,
                                                                monkeypatch, capsys):
    monkeypatch.setenv("BENCH_TEST_KEY", PLANTED_KEY)
    queries, _ = make_remote_set(tmp_path / "d", fake_server, 2)
    fake_server.script = {("audio_chat", "q01a"): ["empty"]}
    argv = remote_argv(fake_server, queries, tmp_path / "out", tmp_path / "c.sqlite")
    assert score.main(argv) == 1  # an item failed: the exit status says so
    capsys.readouterr()
    assert score.main(argv) == 1  # a permanent failure is not retried by default
    assert fake_server.counts[("audio_chat", "q01a")] == 1
    captured = capsys.readouterr()
    assert "1 failed" in captured.err and "--retry-failed" in captured.err
    # The headline counts the failure as 1, the scored-only mean stands beside it.
    assert "**Overall (failures as 1): 3.250**" in captured.out  # (4+4+4+1)/4
    assert "1 of 4 items failed; scored items only (paper-comparable): 4.000 (n=3)" \
        in captured.out
    assert "failed 1 (by stage: system 1)" in captured.err
    assert score.main(argv + ["--retry-failed"]) == 0
    assert fake_server.counts[("audio_chat", "q01a")] == 2
    res = {j.item_id: j for j in read_judgements(tmp_path / "out" / "judgements.jsonl")}
    assert res["q01:a"].score == 4 and res["q01:a"].error is None
    assert "Items: 4, scored 4, failed 0" in capsys.readouterr().err


def test_backoff_grows_and_honours_retry_after():
    p = RetryPolicy(max_attempts=5, base_delay_s=1.0, max_delay_s=5.0)
    assert p.delay(1, retry_after=0.25) == 0.25
    assert p.delay(3, retry_after=100) == 5.0
    d1, d3 = p.delay(1), p.delay(3)
    assert 0.5 <= d1 <= 1.0 and 2.0 <= d3 <= 4.0 and p.delay(10) <= 5.0


@pytest.mark.parametrize("flag", ["--asr", "--style", "--judge", "--system"])
def test_unknown_backend_names_are_rejected(flag):
    with pytest.raises(SystemExit):
        score.parse_args([flag, "no-such-backend"])


def test_rate_limiter_spaces_request_starts_across_threads():
    import threading
    import time

    from bench.backends.remote import RateLimiter

    limiter, starts = RateLimiter(per_second=20), []
    lock = threading.Lock()

    def worker():
        for _ in range(3):
            limiter.acquire()
            with lock:
                starts.append(time.monotonic())

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    starts.sort()
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert len(starts) == 9 and min(gaps) >= 0.045  # 1/20 s apart, give or take timer slop
    t0 = time.monotonic()
    for _ in range(50):
        RateLimiter().acquire()  # no limit: no waiting
    assert time.monotonic() - t0 < 0.05


def test_max_cost_stops_starting_new_items_and_a_rerun_continues(tmp_path, fake_server,
                                                                 monkeypatch, capsys):
    monkeypatch.setenv("BENCH_TEST_KEY", PLANTED_KEY)
    queries, _ = make_remote_set(tmp_path / "d", fake_server, 6)
    out = tmp_path / "out"
    argv = remote_argv(fake_server, queries, out, tmp_path / "c.sqlite")
    argv[argv.index("--concurrency") + 1] = "1"
    # One judge call costs (1000 * 2 + 50 * 8) / 1e6 = $0.0024 at gpt-4.1 prices (the fake
    # server reports that usage for every chat call): the budget allows about two items.
    assert score.main(argv + ["--max-cost", "0.01"]) == 0
    printed = capsys.readouterr().out
    first = read_judgements(out / "judgements.jsonl")
    assert "STOPPED" in printed and 1 <= len(first) < 12
    assert score.main(argv) == 0
    assert len(read_judgements(out / "judgements.jsonl")) == 12


@pytest.mark.parametrize("module, argv, message", [
    ("bench.score", ["--queries", "{tmp}/none.jsonl"], "queries file not found"),
    ("bench.score", ["--prices", "{tmp}/none.json", "--out", "{tmp}/o", "--cache", "{tmp}/c"],
     "price table not found"),
    ("bench.report", ["{tmp}/none.jsonl"], "judgements file not found"),
    ("bench.agreement", ["--human", "{tmp}/h.csv", "{tmp}/j.jsonl"],
     "human ratings file not found"),
    ("bench.synth", ["render", "--drafts", "{tmp}/none.jsonl", "--out", "{tmp}/o"],
     "drafts file not found"),
    ("bench.synth", ["select", "--out", "{tmp}/none", "--sheet", "{tmp}/s.csv"],
     "manifest.jsonl not found"),
    ("bench.generate", ["review", "--out", "{tmp}/none", "--sheet", "{tmp}/s.csv"],
     "drafts file not found"),
    ("bench.importers", ["iemocap", "--root", "{tmp}/none", "--out", "{tmp}/o"],
     "root folder not found"),
])
def test_every_cli_reports_a_missing_file_cleanly(tmp_path, capsys, module, argv, message):
    import importlib

    main = importlib.import_module(module).main
    assert main([a.format(tmp=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
