"""Every config file and preset loads, builds a valid model/optimizer/mesh config, and
documents every field; command-line overrides reach the config."""

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

from configs.base import base_config
from paras2s_jax.model import KimiAudioConfig
from paras2s_jax.sharding import MeshConfig
from paras2s_jax.train import stages, trainer

ROOT = Path(__file__).resolve().parents[1]
CONFIG_FILES = sorted(p for p in (ROOT / "configs").glob("*.py")
                      if p.name not in ("__init__.py", "base.py"))
CASES = [(p.stem, preset) for p in CONFIG_FILES
         for preset in importlib.import_module(f"configs.{p.stem}").PRESETS]


def test_base_config_loads():
    cfg = base_config()
    assert cfg.stage == "" and cfg.data.global_batch > 0


@pytest.mark.parametrize("name, preset", CASES)
def test_every_preset_builds(name, preset):
    cfg = importlib.import_module(f"configs.{name}").get_config(preset)
    mc = trainer.model_config(cfg.model)
    assert isinstance(mc, trainer.model_family(cfg.model).config_class)
    assert isinstance(mc, KimiAudioConfig) == (cfg.model.family == "kimi_audio")
    trainer.optimizer_config(cfg.optimizer)
    devices = 8
    data, fsdp, tensor = MeshConfig(**cfg.mesh.to_dict()).resolve(devices)
    assert cfg.data.global_batch % (data * fsdp) == 0
    assert cfg.data.global_batch % cfg.optimizer.accum_steps == 0
    assert stages.get(cfg.stage)  # the stage is registered
    assert cfg.train.total_steps > 0


def test_paper_preset_values():
    from configs import sft

    cfg = sft.get_config("kimi_audio_7b")
    assert cfg.optimizer.lr == 1e-5 and cfg.data.global_batch == 64 and cfg.mesh.fsdp == 8
    assert trainer.model_config(cfg.model).num_layers == 28


def test_unknown_preset_is_named():
    from configs import sft

    with pytest.raises(ValueError, match="unknown preset 'nope'"):
        sft.get_config("nope")


@pytest.mark.parametrize("path", [ROOT / "configs" / "base.py"] + CONFIG_FILES,
                         ids=lambda p: p.name)
def test_every_field_is_commented(path):
    lines = path.read_text().splitlines()
    for n, line in enumerate(lines, 1):
        is_group = line.rstrip().endswith("ConfigDict()")  # a group, documented by its fields
        above = lines[n - 2].strip().startswith("#") if n > 1 else False  # comment block above
        if re.match(r"\s+c(\.\w+)+ = ", line) and "#" not in line and not (is_group or above):
            raise AssertionError(f"{path.name}:{n} sets a field without a comment: {line}")


def test_command_line_override_reaches_the_config():
    out = subprocess.run(
        [sys.executable, "launch/train.py", "--config", "configs/sft.py:toy",
         "--config.stage=nope", "--config.optimizer.lr=0.5"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={"PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu", "PATH": "/usr/bin:/bin"})
    assert out.returncode != 0
    assert "config.stage='nope' is not a registered stage" in out.stderr
