"""Uncertainty-driven distillation: entropy selection and the resumable judging rounds."""

import json

import numpy as np
import pytest

from paras2s_jax.train.select import (
    boundary_closeness,
    digit_entropy,
    judge_in_rounds,
    pick_uncertain,
    round_path,
)

CONFIDENT = [0.96, 0.01, 0.01, 0.01, 0.01]
FLAT = [0.2] * 5


def test_entropy_is_highest_for_a_flat_distribution():
    e = digit_entropy(np.asarray([CONFIDENT, FLAT, [1.0, 0, 0, 0, 0]]))
    assert e[1] == pytest.approx(np.log(5)) and e[2] == pytest.approx(0.0, abs=1e-9)
    assert e[1] > e[0] > e[2]


def test_a_planted_flat_reply_is_picked_over_confident_ones():
    probs = np.asarray([CONFIDENT] * 6)
    probs[4] = FLAT
    probs[2] = [0.5, 0.5, 0, 0, 0]  # less sure than CONFIDENT, surer than FLAT
    assert pick_uncertain(probs, np.zeros(6, bool), 1).tolist() == [4]
    assert pick_uncertain(probs, np.zeros(6, bool), 2).tolist() == [4, 2]


def test_boundary_criterion_picks_expected_scores_between_two_digits():
    between = [0, 0, 0, 0.5, 0.5]  # expected score 4.5: a 4 or a 5, the RM cannot tell
    near = [0, 0, 0.1, 0.6, 0.3]  # 4.2
    probs = np.asarray([CONFIDENT, FLAT, near, between, [0, 0, 0, 0, 1.0]])
    assert boundary_closeness(probs) == pytest.approx([-0.4, -0.5, -0.3, 0.0, -0.5])
    # FLAT has the highest entropy but its expected score is a digit (3.0)
    assert pick_uncertain(probs, np.zeros(5, bool), 2, "boundary").tolist() == [3, 2]
    assert pick_uncertain(probs, np.zeros(5, bool), 1, "entropy").tolist() == [1]
    with pytest.raises(ValueError, match=r"config.distill.criterion='vote': use one of"):
        pick_uncertain(probs, np.zeros(5, bool), 1, "vote")


def test_judged_replies_are_never_picked():
    probs = np.asarray([FLAT, CONFIDENT, FLAT, CONFIDENT])
    judged = np.asarray([True, False, True, False])
    assert sorted(pick_uncertain(probs, judged, 2).tolist()) == [1, 3]
    with pytest.raises(ValueError, match="config.distill.per_round=3: only 2 unjudged"):
        pick_uncertain(probs, judged, 3)


def test_ties_go_to_the_lower_index():
    probs = np.asarray([CONFIDENT, FLAT, CONFIDENT, FLAT, FLAT])
    assert pick_uncertain(probs, np.zeros(5, bool), 2).tolist() == [1, 3]
    assert pick_uncertain(probs, np.asarray([0, 1, 0, 0, 0], bool), 3).tolist() == [3, 4, 0]


# A toy pool and reward model: the "RM" is sure of a reply once it has seen a judged reply
# of the same query, except of the planted one, which it never is.
N_QUERIES, PER_QUERY, PLANTED = 6, 3, 2


def _pool():
    return [({"id": f"q{q}", "prompt_audio": [q]}, [q, s], [100 + 3 * q + s])
            for q in range(N_QUERIES) for s in range(PER_QUERY)]


class FakeRM:
    def __init__(self):
        self.seen: set[str] = set()
        self.fits: list[int] = []

    def fit(self, records):
        self.fits.append(len(records))
        self.seen = {r["query_id"] for r in records}

    def score(self, replies):
        out = []
        for q, _, audio in replies:
            if audio[0] == 100 + PLANTED:
                out.append(FLAT)
            elif q["id"] in self.seen:
                out.append(CONFIDENT)
            else:
                out.append([0.7, 0.1, 0.1, 0.05, 0.05])
        return np.asarray(out)


class CountingJudge:
    def __init__(self, die_after=None):
        self.calls: list[int] = []
        self.die_after = die_after

    def __call__(self, record, text, audio):
        if self.die_after is not None and len(self.calls) == self.die_after:
            raise KeyboardInterrupt  # the run is killed mid-round
        self.calls.append(audio[0] - 100)
        return 1 + audio[0] % 5, "rule"


def _run(tmp_path, judge, rm, rounds=3, per_round=3):
    return judge_in_rounds(_pool(), judge, tmp_path, rounds, per_round, rm.fit, rm.score,
                           "toy", seed=0)


