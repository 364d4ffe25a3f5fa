"""`launch/ablate.py audit` reports each audit action (seed, step, why) and the judge
calls spent, read from a run's audits.jsonl as `Audits` writes it."""

import numpy as np

from configs import grpo as grpo_configs
from launch import ablate
from paras2s_jax.train.grpo_audit import Audits


def test_audit_actions_name_step_action_and_why(tmp_path):
    c = grpo_configs.get_config("toy").audit
    for key, value in {**ablate.AUDIT, "rule": "rollback"}.items():
        setattr(c, key, value)
    audits = Audits(c, tmp_path, 0)
    judged = {0: 4.2, 10: 4.8, 20: 4.4, 30: 4.7}  # step 20 falls 0.4 below the best
    for step, judge in judged.items():
        audits.record(step, np.full(4, 3.9), np.full(4, judge))
    acted, calls = ablate._audit_actions(tmp_path, seed=2)
    assert acted == ["seed 2, step 20: rollback (judge 4.40 < best 4.80)"]
    assert calls == 16
    assert ablate._audit_actions(tmp_path / "no_audits", seed=0) == ([], 0)


def _rows(*pearsons):
    return [{"pearson": p, "accuracy": 0.9} for p in pearsons]


def test_distill_goal_line_compares_cheap_uncertainty_with_random_full_pool():
    from launch.ablate_distill import goal_line

    random = {256: _rows(0.6, 0.7), 1024: _rows(0.74, 0.76)}  # full pool: mean 0.75
    uncertain = {128: _rows(0.7, 0.7), 256: _rows(0.75, 0.77), 512: _rows(0.8, 0.8)}
    line = goal_line(1024, random, uncertain)
    assert "Pearson 0.750): yes: from 256 judged pairs (0.25 of the calls)" in line
    assert "its best mean with <= 256 calls is 0.760 at 256" in line  # 512 is over 1/4
    uncertain[256] = _rows(0.74, 0.75)
    assert "0.750): no; its best mean with <= 256 calls is 0.745 at 256" in goal_line(
        1024, random, uncertain)
