"""config.distill.selection='uncertainty' in the reward stage: a tiny toy run whose second
round judges a planted uncertain reply, judges each reply once, and resumes when killed."""

import json

import numpy as np
import pytest

from configs import reward as reward_configs
from paras2s_jax.toyworld import ToyDataConfig, write_toy_data
from paras2s_jax.train import reward_stage
from paras2s_jax.train.select import round_path

POOL, PER_ROUND = 6, 2  # 3 train prompts x 2 replies


@pytest.fixture(scope="module")
def toy_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("toy")
    paths = write_toy_data(out, ToyDataConfig(renderings=1))
    lines = paths["queries"].read_text().splitlines()
    paths["queries"].write_text("\n".join(lines[:2]) + "\n")  # 2 held-out queries
    return out


def _cfg(workdir, toy_dir):
    cfg = reward_configs.get_config("toy")
    cfg.workdir, cfg.init.source, cfg.toy.data_dir = str(workdir), "fresh", str(toy_dir)
    cfg.toy.num_train_queries, cfg.distill.samples_per_query = 3, 2
    cfg.distill.chunk_queries, cfg.distill.sampling.max_new_tokens = 4, 16
    cfg.distill.selection, cfg.distill.rounds = "uncertainty", 2
    cfg.distill.per_round, cfg.distill.round_steps = PER_ROUND, 2
    cfg.data.global_batch, cfg.train.total_steps = 8, 2
    cfg.train.eval_every = cfg.train.save_every = 2
    cfg.optimizer.warmup_steps, cfg.optimizer.decay_steps = 1, 2
    return cfg


@pytest.mark.slow
def test_uncertainty_rounds_in_the_reward_stage(toy_dir, tmp_path, monkeypatch):
    first_round = set(np.random.default_rng(0).choice(POOL, PER_ROUND, replace=False).tolist())
    planted = min(set(range(POOL)) - first_round)
    calls, scored = [], []
    real_probs, real_judge = reward_stage.digit_probs, reward_stage.toy_judge

    def planted_probs(model, records, cfg):
        probs = real_probs(model, records, cfg)
        assert probs.shape == (len(records), 5) and np.allclose(probs.sum(-1), 1, atol=1e-5)
        # round 1 scores the unjudged replies in pool order: flatten the planted one's
        # distribution (the RM cannot tell its score at all)
        probs[sorted(set(range(POOL)) - first_round).index(planted)] = 0.2
        scored.append(len(records))
        return probs

    def counting_judge(record, text, audio):
        if record["id"].startswith("train"):
            if len(calls) == die_after[0]:
                raise KeyboardInterrupt  # the run is killed in round 1
            calls.append(record["id"])
        return real_judge(record, text, audio)

    monkeypatch.setattr(reward_stage, "digit_probs", planted_probs)
    monkeypatch.setattr(reward_stage, "toy_judge", counting_judge)
    die_after = [PER_ROUND + 1]
    with pytest.raises(KeyboardInterrupt):
        reward_stage.run_reward(_cfg(tmp_path, toy_dir))
    assert round_path(tmp_path / "distill/train", 0).exists()
    assert not round_path(tmp_path / "distill/train", 1).exists()

    calls.clear()
    die_after[0] = None
    results = reward_stage.run_reward(_cfg(tmp_path, toy_dir))
    assert all(np.isfinite(v) for k, v in results.items() if k.startswith("train/"))
    assert "heldout/accuracy" in results  # the held-out replies were all judged as before
    assert len(calls) == PER_ROUND  # round 1 only: round 0's replies are not judged again
    assert scored == [POOL - PER_ROUND] * 2  # the unjudged replies, once per run's round 1
    records = [json.loads(line) for r in range(2)
               for line in round_path(tmp_path / "distill/train", r).read_text().splitlines()]
    assert [r["round"] for r in records] == [0] * PER_ROUND + [1] * PER_ROUND
    assert {r["pool_index"] for r in records if r["round"] == 0} == first_round
    assert records[PER_ROUND]["pool_index"] == planted  # the planted reply, first pick
    assert len({r["pool_index"] for r in records}) == 2 * PER_ROUND
    assert all(1 <= r["score"] <= 5 for r in records)
    assert (tmp_path / "reward_model").exists()
    # each run's refit before round 1 (the killed one's too) scored on the held-out pairs
    evals = [json.loads(line) for line in
             (tmp_path / reward_stage.ROUND_EVALS).read_text().splitlines()]
    assert [e["judged"] for e in evals] == [PER_ROUND] * 2
    assert all(e["steps"] == 2 and "pearson" in e and 0 <= e["accuracy"] <= 1 for e in evals)

    calls.clear()
    reward_stage.run_reward(_cfg(tmp_path, toy_dir))  # finished: nothing is judged again
    assert calls == []


@pytest.mark.parametrize("field, value, match", [
    ("selection", "active", r"config.distill.selection='active'"),
    ("round_steps", 0, r"config.distill.round_steps=0"),
    ("criterion", "vote", r"config.distill.criterion='vote': use one of"),
])
def test_bad_selection_settings_are_named(toy_dir, tmp_path, field, value, match):
    cfg = _cfg(tmp_path, toy_dir)
    cfg.distill[field] = value
    with pytest.raises(ValueError, match=match):
        reward_stage.run_reward(cfg)
