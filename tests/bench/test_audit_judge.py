"""launch/train.py hands GRPO's reward audits the benchmark pipeline's judge when
`config.audit.scorer="bench"`: built from `config.audit.bench`, it judges a reply on the
local OpenAI-compatible server and reports the dollars of its calls (audit/cost_usd)."""

from __future__ import annotations

import numpy as np
import pytest

from configs import grpo as grpo_configs
from configs import reward as reward_configs
from launch.train import stage_extras
from tests.bench.conftest import PLANTED_KEY, make_remote_set


@pytest.fixture
def speech_dir(tmp_path):
    from paras2s_jax.audio import write_random_speech

    write_random_speech(tmp_path / "speech", "tiny")
    return tmp_path / "speech"


def _bench_args(tmp_path, server) -> str:
    queries, _ = make_remote_set(tmp_path / "data", server, 2)  # 4 items
    remote = f"--key-env BENCH_TEST_KEY --base-url {server.base_url}"
    return (f"--queries {queries} --cache {tmp_path / 'cache.sqlite'} --asr openai "
            f"{remote.replace('--', '--asr-')} --style prosody --judge openai "
            f"--judge-model gpt-4.1 {remote.replace('--', '--judge-')} --timeout 5 "
            "--max-attempts 3 --backoff 0.01")


def test_grpo_audits_get_the_bench_judge_from_config_audit_bench(
        tmp_path, fake_server, speech_dir, monkeypatch):
    from paras2s_jax.train.grpo_audit import judge_scores

    monkeypatch.setenv("BENCH_TEST_KEY", PLANTED_KEY)
    cfg = grpo_configs.get_config("toy")
    assert stage_extras(cfg) == {}  # audits off
    cfg.audit.every, cfg.audit.scorer = 10, "bench"
    cfg.audit.bench.args = _bench_args(tmp_path, fake_server)
    cfg.audit.bench.speech_dir = str(speech_dir)
    judge = stage_extras(cfg)["judge"]
    assert judge.name.startswith("bench/openai-judge/gpt-4.1")
    assert judge.batch is None  # an audit waits for its scores
    records = judge.query_records(False)
    assert [r["id"] for r in records] == ["q01:a", "q01:b", "q02:a", "q02:b"]
    assert judge.cost_usd == 0.0
    codes = np.random.default_rng(0).integers(0, 64, 60).tolist()
    scores, cost = judge_scores(judge, [(records[0], [], codes)])
    judge_bodies = [b for name, b in fake_server.bodies if name == "judge"]
    assert len(judge_bodies) == 1 and 1 <= scores[0] <= 5
    assert cost == pytest.approx(judge.cost_usd) and cost > 0  # gpt-4.1 list prices

    cfg.audit.scorer = "toy"
    assert stage_extras(cfg) == {}
    reward = reward_configs.get_config("toy")
    assert stage_extras(reward) == {}  # distillation by the toy judge: no benchmark


def test_an_empty_speech_dir_is_named(tmp_path):
    cfg = grpo_configs.get_config("toy")
    cfg.audit.every, cfg.audit.scorer = 10, "bench"
    with pytest.raises(ValueError, match=r"config\.audit\.bench\.speech_dir is empty"):
        stage_extras(cfg)
