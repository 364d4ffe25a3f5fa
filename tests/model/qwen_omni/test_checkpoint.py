"""Qwen2.5-Omni checkpoint I/O: the published key layout, round trip, and its errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from paras2s_jax.checkpoint.hf_keys import CheckpointKeyError
from paras2s_jax.model.qwen_omni.checkpoint import (
    export, iter_tensors, load_talker, load_thinker, read_config,
)


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
