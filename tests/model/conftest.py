"""Shared fixtures: tiny configs and PyTorch references saved in the real key layout."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from paras2s_jax.model import tiny
from tests.model.kimi_reference import KimiAudioReference, randomize_, reference_config


@pytest.fixture(scope="session")
def kimi_reference_dir(tmp_path_factory):
    """A tiny Kimi-Audio checkpoint directory written from the PyTorch reference."""
    cfg = tiny()
    ref = KimiAudioReference(reference_config(cfg)).eval()
    randomize_(ref, seed=0)
    directory = tmp_path_factory.mktemp("kimi_tiny")
    state = {k: v.contiguous() for k, v in ref.state_dict().items() if "rotary_emb" not in k}
    save_file(state, str(directory / "model.safetensors"))
    (directory / "config.json").write_text(json.dumps(cfg.to_hf_config()))
    return cfg, ref, directory


def padded_batch(rng: np.random.Generator, lengths, total: int, vocab: int, left: bool):
    """ids int64[B, total] and mask bool[B, total] with `lengths` real tokens per row."""
    ids = rng.integers(0, vocab, size=(len(lengths), total))
    mask = np.zeros((len(lengths), total), bool)
    for row, n in enumerate(lengths):
        if left:
            mask[row, total - n :] = True
        else:
            mask[row, :n] = True
    return ids, mask


def positions_from_mask(mask: np.ndarray) -> np.ndarray:
    return np.maximum(np.cumsum(mask, axis=1) - 1, 0)


torch.manual_seed(0)
