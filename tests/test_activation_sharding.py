"""Activations follow the activation rules: batch-split on the 8-fake-device mesh."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from paras2s_jax.model import KimiAudio, KVCache, tiny
from paras2s_jax.sharding import MeshConfig, batch_sharding, create_sharded, make_mesh, mesh_jit
from paras2s_jax.train.hlo import analyse

needs_8 = pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 (fake) devices")
BATCH = ("data", "fsdp")


def _split_on_batch_only(spec: P) -> bool:
    return spec[0] == BATCH and all(axis is None for axis in spec[1:])


def _inputs(mesh, rows=8, length=16):
    mc = tiny()
    rng = np.random.default_rng(0)
    text = rng.integers(0, mc.text_vocab_size, (rows, length)).astype(np.int32)
    audio = rng.integers(mc.audio_token_offset, mc.vocab_size, (rows, length)).astype(np.int32)
    mask = np.ones((rows, length), bool)
    mask[0, :5] = False
    put = lambda x: jax.device_put(x, batch_sharding(mesh, x.ndim))  # noqa: E731
    return put(text), put(audio), put(mask)


@needs_8
def test_hidden_states_logits_and_cache_are_split_over_the_batch():
    mesh = make_mesh(MeshConfig(data=2, fsdp=4))
    model = create_sharded(lambda: KimiAudio(tiny(), rngs=nnx.Rngs(0)), mesh)
    graphdef, state = nnx.split(model)
    text, audio, mask = _inputs(mesh)

    def forward(state, text, audio, mask):
        m = nnx.merge(graphdef, state)
        hidden = m.hidden_states(text, audio, attention_mask=mask)
        cache = KVCache.init(m.config, text.shape[0], text.shape[1])
        prefill = m(text, audio, attention_mask=mask, cache=cache, last_only=True)
        return hidden.text, m(text, audio, attention_mask=mask).audio_logits, prefill.cache

    compiled = mesh_jit(forward, mesh).lower(state, text, audio, mask).compile()
    hidden, logits, cache = compiled.output_shardings
    for placed in (hidden, logits, cache.keys[0], cache.values[-1], cache.valid):
        assert _split_on_batch_only(placed.spec), placed.spec


@needs_8
def test_batch_constraint_cuts_collective_traffic_of_an_fsdp_step():
    # All 8 devices on fsdp: without activation rules XLA follows the parameters and
    # splits activations on the hidden axis (every device runs every row).
    mesh = make_mesh(MeshConfig(data=1, fsdp=8))
    model = create_sharded(lambda: KimiAudio(tiny(hidden_size=128, num_heads=4),
                                             rngs=nnx.Rngs(0)), mesh)
    graphdef, params = nnx.split(model)
    text, audio, mask = _inputs(mesh, rows=16, length=64)

    def loss(params, text, audio, mask):
        out = nnx.merge(graphdef, params)(text, audio, attention_mask=mask)
        return jnp.mean(out.text_logits ** 2) + jnp.mean(out.audio_logits ** 2)

    grad = jax.grad(loss)
    args = (params, text, audio, mask)
    constrained = analyse(mesh_jit(grad, mesh).lower(*args).compile().as_text())
    free = analyse(jax.jit(grad).lower(*args).compile().as_text())
    assert constrained.total_collective_bytes < 0.5 * free.total_collective_bytes
