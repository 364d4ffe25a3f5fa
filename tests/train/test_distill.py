"""Distillation shards: N judged replies per query, resumable without re-judging."""

import pytest
from flax import nnx

from configs import reward as reward_configs
from paras2s_jax.model import KimiAudio, tiny
from paras2s_jax.sampling import SamplingConfig
from paras2s_jax.toyworld import ToyDataConfig, read_queries, write_toy_data
from paras2s_jax.train.distill import chunk_path, distill, read_scored, toy_judge
from paras2s_jax.train.reward_stage import run_reward


@pytest.fixture(scope="module")
def queries(tmp_path_factory):
    paths = write_toy_data(tmp_path_factory.mktemp("toy"), ToyDataConfig(renderings=1))
    return [rec for rec, _ in read_queries(paths["queries"])][:5]


def test_distill_writes_judged_samples_and_resumes(queries, tmp_path):
    model = KimiAudio(tiny(), rngs=nnx.Rngs(0))
    sampling = SamplingConfig(max_new_tokens=10, audio_temperature=1.0, num_samples=3)
    calls = []

    def counting_judge(record, text, audio):
        calls.append(record["id"])
        return toy_judge(record, text, audio)

    first = distill(model, queries, counting_judge, tmp_path, sampling, "toy-rule-judge",
                    chunk_queries=2)
    assert first == {"chunks_written": 3, "chunks_skipped": 0, "chunks": 3}
    assert len(calls) == 5 * 3
    records = read_scored(sorted(tmp_path.glob("distill-*.jsonl")))
    assert len(records) == 15 and {r["sample"] for r in records} == {0, 1, 2}
    assert all(1 <= r["score"] <= 5 and r["judge"] == "toy-rule-judge" for r in records)
    snapshot = chunk_path(tmp_path, 2).read_text()

    chunk_path(tmp_path, 2).unlink()  # as if the run died during the last chunk
    calls.clear()
    again = distill(model, queries, counting_judge, tmp_path, sampling, "toy-rule-judge",
                    chunk_queries=2)
    assert again == {"chunks_written": 1, "chunks_skipped": 2, "chunks": 3}
    assert calls == [queries[4]["id"]] * 3  # only the missing chunk was judged
    assert chunk_path(tmp_path, 2).read_text() == snapshot  # same samples as before


def test_read_scored_names_bad_records(tmp_path):
    bad = tmp_path / "distill-00000.jsonl"
    bad.write_text('{"prompt_audio": [1], "reply_text": [], "reply_audio": [], "score": 9}\n')
    with pytest.raises(ValueError, match="distill-00000.jsonl:1: score 9"):
        read_scored([bad])


def test_a_judge_with_prepare_is_handed_each_chunk_first(queries, tmp_path):
    model = KimiAudio(tiny(), rngs=nnx.Rngs(0))
    sampling = SamplingConfig(max_new_tokens=10, audio_temperature=1.0, num_samples=2)
    events = []

    class PreparingJudge:
        def prepare(self, replies):
            events.append(("prepare", [(r["id"], list(a)) for r, _, a in replies]))

        def __call__(self, record, text, audio):
            events.append(("judge", (record["id"], list(audio))))
            return toy_judge(record, text, audio)

    distill(model, queries[:3], PreparingJudge(), tmp_path, sampling, "j", chunk_queries=2)
    assert [e[0] for e in events] == ["prepare"] + ["judge"] * 4 + ["prepare"] + ["judge"] * 2
    assert events[0][1] == [e[1] for e in events[1:5]]  # the replies it is then called on
    assert events[5][1] == [e[1] for e in events[6:]]


def test_batch_mode_needs_the_bench_scorer(tmp_path):
    cfg = reward_configs.get_config("toy")
    cfg.workdir, cfg.init.path, cfg.distill.batch = str(tmp_path), str(tmp_path / "none"), True
    with pytest.raises(ValueError, match="config.distill.batch=True applies to "
                                         "config.distill.scorer='bench'"):
        run_reward(cfg)
