"""VoiceBench's judge set-ups over real HTTP (loopback OpenAI-compatible server, real client)."""

import pytest

from bench.backends.cache import Cache
from bench.backends.remote import Endpoint, RetryPolicy
from bench.backends.runtime import Runtime
from bench.scoring.voicebench_rules.grader import (
    OFFICIAL_OPEN,
    OFFICIAL_QA,
    OFFICIAL_SYSTEM,
    SETUPS,
    GraderAnswerError,
    LLMGrader,
    majority_yes,
    official_open,
)
from bench.scoring.voicebench_rules.pedant import PedantScorer
from tests.bench.fake_openai import FakeOpenAI


@pytest.fixture
def server():
    fake = FakeOpenAI().start()
    yield fake
    fake.stop()


def grader(server, tmp_path, setup="official"):
    endpoint = Endpoint(model=SETUPS[setup].default_model, base_url=server.base_url, key_env="")
    runtime = Runtime(Cache(tmp_path / "cache.sqlite"), retry=RetryPolicy(1, 0.0))
    return LLMGrader(endpoint, runtime, SETUPS[setup])


def answer_with(bodies, texts):
    """A chat rule answer that records each request body and returns `texts` as choices."""
    def answer(body):
        bodies.append(body)
        return texts if body.get("n", 1) > 1 else texts[:1]
    return answer


def test_official_open_asks_as_voicebench_and_averages_three_samples(server, tmp_path):
    bodies = []
    server.add_chat_rule("judge", r"speech interaction scenario", answer_with(bodies, ["4", "5",
                                                                                     "[[3]]"]))
    g = grader(server, tmp_path)
    result = g.grade_open("Name a {response} colour.", "Blue.")
    assert result == {"score": 4.0, "samples": ["4", "5", "[[3]]"]}
    (body,) = bodies
    assert body["model"] == "gpt-4o-mini"
    assert (body["temperature"], body["top_p"], body["n"], body["max_tokens"]) == (0.5, 0.95, 3,
                                                                                  1024)
    assert body["messages"][0] == {"role": "system", "content": OFFICIAL_SYSTEM}
    # fields are filled one after another, as VoiceBench's script does: a "{response}" in the
    # prompt is replaced by the reply too
    expected = OFFICIAL_OPEN.replace("{prompt}", "Name a {response} colour.").replace(
        "{response}", "Blue.")
    assert body["messages"][1] == {"role": "user", "content": expected}
    assert g.grade_open("Name a {response} colour.", "Blue.")["score"] == 4.0
    assert len(bodies) == 1  # the second ask came from the cache


def test_official_qa_takes_the_majority_of_three(server, tmp_path):
    bodies = []
    server.add_chat_rule("judge", r"Candidate answer", answer_with(bodies, ["Yes", "no", "No"]))
    result = grader(server, tmp_path).grade_qa("Capital of France?", "Paris", "Lyon.")
    assert result == {"score": 0.0, "samples": ["Yes", "no", "No"]}
    content = bodies[0]["messages"][1]["content"]
    assert content == OFFICIAL_QA.replace("{prompt}", "Capital of France?").replace(
        "{reference}", "Paris").replace("{response}", "Lyon.")
    assert bodies[0]["n"] == 3


def test_ours_is_one_greedy_sample_and_does_not_share_the_cache(server, tmp_path):
    bodies = []
    server.add_chat_rule("judge", r"Rate a voice assistant|speech interaction",
                         answer_with(bodies, ["3", "5", "5"]))
    ours = grader(server, tmp_path, "ours")
    assert ours.grade_open("Name a colour.", "Blue.") == {"score": 3.0, "samples": ["3"]}
    assert (bodies[0]["temperature"], bodies[0].get("n")) == (0, 1)
    assert bodies[0]["messages"][0]["role"] == "user"  # no system message
    official = grader(server, tmp_path, "official")  # same cache file, other request
    assert official.grade_open("Name a colour.", "Blue.")["score"] == pytest.approx(13 / 3)
    assert len(bodies) == 2


@pytest.mark.parametrize("samples, correct", [
    (["Yes", "Yes", "No"], True), (["YES", "yes", "No"], True), (["Yes.", "Yes.", "Yes"], False),
    (["No", "Yes", "no"], False), (["yes", "no", "maybe"], True), (["no", "yes", "maybe"], False)])
def test_majority_vote(samples, correct):
    # the last two are three-way ties, which go to the earliest sample
    assert majority_yes(samples) is correct


def test_an_unreadable_rating_is_an_error_not_a_score():
    assert official_open(["4", "Score: [[2]]", "3.0"]) == 3.0
    with pytest.raises(GraderAnswerError, match="neither a number nor"):
        official_open(["4", "four", "4"])
    with pytest.raises(GraderAnswerError, match="not finite"):
        official_open(["nan", "4", "4"])


def test_pedant_needs_its_classifier_files(tmp_path):
    with pytest.raises(ValueError, match="no lr_classifier.pkl, tf-idf_vectorizer.pkl"):
        PedantScorer(tmp_path)
    for name in ("lr_classifier.pkl", "tf-idf_vectorizer.pkl"):
        (tmp_path / name).write_bytes(b"")
    try:
        import qa_metrics  # noqa: F401
    except ImportError:
        with pytest.raises(ValueError, match="qa-metrics==0.2.17"):
            PedantScorer(tmp_path)
