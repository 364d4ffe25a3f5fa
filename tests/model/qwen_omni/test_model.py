"""QwenOmni as one model: the thinker from real log-mel input against transformers'
thinker, and the whole published layout loaded and written back."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from flax import nnx
from safetensors.numpy import load_file

from paras2s_jax.audio import SAMPLE_RATE, padded_log_mel
from paras2s_jax.model.qwen_omni.model import (
    QwenOmniConfig,
    export_qwen_omni,
    load_qwen_omni,
    qwen25_omni_3b,
    qwen25_omni_7b,
)
from paras2s_jax.model.qwen_omni.rope import audio_token_count, check_audio_spans
from tests.model.qwen_omni.conftest import audio_prompt, left_padded

TOL = 1e-4


def clips_prompt(config: QwenOmniConfig, seconds=(0.6, 1.1), seed: int = 0):
    """Two clips (tone + noise) as the processor's log-mel, and a left-padded batch whose
    row i holds clip i between audio start/end with the right number of placeholders."""
    rng = np.random.default_rng(seed)
    waves = []
    for i, s in enumerate(seconds):
        t = np.arange(int(s * SAMPLE_RATE)) / SAMPLE_RATE
        waves.append((0.3 * np.sin(2 * np.pi * (200 + 150 * i) * t)
                      + 0.05 * rng.standard_normal(t.shape)).astype(np.float32))
    mel, mel_mask = padded_log_mel(waves, config.audio.num_mel_bins)
    counts = audio_token_count(mel_mask.sum(axis=1))
    rows = [audio_prompt(rng, config.thinker, [int(n)], text=2 + 3 * i)
            for i, n in enumerate(counts)]
    ids, mask = left_padded(rows, config.thinker.pad_token_id)
    check_audio_spans(ids, mask, config.thinker.audio_token_index, mel_mask.sum(axis=1))
    return ids, mask, np.asarray(mel), mel_mask


@pytest.fixture(scope="module")
def omni(omni_reference):
    return load_qwen_omni(omni_reference.directory)


def test_config_reads_all_parts(omni_reference, omni):
    raw = json.loads((omni_reference.directory / "config.json").read_text())
    config = QwenOmniConfig.from_hf(raw)
    assert config == omni.config
    assert (config.thinker, config.talker, config.audio) == (
        omni_reference.thinker, omni_reference.talker, omni_reference.audio)
    with pytest.raises(ValueError, match="talker_config"):
        QwenOmniConfig.from_hf({"thinker_config": raw["thinker_config"]})
    for preset in (qwen25_omni_7b(), qwen25_omni_3b()):
        assert preset.audio.output_dim == preset.thinker.hidden_size == \
            preset.talker.embedding_size


def test_thinker_forward_from_mel_matches_transformers(omni_reference, omni):
    ids, mask, mel, mel_mask = clips_prompt(omni.config)
    assert len(set(mask.sum(axis=1))) == 2 and not mask[:, 0].all()  # really left padded
    with torch.no_grad():
        ref = omni_reference.model.thinker(
            input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask.astype(np.int64)),
            input_features=torch.tensor(mel), feature_attention_mask=torch.tensor(mel_mask),
        ).logits.numpy()
    ours = nnx.jit(lambda m, *a: m.thinker_forward(*a).logits)(omni, ids, mask, mel, mel_mask)
    diff = float(np.abs(np.asarray(ours) - ref)[mask].max())
    print(f"thinker_forward from mel vs transformers: max |diff| = {diff:.2e} "
          f"(logits up to {np.abs(ref).max():.1f})")
    assert diff <= TOL


def test_export_is_byte_exact_and_keeps_other_files(omni_reference, omni, tmp_path):
    source = tmp_path / "source"
    shutil.copytree(omni_reference.directory, source)
    (source / "spk_dict.pt").write_bytes(b"speaker table")  # an extra file to carry over
    out = tmp_path / "out"
    weight_map = export_qwen_omni(omni, out, source, max_shard_bytes=30_000)
    original = json.loads((source / "model.safetensors.index.json").read_text())["weight_map"]
    assert set(weight_map) == set(original)
    assert any(k.startswith("token2wav.") for k in weight_map)
    assert len(set(weight_map.values())) > 1
    for name in sorted(set(weight_map.values())):
        for key, value in load_file(str(out / name)).items():
            before = load_file(str(source / original[key]))[key]
            assert value.dtype == before.dtype and value.tobytes() == before.tobytes(), key
    assert (out / "config.json").read_bytes() == (source / "config.json").read_bytes()
    assert (out / "spk_dict.pt").read_bytes() == b"speaker table"


def test_audio_slots_keep_a_placeholder_id_in_the_reply_a_plain_token(omni):
    """A sampled reply may hold the audio placeholder id: with the prompt's slots the clips
    stay at the prompt's placeholders (prompt positions unchanged, the reply's id embedded
    as a token); by id alone they would shift into the reply."""
    ids, mask, mel, mel_mask = clips_prompt(omni.config)
    reply = np.full((ids.shape[0], 2), omni.config.thinker.audio_token_index, np.int32)
    full = np.concatenate([ids, reply], axis=1)
    full_mask = np.concatenate([mask, np.ones_like(reply, bool)], axis=1)
    slots = np.concatenate([ids == omni.config.thinker.audio_token_index,
                            np.zeros_like(reply, bool)], axis=1)
    prompt_only = omni.thinker_forward(ids, mask, mel, mel_mask).logits
    out = omni.thinker_forward(full, full_mask, mel, mel_mask, audio_slots=slots)
    valid = np.asarray(mask)
    np.testing.assert_allclose(np.asarray(out.logits[:, :ids.shape[1]])[valid],
                               np.asarray(prompt_only)[valid], atol=1e-5)
    token = np.asarray(omni.thinker.embed(reply))
    np.testing.assert_allclose(np.asarray(out.embeds[:, ids.shape[1]:]), token, atol=0)
