"""HF checkpoint import/export, Orbax round trip, sharded import, and file errors."""

from __future__ import annotations

import json
import shutil

import jax
import numpy as np
import pytest
from flax import nnx
from safetensors.torch import load_file

from paras2s_jax.checkpoint import (
    CheckpointFileError,
    CheckpointKeyError,
    SafetensorsError,
    SafetensorsFile,
    export_hf,
    import_hf,
    iter_tensors,
)
from paras2s_jax.checkpoint.orbax_io import restore_model, save_model
from paras2s_jax.checkpoint.random_checkpoint import write_random_checkpoint
from paras2s_jax.model import tiny
from paras2s_jax.sharding import MeshConfig, make_mesh


@pytest.fixture(scope="module")
def random_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("random_kimi")
    write_random_checkpoint(directory, tiny(), num_layer_shards=3, seed=1)
    return directory


def _all_tensors(directory):
    return {k: np.array(v) for k, v in iter_tensors(directory)}


def test_random_checkpoint_has_the_real_layout(random_dir):
    index = json.loads((random_dir / "model.safetensors.index.json").read_text())
    files = sorted(set(index["weight_map"].values()))
    expected = [f"model-{i}-of-3.safetensors" for i in (1, 2, 3)] + ["model-4-of-4.safetensors"]
    assert files == expected
    last = {k for k, v in index["weight_map"].items() if v == "model-4-of-4.safetensors"}
    assert last == {"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight",
                    "mimo_output.weight", "model.mimo_norm.weight"}
    cfg = tiny()
    n_layers = cfg.num_layers + cfg.mimo_layers
    assert len(index["weight_map"]) == 12 * n_layers + 5 + 6 + n_layers  # + inv_freq buffers
    # The safetensors package reads our files (format compatibility), bf16 included.
    torch_tensors = load_file(str(random_dir / "model-1-of-3.safetensors"))
    assert str(next(iter(torch_tensors.values())).dtype) == "torch.bfloat16"


def test_import_orbax_export_round_trip_is_byte_identical(random_dir, tmp_path):
    model = import_hf(random_dir)
    assert model.config.param_dtype == "bfloat16"
    save_model(tmp_path / "orbax", model)
    restored = restore_model(tmp_path / "orbax")
    export_hf(restored, tmp_path / "hf", max_shard_bytes=200_000)
    assert len(list((tmp_path / "hf").glob("*.safetensors"))) > 1
    original, exported = _all_tensors(random_dir), _all_tensors(tmp_path / "hf")
    assert original.keys() == exported.keys()
    for key, value in original.items():
        assert exported[key].dtype == value.dtype and exported[key].shape == value.shape, key
        assert exported[key].tobytes() == value.tobytes(), key
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config == json.loads((random_dir / "config.json").read_text())


def test_restore_in_another_dtype(random_dir, tmp_path):
    save_model(tmp_path / "orbax", import_hf(random_dir))
    model = restore_model(tmp_path / "orbax", param_dtype="float32")
    assert model.lm_head.kernel[...].dtype == np.float32


@pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 (fake) devices")
def test_sharded_import_matches_unsharded(random_dir):
    mesh = make_mesh(MeshConfig(data=2, fsdp=2, tensor=2))
    sharded = import_hf(random_dir, mesh, param_dtype="float32")
    plain = import_hf(random_dir, param_dtype="float32")
    q = sharded.layers[1].self_attn.q_proj.kernel[...]
    assert q.sharding.spec == jax.sharding.PartitionSpec("fsdp", "tensor", None)
    assert q.addressable_shards[0].data.shape == (32, 2, 16)
    ids = np.arange(24, dtype=np.int32).reshape(2, 12)
    forward = nnx.jit(lambda m, t, a: m(t, a))
    a, b = forward(sharded, ids, ids + 1024), forward(plain, ids, ids + 1024)
    np.testing.assert_allclose(a.text_logits, b.text_logits, atol=1e-5)
    np.testing.assert_allclose(a.audio_logits, b.audio_logits, atol=1e-5)


@pytest.fixture
def broken_dir(random_dir, tmp_path):
    target = tmp_path / "broken"
    shutil.copytree(random_dir, target)
    return target


def test_truncated_shard_names_the_file(broken_dir):
    shard = broken_dir / "model-2-of-3.safetensors"
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) - 100])
    with pytest.raises(SafetensorsError, match="model-2-of-3.safetensors: truncated"):
        import_hf(broken_dir)
    shard.write_bytes(b"\x05")
    with pytest.raises(SafetensorsError, match="model-2-of-3.safetensors: file too short"):
        SafetensorsFile(shard)


def test_missing_shard_names_the_file(broken_dir):
    (broken_dir / "model-4-of-4.safetensors").unlink()
    with pytest.raises(CheckpointFileError, match="model-4-of-4.safetensors: shard listed"):
        import_hf(broken_dir)


def test_wrong_config_names_the_key(broken_dir):
    config = json.loads((broken_dir / "config.json").read_text())
    config["intermediate_size"] = 96
    (broken_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointKeyError, match=r"mlp\.\w+_proj\.weight: shape"):
        import_hf(broken_dir)
    config["intermediate_size"] = 128
    config["num_hidden_layers"] = 5
    (broken_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointKeyError, match="missing 12 key.*model.layers.4"):
        import_hf(broken_dir)
    config["num_hidden_layers"] = 4
    config["num_attention_heads"] = 5
    (broken_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="num_heads"):
        import_hf(broken_dir)
