"""Qwen2.5-Omni answering speech with speech: prompt wav -> thinker text + talker codes -> wav.

    voice = OmniVoice.load("ckpt/omni")          # hf_files/: token2wav + spk_dict.pt
    replies = reply_in_speech(model, voice, "question.wav", sampling, seed=0)
    replies[0].wav                                # float32 at voice.output_rate (24 kHz)

The prompt wav (any rate; resampled to 16 kHz as `paras2s_jax.speech.as_16k_mono` does,
cut to 30 s as the processor's feature extractor does) becomes the 128-bin log-mel of
`paras2s_jax.audio.mel.padded_log_mel`, read in one user turn laid out as the policy
lays out its prompts (`policy.qwen_omni_data.prompt_ids`), after an optional system turn
(`system_turn_ids`: the published default system prompt, which the talker expects).
The jitted sampler (`QwenOmniPolicy.sample`) gives text ids and codec ids; the codes up
to the first codec stop id go through token2wav with the speaker preset's `cond` and
`ref_mel` from `spk_dict.pt` (the talker's text-BOS id comes from the same entry).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from paras2s_jax.audio.mel import padded_log_mel
from paras2s_jax.audio.token2wav import Token2Wav, load_token2wav
from paras2s_jax.checkpoint.hf_assets import find_assets
from paras2s_jax.checkpoint.torch_pickle import read_torch_file
from paras2s_jax.model.qwen_omni.model import QwenOmni, QwenOmniConfig
from paras2s_jax.model.qwen_omni.speech_reply import SPEAKER_FILE
from paras2s_jax.policy import qwen_omni_data as data
from paras2s_jax.policy.base import PromptBatch
from paras2s_jax.policy.qwen_omni import QwenOmniPolicy
from paras2s_jax.sampling import SamplingConfig
from paras2s_jax.speech import as_16k_mono
from paras2s_jax.speech_chat import SpokenReply

DEFAULT_SPEAKER = "Chelsie"
# The system prompt Qwen2.5-Omni's model card asks for when it speaks.
SYSTEM_PROMPT = ("You are Qwen, a virtual human developed by the Qwen Team, Alibaba Group, "
                 "capable of perceiving auditory and visual inputs, as well as generating text "
                 "and speech.")
# Talker codes allowed per reply text token: speech runs at 50 codes per second and
# about 3-4 text tokens per second, so the codec cap rarely cuts a reply whose text fit.
CODECS_PER_TEXT = 16


@dataclasses.dataclass(frozen=True)
class SpeakerPreset:
    """One voice of `spk_dict.pt`."""

    name: str
    bos: int  # the talker's text-BOS id ("bos_token")
    cond: np.ndarray  # float32[enc_emb_dim] speaker vector ("cond")
    ref_mel: np.ndarray  # float32[T_ref, mel_dim] reference mel ("ref_mel")


def _array(value: Any) -> np.ndarray:
    return np.asarray(value.numpy() if hasattr(value, "numpy") else value)


def read_speakers(directory: str | Path) -> dict[str, SpeakerPreset]:
    """The voices of `<directory>/spk_dict.pt` (read without torch), in file order. A
    leading batch axis of 1 on `cond` / `ref_mel` is dropped."""
    path = Path(directory) / SPEAKER_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no speaker presets (Qwen2.5-Omni's {SPEAKER_FILE})")
    out = {}
    for name, entry in read_torch_file(path).items():
        missing = [f for f in ("bos_token", "cond", "ref_mel")
                   if not isinstance(entry, dict) or f not in entry]
        if missing:
            raise ValueError(f"{path}: speaker {name!r} has no {missing[0]!r}")
        cond = _array(entry["cond"]).astype(np.float32).reshape(-1)
        ref_mel = _array(entry["ref_mel"]).astype(np.float32)
        if ref_mel.ndim == 3 and ref_mel.shape[0] == 1:
            ref_mel = ref_mel[0]
        if ref_mel.ndim != 2:
            raise ValueError(f"{path}: speaker {name!r}: 'ref_mel' has shape {ref_mel.shape}, "
                             "expected [frames, mel bins]")
        out[name] = SpeakerPreset(name, int(_array(entry["bos_token"]).reshape(())), cond,
                                  ref_mel)
    if not out:
        raise ValueError(f"{path}: no speakers")
    return out


@nnx.jit
def _speak(t2w: Token2Wav, codes, ref_mel, cond, noise):
    return t2w(codes, ref_mel, cond, noise)


class OmniVoice:
    """Qwen2.5-Omni's speech output: token2wav and the speaker presets of a checkpoint."""

    def __init__(self, token2wav: Token2Wav, speakers: dict[str, SpeakerPreset]):
        c = token2wav.config.dit
        for s in speakers.values():
            if s.cond.shape != (c.enc_emb_dim,) or s.ref_mel.shape[1] != c.mel_dim:
                raise ValueError(
                    f"speaker {s.name!r}: cond {s.cond.shape} / ref_mel {s.ref_mel.shape} do "
                    f"not fit token2wav (cond [{c.enc_emb_dim}], ref_mel [frames, {c.mel_dim}])")
        self.token2wav, self.speakers = token2wav, speakers

    @classmethod
    def load(cls, directory: str | Path) -> OmniVoice:
        """From an imported Orbax checkpoint (its `hf_files/`) or a HF directory."""
        assets = find_assets(directory)
        if assets is None:
            raise FileNotFoundError(f"{directory}: no hf_files/ (nor config.json) holding "
                                    "Qwen2.5-Omni's token2wav and spk_dict.pt")
        return cls(load_token2wav(assets), read_speakers(assets))

    @property
    def output_rate(self) -> int:
        """Sample rate of `speak`'s wav (24 kHz)."""
        return self.token2wav.config.bigvgan.generator_config().sampling_rate

    def speaker(self, name: str | None = None) -> SpeakerPreset:
        """The named preset; None: "Chelsie" when present, else the first."""
        if name is None:
            name = DEFAULT_SPEAKER if DEFAULT_SPEAKER in self.speakers else next(
                iter(self.speakers))
        if name not in self.speakers:
            raise KeyError(f"no speaker {name!r} in {SPEAKER_FILE}; choose from "
                           f"{sorted(self.speakers)}")
        return self.speakers[name]

    def speak(self, codes: Sequence[int], speaker: str | None = None,
              seed: int = 0) -> np.ndarray:
        """float32[N · repeats · hop] wav of N codec ids (no stop id) in `speaker`'s voice;
        the flow-matching noise is normal(key(seed), [1, N · repeats, mel_dim])."""
        codes = np.asarray(codes, np.int32).reshape(1, -1)
        if codes.size == 0:
            raise ValueError("no codec ids to speak")
        c, voice = self.token2wav.config.dit, self.speaker(speaker)
        if codes.min() < 0 or codes.max() > c.num_embeds:
            bad = codes[(codes < 0) | (codes > c.num_embeds)][0]
            raise ValueError(f"codec id {bad} is outside token2wav's codec table [0, "
                             f"{c.num_embeds}] (dit_config.num_embeds)")
        noise = jax.random.normal(jax.random.key(seed), (1, codes.shape[1] * c.repeats,
                                                         c.mel_dim), jnp.float32)
        wav = _speak(self.token2wav, jnp.asarray(codes), jnp.asarray(voice.ref_mel)[None],
                     jnp.asarray(voice.cond)[None], noise)
        return np.asarray(wav[0], np.float32)


