"""GRPO settings checked before a run: sampled rollouts (no temperature 0, no top-k 1),
the schedule's unit, 7B top-k."""

import pytest

from configs import grpo as grpo_configs
from paras2s_jax.train import trainer
from paras2s_jax.train.grpo_update import per_update_schedule, sampling_config
from paras2s_jax.train.optim import schedule


def test_schedule_counts_rollout_steps_for_any_mu():
    base = grpo_configs.get_config("toy")
    base.optimizer.warmup_steps, base.optimizer.decay_steps = 5, 20
    base.optimizer.end_lr_ratio = 0.1
    one = schedule(trainer.optimizer_config(per_update_schedule(base).optimizer))
    base.grpo.updates_per_rollout = 3
    three = schedule(trainer.optimizer_config(per_update_schedule(base).optimizer))
    for k in (0, 2, 5, 11, 25):
        assert float(three(3 * k)) == pytest.approx(float(one(k)), rel=1e-6)


@pytest.mark.parametrize("stream", ["text", "audio"])
def test_greedy_rollouts_are_refused(stream):
    cfg = grpo_configs.get_config("toy")
    setattr(cfg.grpo.sampling, f"{stream}_temperature", 0.0)
    with pytest.raises(ValueError, match=f"{stream}_temperature must be > 0"):
        sampling_config(cfg)


@pytest.mark.parametrize("stream", ["text", "audio"])
def test_top_k_one_is_refused_as_greedy(stream):
    cfg = grpo_configs.get_config("toy")
    setattr(cfg.grpo.sampling, f"{stream}_top_k", 1)
    with pytest.raises(ValueError, match=rf"config\.grpo\.sampling\.{stream}_top_k = 1"):
        sampling_config(cfg)
    setattr(cfg.grpo.sampling, f"{stream}_top_k", 2)  # the smallest sampled top-k
    assert getattr(sampling_config(cfg), f"{stream}_top_k") == 2


def test_7b_preset_samples_a_truncated_vocabulary():
    cfg = grpo_configs.get_config("kimi_audio_7b")
    sc = sampling_config(cfg)
    assert 0 < sc.text_top_k < 1000 and 0 < sc.audio_top_k < 1000


def test_length_cap_policies():
    import numpy as np

    from paras2s_jax.train.grpo_stage import apply_length_cap

    rewards = np.array([4.0, 5.0], np.float32)
    finished = np.array([True, False])
    masks = lambda: {f"{s}_mask": np.ones((2, 3), bool) for s in ("text", "audio")}  # noqa: E731
    b = masks()
    assert apply_length_cap(rewards, finished, b, "penalise", 1.0).tolist() == [4.0, 1.0]
    assert b["text_mask"].all()
    b = masks()
    assert apply_length_cap(rewards, finished, b, "mask", 1.0).tolist() == [4.0, 5.0]
    assert b["audio_mask"][0].all() and not b["audio_mask"][1].any()
    assert apply_length_cap(rewards, finished, masks(), "keep", 1.0).tolist() == [4.0, 5.0]
    with pytest.raises(ValueError, match="config.grpo.truncated"):
        apply_length_cap(rewards, finished, masks(), "drop", 1.0)


def test_first_update_check_refuses_a_float32_reference_off_the_sampler():
    import jax.numpy as jnp
    import numpy as np

    from paras2s_jax.train.grpo_stage import check_first_update, sampler_gap

    mask = np.array([[True, True, False], [False, True, False]])
    batch = {f"{s}_mask": mask for s in ("text", "audio")}
    batch |= {f"sampler_{s}_logprobs": np.array([[-1.0, -2.0, 0.0], [0.0, -0.5, 0.0]],
                                                np.float32) for s in ("text", "audio")}
    ref = {"text": batch["sampler_text_logprobs"] + 1e-6,
           "audio": batch["sampler_audio_logprobs"] + np.array([[0.03, -0.06, 9.0],
                                                                [9.0, 0.0, 9.0]])}
    gaps = sampler_gap(batch, ref)  # unchosen positions do not count
    assert gaps["sampler_gap_text"] == pytest.approx(1e-6, rel=0.05)  # float32 rounding
    assert gaps["sampler_gap_audio"] == pytest.approx(0.03, rel=1e-6)
    check_first_update({"sampler_gap_text": gaps["sampler_gap_text"]}, jnp.float32)
    with pytest.raises(RuntimeError, match=r"sampler_gap_audio = 0\.03 at the first update"):
        check_first_update(gaps, jnp.float32)
    check_first_update(gaps, jnp.bfloat16)  # bf16 rounding: logged, not refused
