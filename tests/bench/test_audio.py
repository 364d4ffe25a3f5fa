"""Bad audio: a clear per-item error, or correct resampling / downmix; the run goes on."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from bench import score
from bench.data.audio import AudioError, load_audio
from bench.data.schema import read_judgements
from tests.bench.conftest import PLANTED_KEY, make_remote_set, remote_argv


def _tone(freq: float, sr: int, seconds: float = 0.5, amp: float = 0.3) -> np.ndarray:
    return amp * np.sin(2 * np.pi * freq * np.arange(int(sr * seconds)) / sr)


def _plant(kind: str, path, seed: int = 0):
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "corrupt":
        path.write_bytes(b"RIFF\x00\x01garbage" + bytes(range(256)) * 4)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "silent":
        sf.write(path, np.zeros(16000), 16000)
    elif kind == "44k":
        sf.write(path, _tone(440 + seed, 44100), 44100)
    elif kind == "stereo":
        x = _tone(330 + seed, 16000)
        sf.write(path, np.stack([x, 0.5 * x], axis=1), 16000)
    elif kind == "short":
        sf.write(path, _tone(440, 16000, seconds=0.02), 16000)
    elif kind in ("truncated", "truncated_flac"):
        # The header promises 4 s; the file was cut after 0.15 s (a killed copy or upload).
        full = path.with_suffix(".full" + path.suffix)
        sf.write(full, _tone(440, 16000, seconds=4.0), 16000)
        data = full.read_bytes()
        path.write_bytes(data[:44 + 4800] if kind == "truncated" else data[: len(data) // 10])
        full.unlink()
    elif kind == "long":
        sf.write(path, _tone(440, 8000, seconds=31.0), 8000)


@pytest.mark.parametrize("kind, message", [
    ("corrupt", "cannot decode audio"), ("empty", "empty (0 bytes)"),
    ("silent", "silent"), ("short", "too short"),
    ("truncated", "header declares 64000 frames (4.00 s), the file holds 2400 (0.15 s)"),
    ("truncated_flac", "header declares 64000 frames"),
    ("long", "31.0 s long, over the 30 s limit"),
])
def test_bad_audio_gives_a_clear_error_naming_the_file(tmp_path, kind, message):
    path = tmp_path / (f"{kind}.flac" if kind.endswith("flac") else f"{kind}.wav")
    _plant(kind, path)
    with pytest.raises(AudioError) as err:
        load_audio(path, max_seconds=30)
    assert str(path) in str(err.value) and message in str(err.value)
    with pytest.raises(AudioError, match="not found"):
        load_audio(tmp_path / "missing.wav")


def test_resampling_keeps_duration_and_pitch(tmp_path):
    _plant("44k", tmp_path / "t.wav")
    x = load_audio(tmp_path / "t.wav")
    assert abs(len(x) - 8000) <= 1  # 0.5 s at 16 kHz
    spectrum = np.abs(np.fft.rfft(x))
    assert abs(np.argmax(spectrum) * 16000 / len(x) - 440) < 3


def test_stereo_is_averaged_to_mono(tmp_path):
    _plant("stereo", tmp_path / "s.wav")
    x = load_audio(tmp_path / "s.wav")
    expected = 0.75 * _tone(330, 16000)
    assert x.ndim == 1 and np.max(np.abs(x - expected)) < 1e-3


def test_run_records_bad_audio_per_item_and_scores_the_rest(tmp_path, fake_server, monkeypatch):
    monkeypatch.setenv("BENCH_TEST_KEY", PLANTED_KEY)
    queries, markers = make_remote_set(tmp_path / "data", fake_server, 4)
    replies = tmp_path / "replies"
    kinds = {"q01a": "corrupt", "q01b": "empty", "q02a": "silent", "q02b": "44k",
             "q03a": "stereo", "q03b": "truncated", "q04a": "long"}
    for i, m in enumerate(markers):
        path = replies / m[:3] / f"{m[3]}.wav"
        _plant(kinds.get(m, "44k" if i % 2 else "stereo"), path, seed=i)
        if kinds.get(m) not in ("corrupt", "empty", "silent", "truncated", "long"):
            fake_server.register_audio(path.read_bytes(), m, f"reply for {m}")
    # A broken *prompt* too: it must fail before the system is even asked.
    _plant("corrupt", tmp_path / "data" / "audio" / "q04b.wav")
    out = tmp_path / "out"
    argv = remote_argv(fake_server, queries, out, tmp_path / "c.sqlite",
                       ["--system", "wavdir", "--system-path", str(replies)])
    assert score.main(argv) == 1
    res = {j.item_id: j for j in read_judgements(out / "judgements.jsonl")}
    assert len(res) == 8
    for item, reason in (("q01:a", "cannot decode"), ("q01:b", "empty"), ("q02:a", "silent"),
                         ("q03:b", "truncated audio"), ("q04:a", "over the 30 s limit")):
        assert res[item].score is None and res[item].error_stage == "reply_audio"
        assert reason in res[item].error and item.replace(":", "/")[:3] in res[item].error
    assert res["q04:b"].error_stage == "input_audio" and "q04b.wav" in res["q04:b"].error
    assert fake_server.counts[("transcriptions", "q04b")] == 0
    for item in ("q02:b", "q03:a"):  # resampled / downmixed: scored
        assert res[item].score == 4, res[item].error
        assert f"reply for {item[:3]}{item[4]}" in res[item].reply_transcript


def test_a_prompt_with_no_recognised_speech_is_refused_before_the_system_is_asked(
        tmp_path, fake_server, monkeypatch):
    monkeypatch.setenv("BENCH_TEST_KEY", PLANTED_KEY)
    queries, _ = make_remote_set(tmp_path / "data", fake_server, 1)
    fake_server.register_audio((tmp_path / "data" / "audio" / "q01a.wav").read_bytes(), "q01a",
                               "")  # ASR hears nothing in this prompt
    out = tmp_path / "out"
    assert score.main(remote_argv(fake_server, queries, out, tmp_path / "c.sqlite")) == 1
    res = {j.item_id: j for j in read_judgements(out / "judgements.jsonl")}
    assert res["q01:a"].score is None and res["q01:a"].error_stage == "input_audio"
    assert "no speech recognised in the prompt" in res["q01:a"].error
    assert fake_server.counts[("audio_chat", "q01a")] == 0  # no reply paid for
    assert res["q01:b"].score == 4
