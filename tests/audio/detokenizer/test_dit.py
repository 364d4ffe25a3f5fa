"""The DiT velocity (one call, with a KV-cache prefix) vs the PyTorch reference."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import yaml

from paras2s_jax.audio.detokenizer import DetokenizerCheckpointError, DiTConfigError, load_dit
from paras2s_jax.audio.detokenizer.dit import DiTConfig
from paras2s_jax.audio.detokenizer.flow import append_to_cache, encode_for_cache, euler_schedule
from paras2s_jax.audio.detokenizer.random_checkpoint import (
    random_dit_state,
    tiny_dit_yaml,
    write_random_detokenizer,
)
from paras2s_jax.checkpoint.torch_pickle import save_torch_file

from .kimi_detok_reference import load_reference_dit

PREFIX, CHUNK, CAPACITY = 40, 24, 64  # cached frames, frames in the evaluated chunk


def _velocities(directory, dtype, t_int=483, start=100):
    """(ours, reference) velocity of a chunk that attends to a cached prefix chunk."""
    rng = np.random.default_rng(0)
    prefix_x = rng.standard_normal((PREFIX, 80)).astype(np.float32)
    chunk_x = rng.standard_normal((CHUNK, 80)).astype(np.float32)
    prefix_ids = rng.integers(0, 16385, PREFIX)  # the CFG id 16384 included
    chunk_ids = rng.integers(0, 16384, CHUNK)

    ref, _ = load_reference_dit(directory, getattr(torch, dtype))
    tdt = getattr(torch, dtype)
    incr: dict = {}
    with torch.no_grad():
        pos = torch.arange(start, start + PREFIX)[None]
        ref(torch.from_numpy(prefix_x)[None].to(tdt), pos, torch.tensor([999]),
            torch.from_numpy(prefix_ids)[None], incr)
        for layer in incr.values():  # update_incremental_state
            layer["prev_k"], layer["prev_v"] = layer.pop("cur_k"), layer.pop("cur_v")
        pos = torch.arange(start + PREFIX, start + PREFIX + CHUNK)[None]
        want = ref(torch.from_numpy(chunk_x)[None].to(tdt), pos, torch.tensor([t_int]),
                   torch.from_numpy(chunk_ids)[None], incr)[0].float().numpy()

    from flax import nnx
    jdt = jnp.dtype(dtype)
    model = load_dit(directory, dtype=jdt)
    graphdef, state = nnx.split(model)
    c = model.config
    empty = jnp.zeros((c.depth, CAPACITY, c.num_heads, c.head_dim), jdt)
    no_cache = np.zeros(CAPACITY, bool)
    k, v = encode_for_cache(graphdef, state, jnp.asarray(prefix_x, jdt), prefix_ids,
                            np.arange(start, start + PREFIX), empty, empty,
                            np.concatenate([no_cache, np.ones(PREFIX, bool)]))
    cache_k, n = append_to_cache(empty, 0, k, PREFIX)
    cache_v, _ = append_to_cache(empty, 0, v, PREFIX)
    valid = np.concatenate([np.arange(CAPACITY) < int(n), np.ones(CHUNK, bool)])
    got, _, _ = nnx.jit(lambda m, *args: m(*args))(
        model, jnp.asarray(chunk_x, jdt), chunk_ids,
        np.arange(start + PREFIX, start + PREFIX + CHUNK), jnp.int32(t_int), cache_k, cache_v,
        valid)
    return np.asarray(got, np.float32), want


@pytest.mark.parametrize("changes", [
    {},  # Kimi: RoPE, no absolute positions
    {"position_embedding_type": "sincos"},
    {"position_embedding_type": "learnable", "use_rope": False, "max_seq_len": 512},
])
def test_velocity_matches_reference_fp32(tmp_path, changes):
    write_random_detokenizer(tmp_path, dit_yaml=tiny_dit_yaml(**changes), seed=1)
    got, want = _velocities(tmp_path / "audio_detokenizer", "float32")
    assert np.abs(want).max() > 0.5  # adaLN-Zero is not zero here: a real comparison
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def test_velocity_matches_reference_bf16(tmp_path):
    write_random_detokenizer(tmp_path, seed=1)
    got, want = _velocities(tmp_path / "audio_detokenizer", "bfloat16")
    # both sides round every op to bfloat16 (8 significant bits), in different orders
    scale = np.abs(want).max()
    assert np.abs(got - want).max() <= 0.05 * scale


def test_euler_schedule_is_torchdyn_fixed_step():
    t_int, dt = euler_schedule(30)
    assert len(t_int) == 29  # linspace(0, 1, 30): 29 evaluations
    np.testing.assert_array_equal(t_int, [1000 * i // 29 for i in range(29)])
    assert t_int[-1] == 965
    np.testing.assert_allclose(dt, 1 / 29, rtol=1e-5)
    # bfloat16 rounds dt to 0.0344238..., so 29 steps integrate to 0.9983, not 1
    assert abs(29 * float(jnp.asarray(dt[0], jnp.bfloat16)) - 0.99829) < 1e-4


def test_dit_config_and_checkpoint_errors(tmp_path):
    raw = tiny_dit_yaml()
    raw["model"]["dit"]["ffn_type"] = "conv1d_conv1d"
    with pytest.raises(DiTConfigError, match="ffn_type"):
        DiTConfig.from_dict(raw)
    raw = tiny_dit_yaml(num_heads=5)
    with pytest.raises(DiTConfigError, match="num_heads"):
        DiTConfig.from_dict(raw)

    d = tmp_path / "audio_detokenizer"
    d.mkdir()
    raw = tiny_dit_yaml()
    (d / "config.yaml").write_text(yaml.safe_dump(raw))
    state = random_dit_state(DiTConfig.from_dict(raw))
    state["speech_model.blocks.1.mlp.fc1.weight"] = np.zeros((3, 3), np.float32)
    save_torch_file(d / "model.pt", {"state_dict": state})
    with pytest.raises(DetokenizerCheckpointError,
                       match=r"speech_model\.blocks\.1\.mlp\.fc1\.weight has shape \(3, 3\)"):
        load_dit(d)
    del state["speech_model.blocks.1.mlp.fc1.weight"]
    save_torch_file(d / "model.pt", {"state_dict": state})
    with pytest.raises(DetokenizerCheckpointError, match=r"missing tensor 'blocks\.1\.mlp\.fc1"):
        load_dit(d)
    save_torch_file(d / "model.pt", {"generator": state})
    with pytest.raises(DetokenizerCheckpointError, match="'state_dict'"):
        load_dit(d)
