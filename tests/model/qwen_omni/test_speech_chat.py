"""Qwen2.5-Omni speaking: a tiny random checkpoint imported with launch/convert.py, then
`launch/sample.py --wav` and `reply_in_speech` checked against the sampler and token2wav
called directly with the spk_dict.pt entries."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import soundfile
from flax import nnx

from paras2s_jax.audio.audio_io import resample
from paras2s_jax.audio.mel import padded_log_mel
from paras2s_jax.audio.token2wav import load_token2wav
from paras2s_jax.checkpoint.orbax_io import restore_model
from paras2s_jax.model.qwen_omni import speech_chat as omni
from paras2s_jax.model.qwen_omni.rope import audio_token_count
from paras2s_jax.model.qwen_omni.sampler import sample
from paras2s_jax.policy import qwen_omni_data as data

from .speaking_checkpoint import (
    OMNI,
    SAMPLING_FLAGS,
    SEED,
    SPEAKER,
    SPEAKERS,
    T2W,
    run_launch,
    sampling,
    write_tone,
)

SAMPLES_PER_CODE = T2W.dit.repeats * T2W.bigvgan.hop_size  # 2 mel frames x 6 samples


@pytest.fixture(scope="module")
def model_and_voice(speaking_omni):
    return restore_model(speaking_omni[0]), omni.OmniVoice.load(speaking_omni[0])


def test_sample_writes_the_spoken_reply(speaking_omni, model_and_voice, tmp_path):
    """launch/sample.py --wav speaks what reply_in_speech speaks, at 24 kHz."""
    write_tone(tmp_path / "in.wav")
    out = run_launch("sample.py", "--checkpoint", str(speaking_omni[0]), "--wav",
                     str(tmp_path / "in.wav"), "--speaker", SPEAKER, *SAMPLING_FLAGS,
                     "--seed", str(SEED), "--out", str(tmp_path / "reply.wav"))
    codes = int(out.split("codec ids (")[1].split(")")[0])
    wav, rate = soundfile.read(tmp_path / "reply.wav", dtype="float32")
    assert codes > 0 and rate == 24_000 and wav.shape == (codes * SAMPLES_PER_CODE,)
    assert np.isfinite(wav).all() and np.abs(wav).max() > 0
    [reply] = omni.reply_in_speech(*model_and_voice, tmp_path / "in.wav", sampling(),
                                   seed=SEED, speaker=SPEAKER)
    assert len(reply.codes) == codes
    np.testing.assert_array_equal(wav, reply.wav)


def test_reply_is_the_samplers_with_the_speakers_bos_cut_at_the_codec_stop(model_and_voice,
                                                                           tmp_path):
    model, voice = model_and_voice
    write_tone(tmp_path / "in.wav")
    [reply] = omni.reply_in_speech(model, voice, tmp_path / "in.wav", sampling(), seed=SEED,
                                   speaker=SPEAKER)
    # the sampler called directly, with the BOS id written to spk_dict.pt
    ids, mel = omni.prompt_inputs(OMNI, tmp_path / "in.wav")
    settings = omni.QwenOmniPolicy(OMNI, speaker_bos=SPEAKERS[SPEAKER],
                                   codecs_per_text=omni.CODECS_PER_TEXT).settings(sampling())
    mels, mel_mask = data.stack_mels([mel], OMNI.audio.chunk_frames)
    out = jax.device_get(sample(model, np.asarray([ids]), np.ones((1, len(ids)), bool),
                                jax.random.key(SEED), settings, mels, mel_mask))
    assert bool(out.codec_finished[0]), "the set-up should make the talker stop"
    length = int(out.codec_lengths[0])
    assert int(out.codes[0, length - 1]) in OMNI.talker.talker_eos_token_id
    assert reply.codes == out.codes[0, :length - 1].tolist()
    text_end = int(out.text_lengths[0]) - int(out.text_finished[0])
    assert reply.text_ids == out.text[0, :text_end].tolist()
    assert reply.wav.shape == (len(reply.codes) * SAMPLES_PER_CODE,)
    np.testing.assert_array_equal(reply.wav, voice.speak(reply.codes, SPEAKER, SEED))


def test_voice_is_token2wav_with_the_spk_dict_entry(speaking_omni, model_and_voice):
    """OmniVoice.speak == Token2Wav called directly with the preset written by torch.save."""
    orbax, speakers = speaking_omni
    _, voice = model_and_voice
    assert list(voice.speakers) == list(SPEAKERS) and voice.speaker().name == "Chelsie"
    t2w = load_token2wav(orbax / "hf_files")
    direct = nnx.jit(lambda m, *args: m(*args))
    codes = np.asarray([3, 17, 40, 5, 59, 0, 22], np.int32)
    noise = jax.random.normal(jax.random.key(4), (1, 2 * codes.size, T2W.dit.mel_dim))
    for name in SPEAKERS:
        entry = speakers[name]
        want = np.asarray(direct(t2w, jnp.asarray(codes[None]),
                                 jnp.asarray(entry["ref_mel"][None]),
                                 jnp.asarray(entry["cond"][None]), noise))[0]
        got = voice.speak(codes, name, seed=4)
        assert got.shape == (codes.size * SAMPLES_PER_CODE,)
        err = float(np.abs(got - want).max())
        print(f"{name}: max abs err {err:.2e} (|wav| max {np.abs(want).max():.2e})")
        assert err <= 1e-6
    assert not np.allclose(voice.speak(codes, "Chelsie", 4), voice.speak(codes, "Ethan", 4))
    np.testing.assert_array_equal(voice.speak(codes, seed=4), voice.speak(codes, "Chelsie", 4))


def test_prompt_mel_is_the_16k_log_mel(tmp_path):
    """A 24 kHz prompt is resampled to 16 kHz before the 128-bin log-mel."""
    wav = write_tone(tmp_path / "in.wav", 24_000, seconds=0.5)
    ids, mel = omni.prompt_inputs(OMNI, tmp_path / "in.wav", system_ids=[7, 8])
    clip = resample(wav, 24_000, 16_000)
    frames = -(-clip.size // 160)  # 50 frames
    want, _ = padded_log_mel([clip], 128)
    assert mel.shape == (128, frames)
    np.testing.assert_allclose(mel, np.asarray(want[0, :, :frames]), atol=1e-6)
    assert ids == [7, 8] + data.prompt_ids({}, OMNI, frames)
    assert ids.count(OMNI.thinker.audio_token_index) == audio_token_count(np.asarray([frames]))[0]


def test_system_turn_from_the_checkpoints_tokenizer(tmp_path):
    """The published system prompt as a chat turn, with a tokenizer saved by transformers;
    no tokenizer files: no tokenizer (and no system turn)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from paras2s_jax.speech_checkpoint import text_tokenizer

    assert text_tokenizer(tmp_path) is None
    marks = ["<|im_start|>", "<|im_end|>"]
    words = ["[UNK]", *marks, "system", *sorted(set(omni.SYSTEM_PROMPT.replace(",", " , ")
                                                      .replace(".", " . ").split()))]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]",
                            additional_special_tokens=marks).save_pretrained(tmp_path)
    ids = omni.system_turn_ids(text_tokenizer(tmp_path))
    assert ids[:2] == [1, 3] and ids[-1] == 2 and 0 not in ids  # no unknown word
    assert [words[i] for i in ids[2:-1]] == (omni.SYSTEM_PROMPT.replace(",", " ,")
                                             .replace(".", " .").split())


def test_bad_presets_and_codes_are_named(tmp_path, model_and_voice):
    import torch

    torch.save({"Chelsie": {"bos_token": 110, "ref_mel": torch.zeros(4, 8)}},
               tmp_path / "spk_dict.pt")
    with pytest.raises(ValueError, match="spk_dict.pt: speaker 'Chelsie' has no 'cond'"):
        omni.read_speakers(tmp_path)
    torch.save({"Chelsie": {"bos_token": 110, "cond": torch.zeros(1, 6),
                            "ref_mel": torch.zeros(1, 4, 8)}}, tmp_path / "spk_dict.pt")
    preset = omni.read_speakers(tmp_path)["Chelsie"]  # a leading batch axis is dropped
    assert preset.cond.shape == (6,) and preset.ref_mel.shape == (4, 8) and preset.bos == 110
    _, voice = model_and_voice
    with pytest.raises(ValueError, match=f"codec id {T2W.dit.num_embeds + 1} is outside"):
        voice.speak([3, T2W.dit.num_embeds + 1])
    with pytest.raises(KeyError, match="no speaker 'Nobody'"):
        voice.speak([3], "Nobody")
