"""Speech-to-speech policies: the interface the training stages use (`SpeechPolicy`) and
the registry that picks a model family's implementation from its config class."""

from __future__ import annotations

from typing import Any

from paras2s_jax.policy.base import PromptBatch, Reply, SpeechPolicy
from paras2s_jax.policy.kimi_audio import KimiAudioPolicy
from paras2s_jax.policy.qwen_omni import QwenOmniPolicy

_POLICIES: dict[type, type] = {}


def register(config_class: type, policy_class: type) -> None:
    """Make `policy_for` build `policy_class(config)` for configs of `config_class`."""
    _POLICIES[config_class] = policy_class


def registered() -> dict[type, type]:
    """{model config class: its policy class} for every registered model family."""
    return dict(_POLICIES)


def policy_for(config: Any) -> SpeechPolicy:
    """The policy of a model with frozen config `config` (registered by config class)."""
    for cls in type(config).__mro__:
        if cls in _POLICIES:
            return _POLICIES[cls](config)
    known = ", ".join(c.__name__ for c in _POLICIES)
    raise TypeError(f"no speech policy is registered for {type(config).__name__} "
                    f"(known: {known}); see paras2s_jax.policy.register")


register(KimiAudioPolicy.config_class, KimiAudioPolicy)
register(QwenOmniPolicy.config_class, QwenOmniPolicy)

__all__ = ["KimiAudioPolicy", "PromptBatch", "QwenOmniPolicy", "Reply", "SpeechPolicy",
           "policy_for", "register", "registered"]
