"""Qwen2.5-Omni checkpoint I/O: the published key layout, round trip, and its errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from paras2s_jax.checkpoint.hf_keys import CheckpointKeyError
from paras2s_jax.model.qwen_omni.checkpoint import (
    export,
    iter_tensors,
    load_talker,
    load_thinker,
    read_config,
)
from paras2s_jax.model.qwen_omni.config import TalkerConfig, ThinkerTextConfig, qwen25_omni_7b


@pytest.fixture(scope="module")
def loaded(omni_reference):
    return load_thinker(omni_reference.directory), load_talker(omni_reference.directory)


def test_export_round_trips_the_published_tensors(omni_reference, loaded, tmp_path):
    source = omni_reference.directory
    weight_map = json.loads((source / "model.safetensors.index.json").read_text())["weight_map"]
    assert len(set(weight_map.values())) > 1  # the reference really is sharded
    ours = dict(iter_tensors(*loaded))
    assert set(ours) == {k for k in weight_map if k.startswith(("thinker.model.",
                                                                 "thinker.lm_head.", "talker."))}
    written = export(tmp_path, *loaded, read_config(source), max_shard_bytes=20_000)
    assert len(set(written.values())) > 1
    for name in sorted(set(written.values())):
        for key, value in load_file(str(tmp_path / name)).items():
            original = load_file(str(source / weight_map[key]))[key]
            np.testing.assert_array_equal(value, original, err_msg=key)
    again = dict(iter_tensors(load_thinker(tmp_path), load_talker(tmp_path)))
    assert set(again) == set(ours)
    for key in ours:
        np.testing.assert_array_equal(again[key], ours[key], err_msg=key)


def _copy_with(source, target, key, change):
    """A copy of the checkpoint where `change(tensors)` edits the shard holding `key`."""
    shutil.copytree(source, target)
    shard = json.loads((target / "model.safetensors.index.json").read_text())["weight_map"][key]
    tensors = load_file(str(target / shard))
    change(tensors)
    save_file(tensors, str(target / shard))
    return target / shard


def test_misshapen_tensor_names_file_and_key(omni_reference, tmp_path):
    key = "thinker.model.layers.1.self_attn.k_proj.weight"
    shard = _copy_with(omni_reference.directory, tmp_path / "ck", key,
                       lambda t: t.__setitem__(key, t[key][:-1]))
    with pytest.raises(CheckpointKeyError, match=f"{shard}.*{key}"):
        load_thinker(tmp_path / "ck")


def test_missing_tensor_names_file_and_key(omni_reference, tmp_path):
    key = "talker.thinker_to_talker_proj.bias"
    shard = _copy_with(omni_reference.directory, tmp_path / "ck", key, lambda t: t.pop(key))
    with pytest.raises(CheckpointKeyError, match=f"{shard}.*{key}"):
        load_talker(tmp_path / "ck")


def _published_7b_style() -> dict:
    """The fields of a Qwen2.5-Omni-7B `config.json` in the older rotary layout
    (`rope_theta` + `rope_scaling`), as the published file writes them."""
    rope = {"rope_theta": 1000000.0,
            "rope_scaling": {"mrope_section": [16, 24, 24], "rope_type": "default",
                             "type": "default"}}
    text = dict(vocab_size=152064, hidden_size=3584, intermediate_size=18944,
                num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4,
                rms_norm_eps=1e-06, tie_word_embeddings=False, **rope)
    thinker = dict(text_config=text, audio_token_index=151646, audio_start_token_id=151647,
                   audio_end_token_id=151648, bos_token_id=151644, eos_token_id=151645,
                   pad_token_id=151643, position_id_per_seconds=25, seconds_per_chunk=2)
    talker = dict(vocab_size=8448, embedding_size=3584, hidden_size=896,
                  intermediate_size=18944, num_hidden_layers=24, num_attention_heads=12,
                  num_key_value_heads=4, head_dim=128, rms_norm_eps=1e-06,
                  tts_codec_start_token_id=8293, tts_codec_end_token_id=8294,
                  tts_codec_pad_token_id=8292, tts_codec_mask_token_id=8296,
                  tts_text_start_token_id=151860, tts_text_end_token_id=151861,
                  tts_text_pad_token_id=151859, **rope)
    return {"thinker_config": thinker, "talker_config": talker}


def test_from_hf_reads_the_published_layout_into_the_7b_preset():
    config = _published_7b_style()
    dtypes = dict(param_dtype="bfloat16", dtype="bfloat16")
    thinker, talker = qwen25_omni_7b()
    assert ThinkerTextConfig.from_hf(config, **dtypes) == thinker
    assert TalkerConfig.from_hf(config, **dtypes) == talker
    assert talker.talker_eos_token_id == (8292, 8294)


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="mrope_section"):
        ThinkerTextConfig(mrope_section=(16, 24, 23))
    with pytest.raises(ValueError, match="codec_pad_token_id"):
        TalkerConfig(codec_pad_token_id=9000)
    with pytest.raises(ValueError, match="num_heads"):
        TalkerConfig(num_heads=10)
    config = _published_7b_style()
    del config["talker_config"]["embedding_size"]
    with pytest.raises(ValueError, match="talker_config.*embedding_size"):
        TalkerConfig.from_hf(config)


def test_tied_thinker_head_reads_the_embedding_table(omni_reference, loaded, tmp_path):
    """With `tie_word_embeddings` and no `thinker.lm_head.weight`, the head is the table."""
    _copy_with(omni_reference.directory, tmp_path / "ck", "thinker.lm_head.weight",
               lambda t: t.pop("thinker.lm_head.weight"))
    index_path = tmp_path / "ck" / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    del index["weight_map"]["thinker.lm_head.weight"]
    index_path.write_text(json.dumps(index))
    with pytest.raises(CheckpointKeyError, match="thinker.lm_head.weight"):
        load_thinker(tmp_path / "ck")
    config = read_config(tmp_path / "ck")
    config["thinker_config"]["text_config"]["tie_word_embeddings"] = True
    (tmp_path / "ck" / "config.json").write_text(json.dumps(config))
    tied = load_thinker(tmp_path / "ck")
    np.testing.assert_array_equal(np.asarray(tied.lm_head.kernel[...]),
                                  np.asarray(loaded[0].model.embed_tokens.embedding[...]).T)