def test_rounds_judge_the_planted_uncertain_reply_and_nothing_twice(tmp_path):
    judge, rm = CountingJudge(), FakeRM()
    records = _run(tmp_path, judge, rm)
    assert len(judge.calls) == 9 == len(set(judge.calls))  # once per judged reply
    first = [r["pool_index"] for r in records if r["round"] == 0]
    assert PLANTED not in first  # (the seed's random round misses it)
    second = [r["pool_index"] for r in records if r["round"] == 1]
    assert second[0] == PLANTED  # the most uncertain reply is judged in round 1
    assert rm.fits == [3, 6]  # refitted on all that was judged before each chosen round
    assert [r["pool_index"] for r in records] == judge.calls
    assert all(r["score"] == 1 + (100 + r["pool_index"]) % 5 for r in records)
    on_disk = [json.loads(line) for r in range(3)
               for line in round_path(tmp_path, r).read_text().splitlines()]
    assert on_disk == records

    again = CountingJudge()
    assert _run(tmp_path, again, FakeRM()) == records and again.calls == []


@pytest.mark.parametrize("die_after", [5, 7])  # in round 1 / in round 2, 2 calls in
def test_a_killed_run_resumes_its_judged_set_and_round(tmp_path, die_after):
    full = _run(tmp_path / "full", CountingJudge(), FakeRM())
    killed = CountingJudge(die_after=die_after)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "run", killed, FakeRM())
    rounds_done = die_after // 3
    assert [round_path(tmp_path / "run", r).exists() for r in range(3)] == [
        r < rounds_done for r in range(3)]
    resumed, rm = CountingJudge(), FakeRM()
    records = _run(tmp_path / "run", resumed, rm)
    assert records == full  # the same picks as an uninterrupted run
    # refitted on the rounds on disk before its first round, then after each of its own
    assert rm.fits == [3, 6][rounds_done - 1:]
    on_disk = {r["pool_index"] for r in records if r["round"] < rounds_done}
    assert PLANTED in {r["pool_index"] for r in records if r["round"] == 1}
    assert not set(resumed.calls) & on_disk  # nothing judged before is judged again
    assert len(resumed.calls) == 9 - 3 * rounds_done == len(set(resumed.calls))


def test_a_changed_pool_is_refused_on_resume(tmp_path):
    _run(tmp_path, CountingJudge(), FakeRM(), rounds=1)
    pool = _pool()[::-1]
    with pytest.raises(ValueError, match="the pool changed"):
        judge_in_rounds(pool, CountingJudge(), tmp_path, 2, 3, FakeRM().fit,
                        FakeRM().score, "toy")


@pytest.mark.parametrize("rounds, per_round, match", [
    (0, 3, r"config.distill.rounds=0 must be >= 1"),
    (7, 3, r"config.distill.per_round=3 x config.distill.rounds=7"),
    (2, 0, r"config.distill.per_round=0"),
])
def test_bad_round_settings_name_the_config_fields(tmp_path, rounds, per_round, match):
    with pytest.raises(ValueError, match=match):
        _run(tmp_path, CountingJudge(), FakeRM(), rounds, per_round)


def test_replies_heard_with_whisper_features_keep_their_feature_file(tmp_path):
    """A pool sampled hearing Whisper features: each reply's query names the absolute
    feature file its shard recorded, and so do the round records the RM trains on."""
    from paras2s_jax.train.distill import read_scored
    from paras2s_jax.train.reward_stage import read_pool

    pool_dir = tmp_path / "pool"
    (pool_dir / "features").mkdir(parents=True)
    queries = [q for q, _, _ in _pool()[::PER_QUERY]]
    shard = []
    for i, (q, text, audio) in enumerate(_pool()):
        feats = np.full((1, 4), float(i // PER_QUERY), np.float32)
        np.save(pool_dir / "features" / f"{i // PER_QUERY}.npy", feats)
        shard.append({"query_id": q["id"], "reply_text": text, "reply_audio": audio,
                      "score": 0, "prompt_audio": q["prompt_audio"],
                      "prompt_features": f"features/{i // PER_QUERY}.npy"})
    (pool_dir / "distill-00000.jsonl").write_text("".join(json.dumps(r) + "\n" for r in shard))
    pool = read_pool(pool_dir, queries)
    assert [(q["id"], t, a) for q, t, a in pool] == [(q["id"], t, a) for q, t, a in _pool()]
    for i, (q, _, _) in enumerate(pool):
        assert q["prompt_features"] == str((pool_dir / "features" / f"{i // PER_QUERY}.npy")
                                           .resolve())
    judge_in_rounds(pool, CountingJudge(), tmp_path / "train", 2, 3, FakeRM().fit,
                    FakeRM().score, "toy")
    records = read_scored(sorted((tmp_path / "train").glob("round-*.jsonl")))
    assert len(records) == 6
    for r in records:
        assert np.load(r["prompt_features"])[0, 0] == r["pool_index"] // PER_QUERY
