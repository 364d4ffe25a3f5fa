"""Model families: presets, the tagged Orbax config JSON, abstract models with LoRA, and
the trainer building, saving and restoring either family from `config.model`."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs import sft as sft_config
from paras2s_jax import sharding
from paras2s_jax.checkpoint.orbax_io import (
    read_model_config,
    read_stored_config,
    restore_model,
    save_model,
)
from paras2s_jax.model import KimiAudio
from paras2s_jax.model.families import (
    FAMILIES,
    KIMI_AUDIO,
    QWEN25_OMNI,
    config_from_json,
    config_to_json,
    family_named,
    family_of,
)
from paras2s_jax.model.lora import LoRAConfig, attach_lora
from paras2s_jax.model.qwen_omni.model import QwenOmni
from paras2s_jax.train import trainer


@pytest.mark.parametrize("family", list(FAMILIES.values()), ids=list(FAMILIES))
def test_config_json_round_trip_is_tagged_with_the_family(family):
    config = family.preset("tiny", dtype="float32", param_dtype="float32", remat=True)
    stored = config_to_json(config)
    assert stored["family"] == family.name
    assert config_from_json(stored) == config
    assert family_of(config) is family


def test_an_untagged_stored_config_is_kimi_audio():
    config = KIMI_AUDIO.preset("tiny")
    stored = {k: v for k, v in config_to_json(config).items() if k != "family"}
    assert config_from_json(stored) == config


def test_omni_numerics_reach_every_part_and_overrides_go_per_part():
    config = QWEN25_OMNI.preset("tiny", dtype="bfloat16", remat=True,
                                talker={"num_layers": 1})
    assert config.thinker.remat and config.talker.remat
    assert {config.thinker.dtype, config.talker.dtype, config.audio.dtype} == {"bfloat16"}
    assert config.talker.num_layers == 1 and config.thinker.num_layers == 2
    with pytest.raises(ValueError, match="overrides.*not Qwen2.5-Omni parts"):
        QWEN25_OMNI.preset("tiny", num_layers=1)
    with pytest.raises(ValueError, match="not a qwen25_omni preset"):
        QWEN25_OMNI.preset("kimi_audio_7b")
    with pytest.raises(ValueError, match="config.model.family='gpt'"):
        family_named("gpt")


def test_omni_model_wide_dtypes_are_the_parts_shared_ones():
    config = QWEN25_OMNI.preset("tiny", dtype="bfloat16", param_dtype="float32")
    assert config.compute_dtype == jnp.bfloat16 and config.storage_dtype == jnp.float32
    mixed = dataclasses.replace(config, talker=config.talker.replace(dtype="float32"))
    with pytest.raises(ValueError, match="parts' dtypes differ"):
        _ = mixed.compute_dtype


def test_the_toy_preset_covers_the_toy_world():
    from configs import reward
    from paras2s_jax.toyworld.world import PROSODY_BASE, STYLES, WORDS

    config = QWEN25_OMNI.preset("toy")
    rm = reward.get_config("toy_omni").reward
    t, c = config.thinker, config.talker
    specials = {t.bos_token_id, t.eos_token_id, t.pad_token_id, t.audio_token_index,
                t.audio_start_token_id, t.audio_end_token_id, c.text_start_token_id,
                c.text_end_token_id, c.text_pad_token_id}
    scoring = set(rm.digit_ids) | set(rm.suffix_ids)
    # the toy words, the reward model's digits and suffix, then the specials
    assert len(WORDS) < min(scoring) and max(scoring) < min(specials)
    assert max(specials) < t.vocab_size
    codes = PROSODY_BASE + 4 * len(STYLES)  # every toy speech code
    assert codes <= 256 <= min(c.codec_start_token_id, c.codec_end_token_id,
                               c.codec_pad_token_id, c.codec_mask_token_id) < c.vocab_size


def test_abstract_omni_with_lora_allocates_nothing_and_has_adapters():
    model = QWEN25_OMNI.abstract(QWEN25_OMNI.preset("tiny"), LoRAConfig(rank=2))
    flat = nnx.to_flat_state(nnx.state(model, nnx.LoRAParam))
    assert flat and all(isinstance(v.get_value(), jax.ShapeDtypeStruct) for _, v in flat)
    per_part = {part: sum(1 for path, _ in flat if path[0] == part)
                for part in ("thinker", "talker", "audio_encoder")}
    # an (a, b) pair on q/k/v/o of each of the 2 layers; the encoder has no o_proj
    assert per_part == {"thinker": 2 * 4 * 2, "talker": 2 * 4 * 2, "audio_encoder": 2 * 3 * 2}


@pytest.mark.parametrize("family,model_class", [("kimi_audio", KimiAudio),
                                                ("qwen25_omni", QwenOmni)])
def test_trainer_builds_saves_and_restores_the_configured_family(tmp_path, family,
                                                                 model_class):
    cfg = sft_config.get_config("toy")
    cfg.model.family = family
    mesh = sharding.make_mesh(sharding.MeshConfig(**cfg.mesh.to_dict()), jax.devices()[:2])
    model = trainer.init_model(cfg, mesh)
    assert isinstance(model, model_class)
    assert model.config == trainer.model_config(cfg.model)
    lora = LoRAConfig(rank=2)
    attach_lora(model, lora, rngs=nnx.Rngs(1))
    save_model(tmp_path / "ckpt", model, lora=lora)
    assert read_stored_config(tmp_path / "ckpt")["family"] == family
    assert read_model_config(tmp_path / "ckpt") == model.config
    restored = restore_model(tmp_path / "ckpt")
    assert isinstance(restored, model_class)
    want = nnx.to_flat_state(nnx.state(model, nnx.Param))  # LoRA params included
    got = nnx.to_flat_state(nnx.state(restored, nnx.Param))
    assert any("lora" in map(str, k) for k, _ in got)
    assert [k for k, _ in want] == [k for k, _ in got]
    for (_, a), (_, b) in zip(want, got, strict=True):
        np.testing.assert_array_equal(np.asarray(a[...]), np.asarray(b[...]))


def test_lora_within_keeps_the_other_parts_free_of_adapters():
    lora = LoRAConfig(rank=2, within=("thinker", "talker"))
    flat = nnx.to_flat_state(nnx.state(QWEN25_OMNI.abstract(QWEN25_OMNI.preset("tiny"), lora),
                                       nnx.LoRAParam))
    assert {path[0] for path, _ in flat} == {"thinker", "talker"}
    with pytest.raises(ValueError, match="matched no projection within"):
        QWEN25_OMNI.abstract(QWEN25_OMNI.preset("tiny"), LoRAConfig(within=("vision",)))
