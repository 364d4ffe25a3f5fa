"""The toy paralinguistic world: speaker, listener, scenarios, rule judge, toy data."""

from paras2s_jax.toyworld.demos import ToyDataConfig, read_queries, write_toy_data
from paras2s_jax.toyworld.judge import Judgement, judge
from paras2s_jax.toyworld.speech import caption, speak, transcribe
from paras2s_jax.toyworld.world import DIMENSIONS, STYLE_PAIRS, Scenario, scenarios, split_texts

__all__ = [
    "DIMENSIONS", "Judgement", "STYLE_PAIRS", "Scenario", "ToyDataConfig", "caption", "judge",
    "read_queries", "scenarios", "speak", "split_texts", "transcribe", "write_toy_data",
]
