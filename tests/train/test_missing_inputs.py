"""A missing stage input is one line naming the path and the command that creates it."""

import subprocess
import sys
from pathlib import Path

import pytest

from configs import grpo as grpo_configs
from configs import reward as reward_configs
from paras2s_jax.toyworld import ToyDataConfig, write_toy_data
from paras2s_jax.train import stages
from paras2s_jax.train.inputs import MissingInput

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("toy")
    write_toy_data(out, ToyDataConfig(renderings=1))
    return out


def test_headline_command_names_the_missing_checkpoint_in_one_line(tmp_path, toy_data):
    missing = tmp_path / "nowhere" / "checkpoints" / "600"
    result = subprocess.run(
        [sys.executable, "launch/train.py", "--config", "configs/grpo.py",
         f"--config.init.path={missing}", f"--config.toy.data_dir={toy_data}",
         f"--config.workdir={tmp_path / 'run'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert lines == [f"error: config.init.path {missing} does not exist; "
                     "create it with: python launch/demo.py"]


def test_toy_presets_read_what_the_demo_writes():
    from launch.demo import stage_configs

    demo = stage_configs(Path("/tmp/paras2s/demo"), fast=False)
    g, r = grpo_configs.get_config("toy"), reward_configs.get_config("toy")
    assert g.init.path == r.init.path == demo["grpo"].init.path
    assert g.reward.path == demo["grpo"].reward.path
    assert g.toy.data_dir == r.toy.data_dir == demo["grpo"].toy.data_dir


@pytest.mark.parametrize("stage, field", [
    ("grpo", "toy.data_dir"), ("grpo", "reward.path"), ("reward", "toy.data_dir"),
    ("reward", "init.path")])
def test_each_missing_input_is_named(tmp_path, toy_data, stage, field):
    cfg = (grpo_configs if stage == "grpo" else reward_configs).get_config("toy")
    cfg.workdir = str(tmp_path / "run")
    cfg.toy.data_dir = str(toy_data)
    if stage == "grpo" or field == "toy.data_dir":
        cfg.init.source = "fresh"  # an input that exists, so the named one is the first missing
    missing = str(tmp_path / "absent")
    group, name = field.split(".")
    setattr(cfg[group], name, missing)
    with pytest.raises(MissingInput, match=f"config.{field}.* {missing} does not exist; "
                                           "create it with: python launch/demo.py"):
        stages.get(stage)(cfg)
