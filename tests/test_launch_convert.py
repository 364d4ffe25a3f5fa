"""The convert and sample commands, end to end, as a user runs them."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> str:
    result = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_random_import_export_sample(tmp_path):
    hf, orbax, back = tmp_path / "hf", tmp_path / "orbax", tmp_path / "back"
    assert "89 tensors, 4 files" in _run("launch/convert.py", "random", "--out", str(hf))
    assert "481,152 parameters (bfloat16)" in _run(
        "launch/convert.py", "import", "--hf", str(hf), "--out", str(orbax))
    assert (orbax / "tokenizer" / "tiktoken.model").exists()
    assert "exported 89 tensors" in _run(
        "launch/convert.py", "export", "--checkpoint", str(orbax), "--out", str(back))
    out = _run("launch/sample.py", "--checkpoint", str(orbax), "--text", "Can I buy a beer?",
               "--audio-codes", "1 2 3", "--num-samples", "3", "--max-new-tokens", "12",
               "--audio-temperature", "1.0", "--out", str(tmp_path / "s.jsonl"))
    assert "[2] text:" in out
    records = [json.loads(x) for x in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert [r["sample"] for r in records] == [0, 1, 2]
    assert all(r["steps"] <= 12 and r["text_logprob"] <= 0 for r in records)


def test_random_speech_checkpoints_load(tmp_path):
    from paras2s_jax.speech import Speech

    out = _run("launch/convert.py", "random-speech", "--out", str(tmp_path), "--seed", "1")
    assert "tokenizer checkpoint" in out and "whisper checkpoint" in out
    assert "detokenizer checkpoint" in out and "vocoder checkpoint" in out
    assert Speech.load(tmp_path).detokenizer.sample_rate == 24000
    speech = Speech.load(tmp_path, detokenizer=False)
    assert speech.tokenizer.encoder.config.codebook_size == 256
    assert speech.whisper.config.n_audio_state == 32


@pytest.mark.slow  # two sampling runs, each compiling the tokenizer, model and detokenizer
def test_sample_speaks_a_wav_reply_deterministically(tmp_path):
    import numpy as np
    import soundfile

    hf, orbax, speech = tmp_path / "hf", tmp_path / "orbax", tmp_path / "speech"
    _run("launch/convert.py", "random", "--out", str(hf))
    _run("launch/convert.py", "import", "--hf", str(hf), "--out", str(orbax))
    _run("launch/convert.py", "random-speech", "--out", str(speech))
    t = np.arange(24_000) / 16_000
    soundfile.write(tmp_path / "in.wav", 0.3 * np.sin(2 * np.pi * 180 * t), 16_000)
    wavs = []
    for k in range(2):
        out = _run("launch/sample.py", "--checkpoint", str(orbax), "--speech", str(speech),
                   "--wav", str(tmp_path / "in.wav"), "--max-new-tokens", "24", "--seed", "3",
                   "--out", str(tmp_path / f"reply{k}.wav"))
        assert "in.wav: 19 audio codes" in out  # ceil(24000 / 1280)
        codes = int(out.split("audio codes (")[1].split(")")[0])
        assert codes > 0 and "real-time factor" in out
        wav, rate = soundfile.read(tmp_path / f"reply{k}.wav", dtype="float32")
        assert rate == 24_000 and wav.shape == (codes * 4 * 480,)
        wavs.append(wav)
    np.testing.assert_array_equal(wavs[0], wavs[1])  # the seed fixes sampling and ODE noise
