"""The toy world: style lives only in the audio, the listener inverts the speaker,
the judge follows the rubric, and the data is deterministic and within the tiny vocab."""

import json

import numpy as np
import pytest

from paras2s_jax.model import tiny
from paras2s_jax.toyworld import (
    STYLE_PAIRS,
    Scenario,
    ToyDataConfig,
    caption,
    judge,
    scenarios,
    speak,
    split_texts,
    transcribe,
    write_toy_data,
)
from paras2s_jax.toyworld.demos import read_general_queries, rl_prompts
from paras2s_jax.toyworld.general import Request, judge_general, requests
from paras2s_jax.toyworld.world import GENERIC, WORDS, all_texts
from paras2s_jax.train.data import read_records

SC = Scenario("emotion", 0, "ex", "sad")


def test_style_only_in_audio():
    rng = np.random.default_rng(0)
    happy = speak(SC.words, "happy", rng, noise=0.0)
    sad = speak(SC.words, "sad", rng, noise=0.0)
    assert happy[0::2] == sad[0::2]  # same content codes
    assert set(happy[1::2]).isdisjoint(sad[1::2])  # different prosody
    # the neutral text is identical for both styles of a scenario
    assert Scenario("emotion", 0, "ex", "happy").words == SC.words


def test_listener_inverts_speaker_under_noise():
    rng = np.random.default_rng(1)
    for style in ("happy", "sarcastic", "elderly", "female", "neutral"):
        codes = speak(SC.words, style, rng, noise=0.1)
        assert transcribe(codes) == SC.words
        assert caption(codes) == style
    assert caption([]) == "neutral"
    mixed = speak(("a",), "happy", rng, 0.0) + speak(("a",), "sad", rng, 0.0)
    assert caption(mixed) == "unclear"


@pytest.mark.parametrize("words, voice, score", [
    (SC.reply_words(), "gentle", 5),
    (SC.reply_words(), "neutral", 4),
    (SC.reply_words(), "playful", 3),
    (SC.generic_words(), "gentle", 3),
    (SC.reply_words("happy"), "neutral", 2),
    (SC.reply_words("happy"), "cheerful", 1),  # fully reversed
    (("wow", "wow"), "gentle", 1),
])
def test_judge_rubric(words, voice, score):
    codes = speak(words, voice, np.random.default_rng(0), noise=0.0)
    assert judge(SC, codes).score == score


def test_judge_empty_reply_scores_one():
    assert judge(SC, []).score == 1


def test_scenario_table_covers_four_dimensions_with_two_styles():
    dims = {d for d, _, _ in all_texts()}
    assert dims == {"emotion", "sarcasm", "age", "gender"}
    for d, (a, b) in STYLE_PAIRS.items():
        assert a != b
        sc_a, sc_b = Scenario(d, 0, "dog", a), Scenario(d, 0, "dog", b)
        assert sc_a.reply_words() != sc_b.reply_words()  # the style changes the right reply
        assert sc_a.reply_words() != sc_a.generic_words()


def test_split_holds_out_unseen_texts():
    train, held = split_texts(0.25, seed=0)
    assert set(train).isdisjoint(held)
    assert len(held) == round(0.25 * len(all_texts()))
    assert len(scenarios(held)) == 2 * len(held)


def test_toy_data_is_deterministic_valid_and_imperfect(tmp_path):
    cfg = ToyDataConfig(renderings=2, num_shards=2)
    a = write_toy_data(tmp_path / "a", cfg)
    b = write_toy_data(tmp_path / "b", cfg)
    for key in a:
        assert a[key].read_bytes() == b[key].read_bytes()
    mc = tiny()
    records = read_records([a["train_0"], a["train_1"], a["eval"]], mc)  # validates ids
    assert max(max(r["reply_text"]) for r in records) < len(WORDS) < mc.special.msg_end
    general = [r for r in records if "general" in r]
    records = [r for r in records if "scenario" in r]
    assert len(general) == len(requests()) * cfg.general_renderings
    scores = [judge(Scenario(**r["scenario"]), r["reply_audio"]).score for r in records]
    assert 3.5 < np.mean(scores) < 4.8  # demonstrations are good but leave headroom
    assert GENERIC[0] in {WORDS[r["reply_text"][0]] for r in records}
    queries = [json.loads(line) for line in a["queries"].read_text().splitlines()]
    held = {(q["scenario"]["dimension"], q["scenario"]["template"], q["scenario"]["topic"])
            for q in queries}
    seen = {(r["scenario"]["dimension"], r["scenario"]["template"], r["scenario"]["topic"])
            for r in records if r["id"].startswith("train")}
    assert held.isdisjoint(seen)


def test_general_requests_ignore_style_and_are_judged_on_content():
    rng = np.random.default_rng(0)
    sound = Request("sound", "cow", "sad")
    assert sound.answer() == ("the", "cow", "says", "moo")
    assert Request("count", "three", "child").answer() == ("three", "four", "five")
    assert Request("sound", "cow", "happy").answer() == sound.answer()  # style plays no part
    say = lambda words, voice="neutral": speak(words, voice, rng, noise=0.0)  # noqa: E731
    assert judge_general(sound, say(sound.answer())).score == 5
    assert judge_general(sound, say(sound.answer(), "gentle")).score == 5  # voice not judged
    assert judge_general(sound, say(("the", "cow", "says", "baa"))).score == 3
    assert judge_general(sound, say(("oh", "dog", "sorry"))).score == 1


def test_general_requests_are_sft_data_and_probe_queries_but_never_rl_prompts(tmp_path):
    paths = write_toy_data(tmp_path, ToyDataConfig(renderings=1, general_renderings=2))
    probe = read_general_queries(paths["general_queries"])
    assert {(q.kind, q.topic) for _, q in probe} == set(requests())
    rl = rl_prompts(tmp_path)
    assert rl and all("scenario" in r for r in rl)
    demos = [json.loads(x) for k, p in paths.items() if k.startswith("train")
             for x in p.read_text().splitlines()]
    taught = [r for r in demos if "general" in r]
    assert len(taught) == 2 * len(requests())
    for r in taught:  # the right answer, in words and in speech
        req = Request(**r["general"])
        assert [WORDS[i] for i in r["reply_text"]] == list(req.answer())
        assert judge_general(req, r["reply_audio"]).score == 5
