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
