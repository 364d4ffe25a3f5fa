"""Stage registry: `config.stage` -> the function that runs that stage.

Each stage lives in its own module, owns its loss, step and data, and registers its
entry point with `@register("name")`. Add a stage by adding its module to `_MODULES`;
the shared loop core (`trainer.py`) does not change.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

StageFn = Callable[..., dict]  # (config, **what launch/train.py hands it) -> results

_REGISTRY: dict[str, StageFn] = {}
_MODULES = {  # imported on demand so one stage's dependencies do not burden another
    "sft": "paras2s_jax.train.sft_stage",
    "reward": "paras2s_jax.train.reward_stage",
    "grpo": "paras2s_jax.train.grpo_stage",
}


def register(name: str) -> Callable[[StageFn], StageFn]:
    """Decorator: make `fn(cfg, **extras) -> results` the entry point of stage `name`."""
    def wrap(fn: StageFn) -> StageFn:
        _REGISTRY[name] = fn
        return fn
    return wrap


def get(name: str) -> StageFn:
    """The entry point of stage `name`."""
    if name not in _REGISTRY and name in _MODULES:
        importlib.import_module(_MODULES[name])
    if name not in _REGISTRY:
        known = sorted(set(_MODULES) | set(_REGISTRY))
        raise KeyError(f"config.stage={name!r} is not a registered stage; known: {known}")
    return _REGISTRY[name]
