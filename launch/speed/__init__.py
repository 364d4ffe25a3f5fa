"""Speed suites: this project against the PyTorch stack, measured side by side.

    python -m launch.speed SUITE [--size minute|bench|device] [--repeats N] [--out FILE]

Every module in `launch/speed/suites/` is a suite (its file name, `_` read as `-`):
it defines `add_arguments(parser)` and `run(args) -> dict` and prints its own table.
Each run records the machine and writes JSON (default `runs/speed/SUITE-TIME.json`).
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType


def registry() -> dict[str, ModuleType]:
    """Suite name -> module, for every module of `launch.speed.suites`."""
    from launch.speed import suites as package

    found = {}
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):
            module = importlib.import_module(f"{package.__name__}.{info.name}")
            found[info.name.replace("_", "-")] = module
    return found