def system_turn_ids(tokenizer: Any, prompt: str = SYSTEM_PROMPT) -> list[int]:
    """Thinker ids of `<|im_start|>system\\n{prompt}<|im_end|>\\n` (a HF tokenizer)."""
    return list(tokenizer.encode(f"<|im_start|>system\n{prompt}<|im_end|>\n",
                                 add_special_tokens=False))


def prompt_inputs(config: QwenOmniConfig, audio: str | Path | np.ndarray,
                  sample_rate: int | None = None,
                  system_ids: Sequence[int] = ()) -> tuple[list[int], np.ndarray]:
    """(thinker ids of the prompt, its clip's log-mel float32[num_mel_bins, frames]) for
    a wav file or an array at `sample_rate`."""
    clip = as_16k_mono(audio, sample_rate)
    mel, mask = padded_log_mel([clip], config.audio.num_mel_bins)
    frames = int(mask[0].sum())
    ids = list(system_ids) + data.prompt_ids({}, config, frames)
    return ids, np.asarray(mel[0, :, :frames], np.float32)


def reply_in_speech(model: QwenOmni, voice: OmniVoice, audio: str | Path | np.ndarray,
                    sampling: SamplingConfig, seed: int = 0, sample_rate: int | None = None,
                    speaker: str | None = None,
                    system_ids: Sequence[int] = ()) -> list[SpokenReply]:
    """`sampling.num_samples` replies to a spoken prompt, each spoken in `speaker`'s voice
    (`omni_policy(model, voice, speaker).settings(sampling)` are the sampler's settings)."""
    ids, mel = prompt_inputs(model.config, audio, sample_rate, system_ids)
    input_ids, mask = data.left_pad([ids], len(ids), model.config.thinker.pad_token_id)
    mel, mel_mask = data.stack_mels([mel], model.config.audio.chunk_frames)
    prompts = PromptBatch([{}], [ids], {"input_ids": input_ids, "attention_mask": mask,
                                        "mel": mel, "mel_mask": mel_mask})
    policy = omni_policy(model, voice, speaker)
    out = policy.sample(model, prompts, jax.random.key(seed), sampling)
    return [SpokenReply(text, codes, voice.speak(codes, speaker, seed) if codes else None)
            for text, codes in policy.replies(out)]


def omni_policy(model: QwenOmni, voice: OmniVoice, speaker: str | None = None
                ) -> QwenOmniPolicy:
    """The policy whose settings `reply_in_speech` samples with: the speaker's text-BOS
    id, `CODECS_PER_TEXT` codes per text token, transformers' top-p and penalty."""
    return QwenOmniPolicy(model.config, speaker_bos=voice.speaker(speaker).bos,
                          codecs_per_text=CODECS_PER_TEXT)
