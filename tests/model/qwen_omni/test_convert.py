"""launch/convert.py on Qwen2.5-Omni checkpoints: import -> Orbax -> export is byte-exact
per tensor (token2wav and vision included) and keeps config.json and the other files;
`random --family qwen25_omni` writes a checkpoint both loaders read."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

from paras2s_jax.checkpoint.orbax_io import restore_model
from paras2s_jax.model.qwen_omni.model import QwenOmniConfig, load_qwen_omni, tiny
from paras2s_jax.model.qwen_omni.store import (
    export_hf_dir,
    import_hf_dir,
    preset_config,
    write_random_qwen_omni,
)

ROOT = Path(__file__).resolve().parents[3]


def _run(*args: str) -> str:
    result = subprocess.run([sys.executable, "launch/convert.py", *args], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def _tensors(directory: Path) -> dict[str, np.ndarray]:
    index = json.loads((directory / "model.safetensors.index.json").read_text())["weight_map"]
    out: dict[str, np.ndarray] = {}
    for name in sorted(set(index.values())):
        out.update(load_file(str(directory / name)))
    assert set(out) == set(index)
    return out


def test_import_export_round_trip_is_byte_exact(omni_reference, tmp_path):
    hf, orbax, back = tmp_path / "hf", tmp_path / "orbax", tmp_path / "back"
    shutil.copytree(omni_reference.directory, hf)
    (hf / "spk_dict.pt").write_bytes(b"speakers")
    (hf / "tokenizer_config.json").write_text('{"model_max_length": 32768}')
    out = _run("import", "--hf", str(hf), "--out", str(orbax))
    assert "imported Qwen2.5-Omni: 72,464 parameters (float32)" in out
    original = _tensors(hf)
    others = [k for k in original if not k.startswith(("thinker.model.", "thinker.lm_head.",
                                                       "thinker.audio_tower.", "talker."))]
    assert any(k.startswith("token2wav.") for k in others)
    assert f"kept {len(others)} other tensor(s)" in out
    assert restore_model(orbax).config == QwenOmniConfig.from_hf(
        json.loads((hf / "config.json").read_text()))
    out = _run("export", "--checkpoint", str(orbax), "--out", str(back), "--max-shard-gb",
               "0.00003")
    assert f"exported Qwen2.5-Omni: {len(original)} tensors" in out
    exported = _tensors(back)
    assert len(set(json.loads((back / "model.safetensors.index.json").read_text())
                   ["weight_map"].values())) > 1
    assert set(exported) == set(original)
    for key, value in original.items():
        assert exported[key].dtype == value.dtype, key
        assert exported[key].tobytes() == value.tobytes(), key
    for name in ("config.json", "spk_dict.pt", "tokenizer_config.json"):
        assert (back / name).read_bytes() == (hf / name).read_bytes(), name


def test_random_checkpoint_loads_here_and_in_transformers(tmp_path):
    """What `convert.py random --family qwen25_omni --preset tiny --dtype float32` writes."""
    from transformers import Qwen2_5OmniConfig

    weight_map = write_random_qwen_omni(tmp_path, preset_config("tiny", "float32"), seed=1)
    assert len(weight_map) == 95
    model = load_qwen_omni(tmp_path)
    assert model.config == tiny()
    raw = json.loads((tmp_path / "config.json").read_text())
    assert QwenOmniConfig.from_hf(raw) == tiny()
    theirs = Qwen2_5OmniConfig(**{k: v for k, v in raw.items()
                                  if k not in ("architectures", "model_type")})
    text = theirs.thinker_config.text_config
    assert (text.hidden_size, text.num_hidden_layers, theirs.talker_config.vocab_size) == (
        32, 2, 64)
    assert theirs.thinker_config.audio_config.num_mel_bins == 128


def test_bfloat16_checkpoint_stays_bfloat16_through_orbax(tmp_path):
    """Without --param-dtype the parts keep the checkpoint's dtype, so the round trip
    of a bfloat16 checkpoint is byte-exact too."""
    hf, orbax, back = tmp_path / "hf", tmp_path / "orbax", tmp_path / "back"
    write_random_qwen_omni(hf, preset_config("tiny", "bfloat16"), seed=2)
    model, kept = import_hf_dir(hf, orbax)
    assert kept == 0
    assert {str(model.thinker.lm_head.kernel.dtype), str(model.talker.codec_head.kernel.dtype),
            str(model.audio_encoder.proj.kernel.dtype)} == {"bfloat16"}
    export_hf_dir(orbax, back, orbax / "hf_files")
    original, exported = _tensors(hf), _tensors(back)
    assert set(exported) == set(original)
    for key, value in original.items():
        assert str(value.dtype) == "bfloat16", key
        assert exported[key].dtype == value.dtype and exported[key].tobytes() == value.tobytes()
