"""Greedy text + codec generation against transformers' Qwen2_5OmniForConditionalGeneration
.generate (audio prompt, left padding, rows stopping at different steps)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from paras2s_jax.model.qwen_omni.model import load_qwen_omni
from paras2s_jax.model.qwen_omni.speech_reply import (
    OmniSampling,
    greedy_generate,
    speaker_bos_ids,
)
from tests.model.qwen_omni.test_model import clips_prompt

SPEAKER_BOS = 113  # a thinker-vocabulary id standing for the speaker's text BOS
MAX_TEXT, MAX_CODEC = 10, 14


class _NoWav(torch.nn.Module):
    """Stands in for token2wav: the codes are what is compared, not the waveform."""

    dtype = torch.float

    def forward(self, codes, **kwargs):
        return torch.zeros(4)


def stop_at_different_steps(rows: np.ndarray, start: int = 2) -> int:
    """An id whose first occurrence is at a different step (>= start) in each row; a row
    without it runs to the length cap."""
    for token in np.unique(rows):
        firsts = [int(np.flatnonzero(r == token)[0]) if (r == token).any() else len(r)
                  for r in rows]
        if min(firsts) >= start and len(set(firsts)) == len(firsts):
            return int(token)
    raise AssertionError(f"no id stops the rows at different steps in {rows.tolist()}")


def transformers_generate(ref, ids, mask, mel, mel_mask, settings, monkeypatch):
    """(text ids [B, T], codes [B, T']) from transformers' generate, greedy everywhere."""
    model = ref.model
    codes = []
    talker_generate = model.talker.generate
    monkeypatch.setattr(model.talker, "generate",
                        lambda *a, **k: codes.append(talker_generate(*a, **k)) or codes[-1])
    monkeypatch.setitem(model._modules, "token2wav", _NoWav())
    monkeypatch.setattr(model, "speaker_map", {"Chelsie": {
        "bos_token": settings.speaker_bos, "cond": torch.zeros(1, 4),
        "ref_mel": torch.zeros(1, 4, 8)}})
    with torch.no_grad():
        text, _ = model.generate(
            input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask.astype(np.int64)),
            input_features=torch.tensor(mel), feature_attention_mask=torch.tensor(mel_mask),
            speaker="Chelsie", thinker_do_sample=False,
            thinker_max_new_tokens=settings.max_text_tokens,
            thinker_eos_token_id=list(settings.text_stop_ids),
            thinker_pad_token_id=ref.thinker.pad_token_id, talker_do_sample=False,
            talker_max_new_tokens=settings.max_codec_tokens,
            talker_eos_token_id=list(settings.codec_stop_ids),
            talker_repetition_penalty=settings.repetition_penalty)
    return text[:, ids.shape[1]:].numpy(), codes[0][:, ids.shape[1] + 2:].numpy()


@pytest.fixture(scope="module")
def case(omni_reference):
    """The model, an audio prompt, and stop ids found by probing our greedy run so that
    the two rows stop their text and their codes at different steps."""
    omni = load_qwen_omni(omni_reference.directory)
    ids, mask, mel, mel_mask = clips_prompt(omni.config, seed=3)
    settings = OmniSampling(speaker_bos=SPEAKER_BOS, max_text_tokens=MAX_TEXT,
                            max_codec_tokens=MAX_CODEC, text_stop_ids=(-1,),
                            codec_stop_ids=(-1,))
    probe = greedy_generate(omni, ids, mask, mel, mel_mask, settings)
    settings = dataclasses.replace(settings, text_stop_ids=(
        stop_at_different_steps(np.asarray(probe.text)),))
    probe = greedy_generate(omni, ids, mask, mel, mel_mask, settings)
    settings = dataclasses.replace(settings, codec_stop_ids=(
        stop_at_different_steps(np.asarray(probe.codes)),))
    return omni, (ids, mask, mel, mel_mask), settings


def _padded(rows: np.ndarray, lengths: np.ndarray, width: int, fill: int) -> np.ndarray:
    out = np.full((rows.shape[0], width), fill, rows.dtype)
    for r, n in enumerate(lengths):
        out[r, :n] = rows[r, :n]
    return out


STRONG = 4.0  # a repetition penalty large enough to change the tiny model's codes


@pytest.mark.parametrize("penalty", [1.05, STRONG])
def test_greedy_text_and_codes_equal_transformers_generate(omni_reference, case, monkeypatch,
                                                           penalty):
    omni, (ids, mask, mel, mel_mask), settings = case
    settings = dataclasses.replace(settings, repetition_penalty=penalty)
    ours = greedy_generate(omni, ids, mask, mel, mel_mask, settings)
    text, codes = transformers_generate(omni_reference, ids, mask, mel, mel_mask, settings,
                                        monkeypatch)
    t_len, c_len = np.asarray(ours.text_lengths), np.asarray(ours.codec_lengths)
    print(f"text lengths {t_len.tolist()}, codec lengths {c_len.tolist()}, stops "
          f"{settings.text_stop_ids} / {settings.codec_stop_ids}\nours text "
          f"{np.asarray(ours.text).tolist()}\nours codes {np.asarray(ours.codes).tolist()}")
    assert len(set(t_len.tolist())) == 2
    if penalty == settings.repetition_penalty == 1.05:  # the probed stops
        assert len(set(c_len.tolist())) == 2
    np.testing.assert_array_equal(
        _padded(np.asarray(ours.text), t_len, text.shape[1], omni.config.thinker.pad_token_id),
        text)
    pad = omni.config.talker.codec_pad_token_id
    np.testing.assert_array_equal(_padded(np.asarray(ours.codes), c_len, codes.shape[1], pad),
                                  codes)


def test_repetition_penalty_matters(case):
    """The compared setting is not blind to the penalty: turning it off changes codes."""
    omni, (ids, mask, mel, mel_mask), settings = case
    plain = greedy_generate(omni, ids, mask, mel, mel_mask,
                            dataclasses.replace(settings, repetition_penalty=1.0))
    penalised = greedy_generate(omni, ids, mask, mel, mel_mask,
                                dataclasses.replace(settings, repetition_penalty=STRONG))
    assert not np.array_equal(np.asarray(plain.codes), np.asarray(penalised.codes))


def test_speaker_bos_ids_read_spk_dict_without_torch(tmp_path):
    torch.save({"Chelsie": {"bos_token": 151870, "cond": torch.zeros(1, 4),
                            "ref_mel": torch.zeros(1, 4, 8)},
                "Ethan": {"bos_token": torch.tensor(151872), "cond": torch.zeros(1, 4)}},
               tmp_path / "spk_dict.pt")
    assert speaker_bos_ids(tmp_path) == {"Chelsie": 151870, "Ethan": 151872}
    torch.save({"Nobody": {"cond": torch.zeros(1)}}, tmp_path / "spk_dict.pt")
    with pytest.raises(ValueError, match="spk_dict.pt: speaker 'Nobody' has no 'bos_token'"):
        speaker_bos_ids(tmp_path)
