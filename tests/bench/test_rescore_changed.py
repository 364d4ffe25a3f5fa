"""A resume scores again exactly what a change touches: the item whose file changed, the items
whose caption words a moved register changes, and failed items whose audio was fixed."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import soundfile as sf

from bench import score
from bench.data.schema import read_judgements
from tests.bench.conftest import PLANTED_KEY, make_remote_set, remote_argv

SR = 16000


def voiced_wav(f0: float, seconds: float = 1.5) -> bytes:
    """A harmonic tone at `f0`, pulsed four times a second like syllables: its measured
    pitch is f0, so a test can place each reply against the folder's register."""
    t = np.arange(int(seconds * SR)) / SR
    pulses = 0.5 * (1 - np.cos(2 * np.pi * 4.0 * t))
    x = 0.3 * pulses * sum(np.sin(2 * np.pi * k * f0 * t) / k for k in (1, 2, 3))
    buf = io.BytesIO()
    sf.write(buf, x, SR, subtype="PCM_16", format="WAV")
    return buf.getvalue()


def _silent_wav() -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.zeros(SR), SR, subtype="PCM_16", format="WAV")
    return buf.getvalue()


SILENT = _silent_wav()


def _write_reply(server, replies, marker: str, wav: bytes) -> None:
    path = replies / marker[:3] / f"{marker[3]}.wav"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(wav)
    if wav != SILENT:  # the server would never hear it: refused at load
        server.register_audio(wav, marker, f"reply for {marker}")


def _judged(server, before: dict) -> set[str]:
    return {m for (endpoint, m), n in server.counts.items()
            if endpoint == "judge" and n != before.get((endpoint, m), 0)}


def test_one_changed_reply_rescores_it_and_only_the_items_whose_caption_words_move(
        tmp_path, fake_server, monkeypatch, capsys):
    monkeypatch.setenv("BENCH_TEST_KEY", PLANTED_KEY)
    queries, _ = make_remote_set(tmp_path / "d", fake_server, 2)
    replies = tmp_path / "replies"
    # The reply folder's register is the median pitch of its files: 200 Hz. q02:a at 245 Hz
    # is 3.5 semitones above it, "high"; the others are "normal" or "low".
    for marker, f0 in (("q01a", 200), ("q01b", 200), ("q02a", 245), ("q02b", 150)):
        _write_reply(fake_server, replies, marker, voiced_wav(f0))
    out = tmp_path / "out"
    argv = remote_argv(fake_server, queries, out, tmp_path / "c.sqlite",
                       ["--system", "wavdir", "--system-path", str(replies),
                        "--style", "prosody"])
    assert score.main(argv) == 0
    first = {j.item_id: j for j in read_judgements(out / "judgements.jsonl")}
    assert [first[i].reply_caption_words["pitch"] for i in sorted(first)] == \
        ["normal", "normal", "high", "low"]
    assert json.loads((out / "run.json").read_text())["registers"]["reply"]["f0_hz"] == \
        pytest.approx(200, abs=0.1)
    # Replace q02:b's reply by a 260 Hz one: the register moves to 222.5 Hz (the median of
    # 200, 200, 245, 260), where 245 Hz is only 1.7 semitones up: q02:a's reply is "normal"
    # now. q01's replies stay "normal" (-1.8 semitones), though their captions' numbers move.
    _write_reply(fake_server, replies, "q02b", voiced_wav(260))
    before = dict(fake_server.counts)
    capsys.readouterr()
    assert score.main(argv) == 0
    err = capsys.readouterr().err
    assert _judged(fake_server, before) == {"q02a", "q02b"}
    run = json.loads((out / "run.json").read_text())
    assert set(run["items_rescored"]) == {"q02:a", "q02:b"}
    assert run["items_rescored"]["q02:b"] == "reply audio changed"
    why = run["items_rescored"]["q02:a"]
    assert why.startswith("reply caption words changed (") and "pitch high -> normal" in why
    assert run["registers"]["reply"]["f0_hz"] == 222.52
    assert "2 scored again because what they were scored from changed: q02:a: reply caption " \
        "words changed" in err, err
    res = {j.item_id: j for j in read_judgements(out / "judgements.jsonl")}
    assert res["q01:a"] == first["q01:a"] and res["q01:b"] == first["q01:b"]
    assert res["q02:a"].reply_caption_words["pitch"] == "normal"
    # Nothing changed since: the next resume judges nothing.
    before = dict(fake_server.counts)
    assert score.main(argv) == 0
    assert _judged(fake_server, before) == set()
    assert json.loads((out / "run.json").read_text())["items_rescored"] == {}


