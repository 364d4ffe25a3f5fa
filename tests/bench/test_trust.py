"""Scores you can trust: a changed set-up or changed audio never leaves a stale score, every
failure is counted and shown, malformed judge answers are asked again."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import soundfile as sf

from bench import report, score
from bench.backends import judge as judge_mod
from bench.backends.prompt_template import PROMPTS_DIR
from bench.data.schema import read_judgements
from tests.bench.conftest import PLANTED_KEY, make_remote_set, remote_argv
from tests.bench.fake_openai import tone_wav


def _judge_calls(server) -> int:
    return sum(n for (endpoint, _), n in server.counts.items() if endpoint == "judge")


def test_an_edited_judge_prompt_refuses_the_resume_and_force_new_rescores(tmp_path, fake_server,
                                                                         monkeypatch, capsys):
    monkeypatch.setenv("BENCH_TEST_KEY", PLANTED_KEY)
    queries, _ = make_remote_set(tmp_path / "d", fake_server, 2)
    out = tmp_path / "out"
    argv = remote_argv(fake_server, queries, out, tmp_path / "c.sqlite")
    assert score.main(argv) == 0
    before = _judge_calls(fake_server)
    # The bundled prompt given as a file: same bytes, same set-up, the resume goes on.
    bundled = (PROMPTS_DIR / "judge.txt").read_text()
    same = tmp_path / "same.txt"
    same.write_text(bundled)
    assert score.main(argv + ["--judge-prompt", str(same)]) == 0
    assert _judge_calls(fake_server) == before
    edited = tmp_path / "edited.txt"
    edited.write_text(bundled.replace("5 - ", "5 - (edited) "))
    capsys.readouterr()
    assert score.main(argv + ["--judge-prompt", str(edited)]) == 2  # old scores, new rubric
    err = capsys.readouterr().err
    assert "different set-up" in err and "judge.prompt_sha256:" in err and "--force-new" in err
    assert hashlib.sha256(edited.read_bytes()).hexdigest() in err
    assert "judge.model" not in err  # only what changed is named
    assert _judge_calls(fake_server) == before
    assert score.main(argv + ["--judge-prompt", str(edited), "--force-new"]) == 0
    assert _judge_calls(fake_server) == before + 4  # every item judged again
    assert len(list(out.glob("superseded-*/judgements.jsonl"))) == 1
    assert "(edited)" in fake_server.bodies[-1][1]
    assert score.main(argv + ["--judge-prompt", str(edited)]) == 0  # the new set-up resumes
    assert _judge_calls(fake_server) == before + 4


def test_changed_parser_temperature_or_captioner_rules_change_the_fingerprint(monkeypatch):
    from bench.backends import style as style_mod
    from bench.scoring.fingerprint import changes, run_fingerprint

    class _Named:
        def __init__(self, name):
            self.name = name

    captioner = style_mod.ProsodyCaptioner(runtime=None)
    rule_judge = judge_mod.RuleJudge()
    fp = run_fingerprint(_Named("s"), _Named("a"), captioner, rule_judge, "s")
    monkeypatch.setitem(style_mod.THRESHOLDS, "volume", [-30.0, -10.0])
    assert [c.split(":")[0] for c in changes(fp, run_fingerprint(
        _Named("s"), _Named("a"), captioner, rule_judge, "s"))] == ["style.thresholds"]
    monkeypatch.setattr(style_mod, "RULES_VERSION", "edited")
    assert "style.rules" in " ".join(changes(fp, run_fingerprint(
        _Named("s"), _Named("a"), captioner, rule_judge, "s")))


def test_a_replaced_reply_file_is_scored_again(tmp_path, fake_server, monkeypatch, capsys):
    monkeypatch.setenv("BENCH_TEST_KEY", PLANTED_KEY)
    queries, markers = make_remote_set(tmp_path / "d", fake_server, 2)
    replies = tmp_path / "replies"
    for i, m in enumerate(markers):
        path = replies / m[:3] / f"{m[3]}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(tone_wav(900 + i))
        fake_server.register_audio(path.read_bytes(), m, f"reply for {m}")
    out = tmp_path / "out"
    argv = remote_argv(fake_server, queries, out, tmp_path / "c.sqlite",
                       ["--system", "wavdir", "--system-path", str(replies)])
    assert score.main(argv) == 0
    first = {j.item_id: j for j in read_judgements(out / "judgements.jsonl")}
    assert all(len(j.prompt_sha256) == 64 and len(j.reply_sha256) == 64 for j in first.values())
    # The reply of q01:a is replaced by a new file; the judge now rates it 2.
    new = tone_wav(1234)
    (replies / "q01" / "a.wav").write_bytes(new)
    fake_server.register_audio(new, "q01a", "a new reply for q01a")
    fake_server.judge_scores["q01a"] = 2
    # And the prompt of q02:b is re-recorded.
    prompt = tone_wav(4321)
    (tmp_path / "d" / "audio" / "q02b.wav").write_bytes(prompt)
    fake_server.register_audio(prompt, "q02b", "prompt q02b said again")
    before = dict(fake_server.counts)
    capsys.readouterr()
    assert score.main(argv) == 0
    assert "2 scored again because what they were scored from changed: q01:a: reply audio " \
        "changed; q02:b: prompt audio changed" in capsys.readouterr().err
    assert json.loads((out / "run.json").read_text())["items_rescored"] == {
        "q01:a": "reply audio changed", "q02:b": "prompt audio changed"}
    asked = {m for (endpoint, m), n in fake_server.counts.items()
             if endpoint == "judge" and n != before.get((endpoint, m), 0)}
    assert asked == {"q01a", "q02b"}
    res = {j.item_id: j for j in read_judgements(out / "judgements.jsonl")}
    assert res["q01:a"].score == 2 and res["q01:a"].reply_sha256 != first["q01:a"].reply_sha256
    assert res["q01:b"] == first["q01:b"]
    assert res["q02:b"].input_transcript == "prompt q02b said again"


def test_two_wav_folders_with_one_basename_stay_two_systems(tmp_path, fake_server,
                                                            monkeypatch, capsys):
    monkeypatch.setenv("BENCH_TEST_KEY", PLANTED_KEY)
    queries, markers = make_remote_set(tmp_path / "d", fake_server, 1)
    outs = []
    for run, seed in (("a", 0), ("b", 50)):
        replies = tmp_path / "runs" / run / "replies"
        for i, m in enumerate(markers):
            path = replies / m[:3] / f"{m[3]}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(tone_wav(700 + seed + i))
            fake_server.register_audio(path.read_bytes(), m, f"reply for {m}")
        argv = remote_argv(fake_server, queries, tmp_path / run, tmp_path / "c.sqlite",
                           ["--system", "wavdir", "--system-path", str(replies)])
        assert score.main(argv) == 0
        outs.append(tmp_path / run / "judgements.jsonl")
    names = {read_judgements(p)[0].system for p in outs}
    assert len(names) == 2 and all(n.startswith("wavdir/replies-") for n in names)
    capsys.readouterr()
    assert report.main([str(p) for p in outs]) == 0
    table = capsys.readouterr().out
    assert all(f"| {n} |" in table for n in names)
    # An explicit name is what the judgements and the report use.
    argv = remote_argv(fake_server, queries, tmp_path / "named", tmp_path / "c.sqlite",
                       ["--system", "wavdir", "--system-path", str(replies),
                        "--system-name", "run-b"])
    assert score.main(argv) == 0
    assert {j.system for j in read_judgements(tmp_path / "named" / "judgements.jsonl")} == \
        {"run-b"}


def test_a_wrong_system_path_fails_loudly(tmp_path, fake_server, monkeypatch, capsys):
    monkeypatch.setenv("BENCH_TEST_KEY", PLANTED_KEY)
    queries, _ = make_remote_set(tmp_path / "d", fake_server, 2)
    wrong = tmp_path / "not-the-replies"
    wrong.mkdir()
    sf.write(wrong / "stray.wav", np.zeros(1600), 16000)
    argv = remote_argv(fake_server, queries, tmp_path / "out", tmp_path / "c.sqlite",
                       ["--system", "wavdir", "--system-path", str(wrong)])
    assert score.main(argv) == 1
    captured = capsys.readouterr()
    assert "failed 4 (by stage: system 4)" in captured.err
    assert "Every item failed at the system: check --system / --system-path" in captured.err
    assert "**Overall (failures as 1): 1.000**" in captured.out
    assert "scored items only (paper-comparable): - (n=0)" in captured.out
    capsys.readouterr()
    assert score.main(argv) == 1
    err = capsys.readouterr().err
    assert "4 already done (0 scored, 4 failed)" in err and "--retry-failed" in err


def test_a_malformed_answer_is_not_cached_and_bold_scores_parse(tmp_path, fake_server,
                                                               monkeypatch):
    monkeypatch.setenv("BENCH_TEST_KEY", PLANTED_KEY)
    queries, _ = make_remote_set(tmp_path / "d", fake_server, 1)
    fake_server.script = {("judge", "q01a"): ["malformed", "malformed"],
                          ("judge", "q01b"): ["bold"]}
    fake_server.judge_scores = {"q01b": 5}
    out = tmp_path / "out"
    argv = remote_argv(fake_server, queries, out, tmp_path / "c.sqlite")
    assert score.main(argv) == 1
    res = {j.item_id: j for j in read_judgements(out / "judgements.jsonl")}
    assert res["q01:a"].error_stage == "judge" and res["q01:b"].score == 5
    assert res["q01:b"].reason == "Fits the cues."
    # The retry asks the judge again instead of replaying the cached malformed answer.
    assert score.main(argv + ["--retry-failed"]) == 0
    assert fake_server.counts[("judge", "q01a")] == 3
    res = {j.item_id: j for j in read_judgements(out / "judgements.jsonl")}
    assert res["q01:a"].score == 4


def test_help_shows_defaults_and_the_paper_set_up():
    import contextlib
    import io

    import pytest

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), pytest.raises(SystemExit):
        score.parse_args(["--help"])
    text = buf.getvalue()
    assert "(default: 4)" in text and "(default: gpt-4.1)" in text
    assert "--judge openai --judge-model gpt-4.1" in text and "examples:" in text
    assert "--system-name" in text and "--force-new" in text


def test_an_unusable_answer_in_the_cache_is_asked_again_and_replaced(tmp_path):
    from bench.backends.cache import Cache, cache_key
    from bench.backends.runtime import Runtime

    cache = Cache(tmp_path / "c.sqlite")
    # What an older version left behind: a malformed judge answer stored as the answer.
    cache.put(cache_key("judge-x", "m", {"q": 1}), "judge", "judge-x", "m",
              {"text": "maybe four"})
    rt, asked = Runtime(cache), []

    def compute():
        asked.append(1)
        return {"text": "Fine. The score is 4."}, {}

    def valid(v):
        return judge_mod.parse_score(v["text"]) is not None

    out = rt.call("judge", "judge-x", "m", {"q": 1}, compute, remote=False, keep=valid)
    assert out["text"].endswith("The score is 4.") and len(asked) == 1
    assert rt.call("judge", "judge-x", "m", {"q": 1}, compute, remote=False, keep=valid) == out
    assert len(asked) == 1  # the good answer replaced the bad one in the cache


def test_a_checkpoint_systems_weights_and_sampling_are_in_the_fingerprint():
    from bench.scoring.fingerprint import changes, identity

    class _Checkpoint:  # the attributes bench.backends.systems.CheckpointSystem exposes
        name, model_id, seed, sampling = "checkpoint/kimi", "w1+s1", 0, "temperature=0.7"

    before = identity(_Checkpoint())
    later = _Checkpoint()
    later.model_id = "w2+s1"  # the same path, retrained weights
    assert changes({"system": before}, {"system": identity(later)}) == [
        "system.model_id: 'w1+s1' -> 'w2+s1'"]
