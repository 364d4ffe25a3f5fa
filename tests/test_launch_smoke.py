"""The smoke command of docs/model.md runs and reports what it claims."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_smoke_script_runs_sharded():
    result = subprocess.run(
        [sys.executable, "launch/smoke.py", "--devices", "8", "--fsdp", "2", "--tensor", "2"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "{'data': 2, 'fsdp': 2, 'tensor': 2} on 8 cpu" in out
    assert "9,766,334,464 parameters" in out
    gap = float(out.split("full forward| =")[1].split()[0])
    assert gap < 1e-5
