"""token2wav configs and checkpoint errors (names of fields, files and keys)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from transformers import Qwen2_5OmniToken2WavConfig

from paras2s_jax.audio.token2wav import (
    OmniDiTConfig,
    Token2WavCheckpointError,
    Token2WavConfig,
    Token2WavConfigError,
    load_token2wav,
    read_config,
)
from paras2s_jax.checkpoint.safetensors_io import SafetensorsFile, write_safetensors

from .conftest import TINY

KEY = "token2wav.code2wav_dit_model.transformer_blocks.1.attn.to_k.weight"


def test_config_json_round_trip(hf_omni):
    assert read_config(hf_omni[1]) == TINY


def test_preset_is_transformers_default():
    raw = Qwen2_5OmniToken2WavConfig().to_dict()
    assert Token2WavConfig.from_hf(raw) == Token2WavConfig.omni_7b()
    assert Token2WavConfig.omni_7b().bigvgan.hop_size == 240


@pytest.mark.parametrize("dit, bigvgan, field", [
    ({"enc_channels": [8, 8, 8, 24]}, {}, "enc_channels[-1]"),
    ({"enc_kernel_sizes": [5, 3]}, {}, "enc_kernel_sizes"),
    ({"look_ahead_layers": [7]}, {}, "look_ahead_layers"),
    ({"hidden_size": "wide"}, {}, "dit_config.hidden_size"),
    ({"rope_parameters": {"rope_type": "yarn"}}, {}, "rope_type"),
    ({}, {"resblock_dilation_sizes": [[1, 3], [1, 3]]}, "resblock_dilation_sizes[0]"),
    ({}, {"upsample_initial_channel": 6}, "upsample_initial_channel"),
    ({}, {"mel_dim": 9}, "bigvgan_config.mel_dim"),
])
def test_config_errors_name_the_field(dit, bigvgan, field):
    raw = {"token2wav_config": {
        "dit_config": {**_tiny_dit(), **dit},
        "bigvgan_config": {"mel_dim": 8, "upsample_initial_channel": 16,
                           "resblock_kernel_sizes": [3, 5],
                           "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5]],
                           "upsample_rates": [3, 2], "upsample_kernel_sizes": [7, 4],
                           **bigvgan}}}
    with pytest.raises(Token2WavConfigError, match=rf"token2wav_config.*{_re(field)}"):
        Token2WavConfig.from_hf(raw)


def _re(text: str) -> str:
    return text.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")


def _tiny_dit() -> dict:
    c = OmniDiTConfig.tiny()
    return {"hidden_size": c.hidden_size, "num_hidden_layers": c.num_hidden_layers,
            "num_attention_heads": c.num_attention_heads, "head_dim": c.head_dim,
            "emb_dim": c.emb_dim, "num_embeds": c.num_embeds, "mel_dim": c.mel_dim,
            "block_size": c.block_size, "look_ahead_layers": list(c.look_ahead_layers),
            "look_backward_layers": list(c.look_backward_layers), "enc_emb_dim": c.enc_emb_dim,
            "enc_dim": c.enc_dim, "enc_channels": list(c.enc_channels),
            "enc_kernel_sizes": list(c.enc_kernel_sizes),
            "enc_dilations": list(c.enc_dilations),
            "enc_attention_channels": c.enc_attention_channels,
            "enc_se_channels": c.enc_se_channels}


def _copy(hf_omni, tmp_path):
    target = tmp_path / "ckpt"
    shutil.copytree(hf_omni[1], target)
    index_file = target / "model.safetensors.index.json"
    return target, index_file, json.loads(index_file.read_text())


def test_missing_tensor_named(hf_omni, tmp_path):
    target, index_file, index = _copy(hf_omni, tmp_path)
    del index["weight_map"][KEY]
    index_file.write_text(json.dumps(index))
    with pytest.raises(Token2WavCheckpointError,
                       match=rf"model\.safetensors\.index\.json: missing tensor {_re(KEY)}"):
        load_token2wav(target)


def test_misshapen_tensor_names_file_and_key(hf_omni, tmp_path):
    target, _, index = _copy(hf_omni, tmp_path)
    shard = target / index["weight_map"][KEY]
    handle = SafetensorsFile(shard)
    tensors = {k: np.array(handle.get(k)) for k in handle.keys()}
    tensors[KEY] = tensors[KEY][:-1]
    write_safetensors(shard, tensors)
    with pytest.raises(Token2WavCheckpointError,
                       match=rf"{shard.name}: {_re(KEY)} has shape \(31, 32\)"):
        load_token2wav(target)


def test_other_models_tensors_are_ignored(hf_omni):
    index = json.loads((hf_omni[1] / "model.safetensors.index.json").read_text())
    assert any(k.startswith("thinker.") for k in index["weight_map"])
    load_token2wav(hf_omni[1])  # the thinker/talker tensors do not count as unexpected


def test_published_sizes_map_every_parameter():
    """At the published sizes every tensor of the key map lands on a parameter of the right
    shape and every parameter is covered (abstract model: nothing is allocated)."""
    import jax
    from flax import nnx

    from paras2s_jax.audio.token2wav import Token2Wav, tensor_map
    from paras2s_jax.audio.token2wav.checkpoint import _LAYOUTS

    config = Token2WavConfig.omni_7b()
    model = nnx.eval_shape(lambda: Token2Wav(config))
    params = {path: v.shape for path, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}
    covered = {}
    for entry in tensor_map(config).values():
        ours = jax.eval_shape(_LAYOUTS[entry.kind][0], jax.ShapeDtypeStruct(entry.shape, "f4"))
        covered[entry.path] = ours.shape
    assert covered == params
    assert sum(np.prod(s) for s in params.values()) > 100e6  # DiT 334 M + BigVGAN 115 M
