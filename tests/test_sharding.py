"""Sharding: the mesh from config, logical-axis rules, born-sharded models on 8 devices."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from paras2s_jax.model import KimiAudio, tiny
from paras2s_jax.sharding import (
    MeshConfig,
    MeshError,
    batch_sharding,
    create_sharded,
    logical_specs,
    logical_to_spec,
    make_mesh,
    shard_module,
    state_shardings,
)

needs_8 = pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 (fake) devices")

# Golden logical -> mesh mapping on a (data 2, fsdp 2, tensor 2) mesh for one layer of the
# tiny model. A refactor that changes how parameters are laid out must update this table.
GOLDEN = {
    "embed_tokens.embedding": P("tensor", "fsdp"),
    "layers.0.input_layernorm.weight": P(None),
    "layers.0.self_attn.q_proj.kernel": P("fsdp", "tensor", None),
    "layers.0.self_attn.q_proj.bias": P("tensor", None),
    "layers.0.self_attn.k_proj.kernel": P("fsdp", "tensor", None),
    "layers.0.self_attn.o_proj.kernel": P("tensor", None, "fsdp"),
    "layers.0.mlp.gate_proj.kernel": P("fsdp", "tensor"),
    "layers.0.mlp.down_proj.kernel": P("tensor", "fsdp"),
    "lm_head.kernel": P("fsdp", "tensor"),
    "mimo_output.kernel": P("fsdp", "tensor"),
    "vq_adaptor.fc1.kernel": P(None, "fsdp"),
    "vq_adaptor.fc2.kernel": P("fsdp", "tensor"),
}


def test_mesh_config_resolves_and_rejects():
    assert MeshConfig(data=-1, fsdp=2, tensor=2).resolve(8) == (2, 2, 2)
    assert MeshConfig(data=1, fsdp=-1, tensor=1).resolve(8) == (1, 8, 1)
    with pytest.raises(MeshError, match="data\\*fsdp\\*tensor"):
        MeshConfig(data=2, fsdp=2, tensor=3).resolve(8)
    with pytest.raises(MeshError, match="MeshConfig.fsdp=-1"):
        MeshConfig(data=3, fsdp=-1, tensor=1).resolve(8)
    with pytest.raises(MeshError, match="only one axis"):
        MeshConfig(data=-1, fsdp=-1).resolve(8)
    with pytest.raises(MeshError, match="MeshConfig.tensor"):
        MeshConfig(tensor=0).resolve(8)


def test_indivisible_axes_are_replicated():
    mesh = make_mesh(MeshConfig(data=1, fsdp=1, tensor=jax.device_count()))
    rules = (("kv_heads", "tensor"), ("embed", "fsdp"))
    expected = "tensor" if jax.device_count() == 1 else None
    spec = logical_to_spec(("embed", "kv_heads"), rules, shape=(64, 3), mesh=mesh)
    assert spec == P(None, expected)
    with pytest.raises(KeyError, match="no sharding rule"):
        logical_to_spec(("nonexistent",), rules)


def test_every_parameter_has_logical_axes():
    abstract = nnx.eval_shape(lambda: KimiAudio(tiny(), rngs=nnx.Rngs(0)))
    specs = logical_specs(nnx.state(abstract))
    flat = dict(nnx.to_flat_state(nnx.state(abstract)))
    for (_path, variable), (name, axes) in zip(flat.items(), specs.items(), strict=True):
        assert len(axes) == len(variable.shape), name
        assert all(a is not None for a in axes), f"{name} has an unnamed axis"


@needs_8
def test_golden_sharding_of_parameters():
    mesh = make_mesh(MeshConfig(data=2, fsdp=2, tensor=2))
    abstract = nnx.eval_shape(lambda: KimiAudio(tiny(), rngs=nnx.Rngs(0)))
    shardings = dict(nnx.to_flat_state(state_shardings(nnx.state(abstract), mesh)))
    by_name = {".".join(map(str, k)): v.get_value().spec for k, v in shardings.items()}
    for name, spec in GOLDEN.items():
        assert by_name[name] == spec, name


@needs_8
def test_sharded_forward_equals_unsharded():
    cfg = tiny()
    mesh = make_mesh(MeshConfig(data=2, fsdp=2, tensor=2))
    sharded = create_sharded(lambda: KimiAudio(cfg, rngs=nnx.Rngs(7)), mesh)
    plain = KimiAudio(cfg, rngs=nnx.Rngs(7))

    for path, variable in nnx.to_flat_state(nnx.state(sharded)):
        array = variable[...]
        assert len(array.sharding.device_set) == 8
        if path[-1] in ("kernel", "embedding"):
            shard = array.addressable_shards[0].data
            assert shard.size < array.size, f"{path} is not split"
    embed = sharded.embed_tokens.embedding[...]
    assert embed.addressable_shards[0].data.shape == (cfg.vocab_size // 2, cfg.hidden_size // 2)

    rng = np.random.default_rng(0)
    text = rng.integers(0, cfg.text_vocab_size, size=(4, 10)).astype(np.int32)
    audio = rng.integers(cfg.audio_token_offset, cfg.vocab_size, size=(4, 10)).astype(np.int32)
    mask = np.ones((4, 10), bool)
    mask[1, :3] = False
    forward = nnx.jit(lambda m, t, a, k: m(t, a, attention_mask=k))
    put = lambda x: jax.device_put(x, batch_sharding(mesh, x.ndim))  # noqa: E731
    out_sharded = forward(sharded, put(text), put(audio), put(mask))
    out_plain = forward(plain, text, audio, mask)
    assert len(out_sharded.text_logits.sharding.device_set) == 8
    np.testing.assert_allclose(out_sharded.text_logits, out_plain.text_logits, atol=1e-5)
    np.testing.assert_allclose(out_sharded.audio_logits, out_plain.audio_logits, atol=1e-5)


@needs_8
def test_shard_module_moves_an_existing_model():
    mesh = make_mesh(MeshConfig(data=1, fsdp=4, tensor=2))
    model = KimiAudio(tiny(), rngs=nnx.Rngs(1))
    before = np.asarray(model.lm_head.kernel[...])
    shard_module(model, mesh)
    kernel = model.lm_head.kernel[...]
    assert kernel.sharding.spec == P("fsdp", "tensor")
    np.testing.assert_array_equal(np.asarray(kernel), before)
    assert jnp.all(jnp.isfinite(kernel))