def test_failed_items_whose_audio_was_fixed_are_retried_without_retry_failed(
        tmp_path, fake_server, monkeypatch, capsys):
    monkeypatch.setenv("BENCH_TEST_KEY", PLANTED_KEY)
    queries, markers = make_remote_set(tmp_path / "d", fake_server, 3)
    replies = tmp_path / "replies"
    good = {m: voiced_wav(180 + 10 * i) for i, m in enumerate(markers)}
    for m in ("q01a", "q03a", "q03b"):
        _write_reply(fake_server, replies, m, good[m])
    # q01:b has no reply file yet; q02:a's and q02:b's replies are silent.
    _write_reply(fake_server, replies, "q02a", SILENT)
    _write_reply(fake_server, replies, "q02b", SILENT)
    # The prompts of q01:a and q03:a are silent too (q03:a's reply is fine).
    prompt = tmp_path / "d" / "audio" / "q01a.wav"
    recorded_prompt = prompt.read_bytes()
    prompt.write_bytes(SILENT)
    (tmp_path / "d" / "audio" / "q03a.wav").write_bytes(SILENT)
    out = tmp_path / "out"
    argv = remote_argv(fake_server, queries, out, tmp_path / "c.sqlite",
                       ["--system", "wavdir", "--system-path", str(replies)])
    assert score.main(argv) == 1
    first = {j.item_id: j for j in read_judgements(out / "judgements.jsonl")}
    assert {i: j.error_stage for i, j in first.items()} == {
        "q01:a": "input_audio", "q01:b": "system", "q02:a": "reply_audio",
        "q02:b": "reply_audio", "q03:a": "input_audio", "q03:b": None}
    assert not any(j.transient for j in first.values())
    # Digests of the files that were there, although they could not be used.
    assert len(first["q01:a"].prompt_sha256) == len(first["q02:a"].reply_sha256) == 64
    # Fix the prompt of q01:a, supply q01:b's reply, replace q02:a's; q02:b stays silent.
    prompt.write_bytes(recorded_prompt)
    _write_reply(fake_server, replies, "q01b", good["q01b"])
    _write_reply(fake_server, replies, "q02a", good["q02a"])
    before = dict(fake_server.counts)
    capsys.readouterr()
    assert score.main(argv) == 1  # q02:b and q03:a still fail
    err = capsys.readouterr().err
    assert _judged(fake_server, before) == {"q01a", "q01b", "q02a"}
    assert json.loads((out / "run.json").read_text())["items_rescored"] == {
        "q01:a": "prompt audio changed (it had failed)",
        "q01:b": "reply audio changed (it had failed)",
        "q02:a": "reply audio changed (it had failed)"}
    assert "3 already done (1 scored, 2 failed)" in err and "--retry-failed" in err
    res = {j.item_id: j for j in read_judgements(out / "judgements.jsonl")}
    assert all(res[i].score == 4 for i in ("q01:a", "q01:b", "q02:a"))
    # Unchanged audio: kept as failures, also q03:a whose (unused) reply file exists.
    assert res["q02:b"] == first["q02:b"] and res["q03:a"] == first["q03:a"]
    before = dict(fake_server.counts)
    assert score.main(argv) == 1
    assert _judged(fake_server, before) == set() and not any(
        n != before.get(k, 0) for k, n in fake_server.counts.items())
    assert json.loads((out / "run.json").read_text())["items_rescored"] == {}
