"""The demo's lengths per mode, its run directories and its refusal to mix modes."""

import argparse
from pathlib import Path

import pytest

from configs import grpo, reward, sft
from launch.demo import _lane_command, check_mode, grpo_run_dir, stage_configs


def test_full_keeps_the_presets_lengths():
    full = stage_configs(Path("/tmp/x"), mode="full")
    for name, preset in (("sft", sft), ("reward", reward), ("grpo", grpo)):
        p = preset.get_config("toy")
        assert full[name].train.total_steps == p.train.total_steps
        assert full[name].optimizer.lr == p.optimizer.lr
        assert full[name].optimizer.decay_steps == p.optimizer.decay_steps
    assert stage_configs(Path("/tmp/x"), fast=False)["grpo"].train.total_steps == 60


def test_quick_shortens_only_what_carries_no_effect():
    quick = stage_configs(Path("/tmp/x"), mode="quick")
    s, r, g = (quick[n] for n in ("sft", "reward", "grpo"))
    assert s.train.total_steps == 600 and not s.toy.judge  # the demo scores SFT itself
    assert r.train.total_steps < 300 and g.train.total_steps < 60
    assert g.optimizer.lr == 2 * grpo.get_config("toy").optimizer.lr
    assert g.grpo.group_size == 8 and r.distill.samples_per_query == 8  # ties at G = 2 and 8
    # the presets of the later stages read what the default demo writes
    assert reward.get_config("toy").init.path.endswith(Path(r.init.path).name)


def test_runs_directories_and_the_second_process():
    configs = stage_configs(Path("/w"), mode="quick")
    assert grpo_run_dir(configs, 0.2, 0) == Path("/w/grpo")
    assert grpo_run_dir(configs, 0.0, 2) == Path("/w/grpo_runs/beta0_seed2")
    args = argparse.Namespace(workdir="/w", seeds=3, full=True, fast=False,
                              model="qwen25_omni")
    cmd = _lane_command(args, 0.0)
    assert cmd[cmd.index("--grpo-beta") + 1] == "0" and "--full" in cmd
    assert cmd[cmd.index("--model") + 1] == "qwen25_omni"  # the second process's family


def test_model_picks_the_family_presets():
    kimi = stage_configs(Path("/w"), mode="quick")
    omni = stage_configs(Path("/w"), mode="quick", model="qwen25_omni")
    for name, preset in (("sft", sft), ("reward", reward), ("grpo", grpo)):
        assert kimi[name].model.family == "kimi_audio"
        assert omni[name].model.family == preset.get_config("toy_omni").model.family \
            == "qwen25_omni"
    assert omni["sft"].train.total_steps == sft.get_config("toy_omni").train.total_steps
    assert omni["reward"].init.path == f"/w/sft/checkpoints/{omni['sft'].train.total_steps}"
    assert omni["grpo"].reward.path == "/w/reward/reward_model"


def test_a_workdir_keeps_its_lengths(tmp_path):
    check_mode(tmp_path, "quick")
    check_mode(tmp_path, "quick")  # resuming is fine
    with pytest.raises(SystemExit, match="rerun with neither --full nor --fast"):
        check_mode(tmp_path, "full")
    with pytest.raises(SystemExit, match="run of --model kimi_audio"):
        check_mode(tmp_path, "quick", "qwen25_omni")


def test_toy_samplers_share_one_program():
    import ml_collections

    from paras2s_jax.sampling import bucket_length, sampling_from_settings

    configs = stage_configs(Path("/w"), mode="quick")
    r, g = configs["reward"], configs["grpo"]
    distill = sampling_from_settings(r.distill.sampling, r.distill.samples_per_query)
    rollout = sampling_from_settings(g.grpo.sampling, g.grpo.group_size)
    # equal configs and rows: the jitted sampler's static arguments and shapes match
    assert distill == rollout and r.distill.chunk_queries == g.grpo.query_batch
    toy_eval = sampling_from_settings(configs["sft"].toy.sampling)
    for s in (distill, toy_eval):  # toy prompts are 12-18 columns: one padded length
        assert {bucket_length(n, s.prompt_bucket) for n in range(12, 19)} == {20}
    plain = ml_collections.ConfigDict(dict(max_new_tokens=8, text_temperature=1.0, text_top_k=0,
                                           audio_temperature=1.0, audio_top_k=0))
    assert sampling_from_settings(plain).prompt_bucket == 16
