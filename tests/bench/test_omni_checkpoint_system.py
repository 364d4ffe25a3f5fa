"""--system checkpoint on a tiny random Qwen2.5-Omni: no --system-speech (its token2wav
and voices are inside the checkpoint), replies cached like Kimi-Audio's."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import soundfile

from bench import score
from bench.backends.cache import Cache
from bench.backends.runtime import Runtime
from bench.backends.systems import CheckpointSystem
from bench.data.schema import Query, StyleVariant, read_judgements
from paras2s_jax import speech_checkpoint
from tests.model.qwen_omni.speaking_checkpoint import (
    MAX_NEW_TOKENS,
    SEED,
    SPEAKER,
    T2W,
    sampling,
    write_tone,
)


@pytest.fixture
def sampled(monkeypatch):
    """The prompts the checkpoint systems opened from now on sample a reply for."""
    calls = []
    open_chat = speech_checkpoint.open_speech_chat

    def counting(*args, **kwargs):
        chat = open_chat(*args, **kwargs)

        def reply(audio, seed):
            calls.append(audio)
            return chat.reply(audio, seed)

        return dataclasses.replace(chat, reply=reply)

    monkeypatch.setattr(speech_checkpoint, "open_speech_chat", counting)
    return calls


def test_an_omni_reply_is_spoken_and_cached(speaking_omni, sampled, tmp_path):
    orbax, _ = speaking_omni
    write_tone(tmp_path / "prompt.wav")
    style = StyleVariant("calm", str(tmp_path / "prompt.wav"))
    query = Query("q1", "emotion", "hello", "", "synthetic", (style, style))
    s = sampling()

    def system() -> CheckpointSystem:  # a fresh process's system over the same cache
        return CheckpointSystem(orbax, None, Runtime(Cache(tmp_path / "c.sqlite")), seed=SEED,
                                max_new_tokens=MAX_NEW_TOKENS, speaker=SPEAKER,
                                text_temperature=s.text_temperature, text_top_k=s.text_top_k,
                                audio_temperature=s.audio_temperature,
                                audio_top_k=s.audio_top_k)

    first = system()
    assert first.chat.family == "qwen25_omni" and f"speaker={SPEAKER!r}" in first.sampling
    wav, rate = soundfile.read(first.respond(query, style).audio, dtype="float32")
    assert rate == 24_000 and wav.size % (T2W.dit.repeats * T2W.bigvgan.hop_size) == 0
    assert len(sampled) == 1
    again = system().respond(query, style)
    assert len(sampled) == 1  # from the cache: no new model call
    np.testing.assert_array_equal(soundfile.read(again.audio, dtype="float32")[0], wav)


def _system_calls(out):
    return [e for e in (json.loads(x) for x in (out / "ledger.jsonl").read_text().splitlines())
            if e["role"] == "system"]


@pytest.mark.slow  # ASR, captions and the rule judge of two items, token2wav per reply length
def test_bench_score_an_omni_checkpoint_and_a_rerun_reuses_its_replies(speaking_omni,
                                                                       sampled, tmp_path):
    orbax, _ = speaking_omni
    argv = ["--system", "checkpoint", "--system-path", str(orbax), "--system-max-new-tokens",
            "16", "--limit", "1", "--cache", str(tmp_path / "c.sqlite"), "--no-progress",
            "--no-plots"]
    status = score.main([*argv, "--out", str(tmp_path / "one")])
    first = read_judgements(tmp_path / "one" / "judgements.jsonl")
    assert len(first) == 2 and len(sampled) == 2  # one offline query, two styles
    assert status == int(any(j.score is None for j in first))
    for j in first:  # scored, or a reply with no codes, or one too short to score
        assert (j.score is not None or (j.error_stage == "system" and "no audio codes" in j.error)
                or (j.error_stage == "reply_audio" and "too short" in j.error)), j.error
    spoken = [j for j in first if j.error_stage != "system"]
    assert spoken, [j.error for j in first]
    assert all(j.system == f"checkpoint/{orbax.name}" for j in first)

    # A fresh results folder over the same cache: no spoken reply is sampled again.
    assert score.main([*argv, "--out", str(tmp_path / "two")]) == status
    assert len(sampled) == 2 + (len(first) - len(spoken))
    second = {j.item_id: j for j in read_judgements(tmp_path / "two" / "judgements.jsonl")}
    assert {j.item_id: j.score for j in first} == {k: j.score for k, j in second.items()}
    assert len([e for e in _system_calls(tmp_path / "two") if e["cached"]]) == len(spoken)
