"""The GPU extras of pyproject.toml resolve on the package index, one per CUDA line."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _extras() -> dict[str, list[str]]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]


def test_one_extra_per_cuda_line_with_the_pinned_jax():
    extras = _extras()
    jax_pin = next(d for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "dependencies"] if d.startswith("jax["))
    version = jax_pin.split("==")[1]
    assert extras["cuda12"] == [f"jax[cuda12]=={version}"]
    assert extras["cuda13"] == [f"jax[cuda13]=={version}"]


@pytest.mark.slow
@pytest.mark.parametrize("line", ["cuda12", "cuda13"])
def test_gpu_extra_resolves(line, tmp_path):
    """`pip install --dry-run` of the extra's requirement picks that CUDA line's plugin."""
    report = tmp_path / "report.json"
    subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed",
                    "--quiet", "--report", str(report), *_extras()[line]], check=True,
                   timeout=600)
    names = {item["metadata"]["name"] for item in json.loads(report.read_text())["install"]}
    assert f"jax-{line}-plugin" in names and f"jax-{line}-pjrt" in names
