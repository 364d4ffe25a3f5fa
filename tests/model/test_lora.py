"""LoRA adapters: identity at start, only adapters train, base and key map untouched."""

import jax
import numpy as np
import optax
import pytest
from flax import nnx

from paras2s_jax.checkpoint import key_specs
from paras2s_jax.model import KimiAudio, tiny
from paras2s_jax.model.lora import LoRAConfig, attach_lora


def test_lora_starts_as_identity_and_trains_alone():
    cfg = tiny()
    model = KimiAudio(cfg, rngs=nnx.Rngs(0))
    ids = np.arange(16, dtype=np.int32).reshape(2, 8)
    forward = nnx.jit(lambda m: m(ids, ids + cfg.audio_token_offset).text_logits)
    before = forward(model)
    n = attach_lora(model, LoRAConfig(rank=4, targets=("q_proj", "v_proj")), rngs=nnx.Rngs(1))
    assert n == 2 * (cfg.num_layers + cfg.mimo_layers)
    np.testing.assert_allclose(forward(model), before, atol=1e-6)
    assert len(key_specs(model)) == len(key_specs(KimiAudio(cfg, rngs=nnx.Rngs(0))))

    frozen = nnx.All(nnx.Param, nnx.Not(nnx.LoRAParam))
    base = jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(model, frozen)))
    optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.LoRAParam)

    @nnx.jit
    def step(model, optimizer):
        def loss(m):
            return m(ids, ids + cfg.audio_token_offset).text_logits[:, :, 7].mean()

        value, grads = nnx.value_and_grad(loss, argnums=nnx.DiffState(0, nnx.LoRAParam))(model)
        optimizer.update(model, grads)
        return value

    first = step(model, optimizer)
    for _ in range(5):
        last = step(model, optimizer)
    assert float(last) < float(first)
    after = nnx.to_pure_dict(nnx.state(model, frozen))
    for a, b in zip(jax.tree.leaves(base), jax.tree.leaves(after), strict=True):
        np.testing.assert_array_equal(a, b)


def test_lora_targets_must_match():
    model = KimiAudio(tiny(), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="matched no projection"):
        attach_lora(model, LoRAConfig(targets=("nonexistent",)), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="rank"):
        LoRAConfig(rank=0)
