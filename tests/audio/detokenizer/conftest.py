"""Random detokenizer/vocoder checkpoints in the real layout, and their PyTorch references."""

from __future__ import annotations

import numpy as np
import pytest

from paras2s_jax.audio.detokenizer.random_checkpoint import (
    tiny_dit_yaml,
    tiny_vocoder_json,
    write_random_detokenizer,
)


@pytest.fixture(scope="session")
def detok_dir(tmp_path_factory):
    """A Kimi-layout checkpoint directory with a tiny DiT and a small vocoder."""
    root = tmp_path_factory.mktemp("kimi_detok")
    return write_random_detokenizer(root, dit_yaml=tiny_dit_yaml(),
                                    vocoder_json=tiny_vocoder_json(), seed=3)


class SharedNoise:
    """The same standard-normal draws for the JAX and the PyTorch streams."""

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.draws: list[np.ndarray] = []

    def __call__(self, frames: int) -> np.ndarray:
        self.draws.append(self.rng.standard_normal((frames, 80), dtype=np.float32))
        return self.draws[-1]

    def replay(self):
        queue = list(self.draws)
        return lambda frames: queue.pop(0)
