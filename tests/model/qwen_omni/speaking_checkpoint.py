"""A tiny random Qwen2.5-Omni HF directory that can speak: thinker, talker, token2wav
tensors in the published key layout, `token2wav_config` in config.json, and a
`spk_dict.pt` with two voices (written by torch.save, as published)."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import runpy
import sys
from pathlib import Path

import numpy as np

from paras2s_jax.audio.token2wav import Token2WavConfig, tensor_map
from paras2s_jax.audio.token2wav.checkpoint import PREFIX
from paras2s_jax.audio.token2wav.config import OmniDiTConfig
from paras2s_jax.checkpoint.safetensors_io import write_safetensors
from paras2s_jax.model.qwen_omni.store import preset_config, write_random_qwen_omni

OMNI = preset_config("tiny")
# token2wav reads every talker codec id (the tiny talker's vocabulary is 64)
T2W = Token2WavConfig(dataclasses.replace(OmniDiTConfig.tiny(),
                                          num_embeds=OMNI.talker.vocab_size),
                      Token2WavConfig.tiny().bigvgan)
SPEAKERS = {"Chelsie": 110, "Ethan": 113}  # name -> text-BOS id (tiny thinker ids)
REF_FRAMES = 10  # reference mel frames of each voice (one shape: one compilation)
T2W_FILE = "model-token2wav.safetensors"
# One sampling set-up for the tests of launch/sample.py, reply_in_speech and the bench
# system, so they share their compilations: whole-vocabulary sampling at T = 1 over a
# 0.4 s 16 kHz prompt; with seed 2 and Ethan's voice the talker stops on a codec stop id.
SEED, SPEAKER, MAX_NEW_TOKENS = 2, "Ethan", 5
SAMPLING_FLAGS = ("--max-new-tokens", str(MAX_NEW_TOKENS), "--text-temperature", "1",
                  "--text-top-k", "0", "--audio-temperature", "1", "--audio-top-k", "0")
ROOT = Path(__file__).resolve().parents[3]


def run_launch(script: str, *args: str) -> str:
    """Run `launch/<script> args...` in this process (sharing its compilations); its
    stdout."""
    out, argv = io.StringIO(), sys.argv
    sys.argv = [str(ROOT / "launch" / script), *args]
    try:
        with contextlib.redirect_stdout(out):
            runpy.run_path(sys.argv[0], run_name="__main__")
    finally:
        sys.argv = argv
    return out.getvalue()


def sampling():
    """The `SamplingConfig` of SAMPLING_FLAGS."""
    from paras2s_jax.sampling import SamplingConfig

    return SamplingConfig(max_new_tokens=MAX_NEW_TOKENS, text_temperature=1.0, text_top_k=0,
                          audio_temperature=1.0, audio_top_k=0)


def write_tone(path: Path, rate: int = 16_000, seconds: float = 0.4) -> np.ndarray:
    """A modulated 220 Hz tone written as a float wav; returns its samples."""
    import soundfile

    t = np.arange(int(rate * seconds)) / rate
    wav = (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t)))
    soundfile.write(path, wav.astype(np.float32), rate, subtype="FLOAT")
    return wav.astype(np.float32)


def _jsonable(value):
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value


def token2wav_config_json(config: Token2WavConfig = T2W) -> dict:
    """`token2wav_config` of config.json for `config`."""
    dit = {k: _jsonable(v) for k, v in dataclasses.asdict(config.dit).items()
           if k != "rope_theta"}
    dit["rope_parameters"] = {"rope_type": "default", "rope_theta": config.dit.rope_theta}
    big = {k: _jsonable(v) for k, v in dataclasses.asdict(config.bigvgan).items()}
    return {"dit_config": dit, "bigvgan_config": big}


def random_token2wav_tensors(config: Token2WavConfig, seed: int) -> dict[str, np.ndarray]:
    """Every `token2wav.*` tensor (torch layout) ~ N(0, 0.2²); Snake α, β ~ N(0, 0.1²) and
    the vocoder's conv_post ~ N(0, 0.01²) so the wav stays inside the final clamp."""
    rng = np.random.default_rng(seed)
    out = {}
    for key, entry in tensor_map(config).items():
        std = 0.1 if key.endswith((".alpha", ".beta")) else 0.2
        if "conv_post" in key:
            std = 0.01
        out[PREFIX + key] = (std * rng.standard_normal(entry.shape)).astype(np.float32)
    return out


def write_speakers(path: Path, config: Token2WavConfig = T2W, seed: int = 0) -> dict:
    """spk_dict.pt as published: name -> {"bos_token": int, "cond": float[192-like],
    "ref_mel": float[T, 80-like]} (here the tiny token2wav's widths); returns the numpy
    values."""
    import torch

    rng = np.random.default_rng(seed)
    table = {name: {"bos_token": bos,
                    "cond": rng.standard_normal(config.dit.enc_emb_dim).astype(np.float32),
                    "ref_mel": rng.standard_normal((REF_FRAMES, config.dit.mel_dim))
                    .astype(np.float32)}
             for name, bos in SPEAKERS.items()}
    torch.save({name: {"bos_token": e["bos_token"], "cond": torch.from_numpy(e["cond"]),
                       "ref_mel": torch.from_numpy(e["ref_mel"])}
                for name, e in table.items()}, path)
    return table


def write_speaking_omni(out: Path, seed: int = 0) -> dict:
    """The HF directory at `out`; returns the speaker table written (numpy values)."""
    weight_map = write_random_qwen_omni(out, OMNI, seed)
    tensors = random_token2wav_tensors(T2W, seed + 1)
    write_safetensors(out / T2W_FILE, tensors, metadata={"format": "pt"})
    index_file = out / "model.safetensors.index.json"
    index = json.loads(index_file.read_text())
    index["weight_map"] = {**weight_map, **{k: T2W_FILE for k in tensors}}
    index_file.write_text(json.dumps(index, indent=2))
    config = json.loads((out / "config.json").read_text())
    config["token2wav_config"] = token2wav_config_json()
    (out / "config.json").write_text(json.dumps(config, indent=2))
    return write_speakers(out / "spk_dict.pt", T2W, seed)


def imported_speaking_omni(root: Path, seed: int = 0) -> tuple[Path, dict]:
    """(`launch/convert.py import` of `write_speaking_omni` at root/hf into root/orbax,
    the speaker table)."""
    speakers = write_speaking_omni(root / "hf", seed)
    out = run_launch("convert.py", "import", "--hf", str(root / "hf"), "--out",
                     str(root / "orbax"))
    assert "imported Qwen2.5-Omni" in out, out
    return root / "orbax", speakers
