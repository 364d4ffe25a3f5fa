"""Random detokenizer/vocoder checkpoints in the real layout, and their PyTorch references."""

from __future__ import annotations

import numpy as np
import pytest

from paras2s_jax.audio.detokenizer.random_checkpoint import (
    tiny_dit_yaml,
    tiny_vocoder_json,
    write_random_detokenizer,
)

# hop 480 (24 kHz, 50 Hz frames) in three stages: compiles in a few seconds
SMALL_VOCODER = tiny_vocoder_json(
    upsample_rates=[8, 6, 10], upsample_kernel_sizes=[16, 12, 20], upsample_initial_channel=64,
    resblock_kernel_sizes=[3, 5], resblock_dilation_sizes=[[1, 3], [1, 2]],
)


@pytest.fixture(scope="session")
def detok_dir(tmp_path_factory):
    """A Kimi-layout checkpoint directory with a tiny DiT and a small vocoder."""
    root = tmp_path_factory.mktemp("kimi_detok")
    return write_random_detokenizer(root, dit_yaml=tiny_dit_yaml(), vocoder_json=SMALL_VOCODER,
                                    seed=3)


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
