"""Systems under test and local back ends: pipeline, topline, checkpoint, local Whisper."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from bench import score
from bench.backends.asr import OpenAIASR, WhisperLocalASR
from bench.backends.cache import Cache
from bench.backends.remote import ConfigError, Endpoint
from bench.backends.runtime import Runtime
from bench.backends.systems import (
    CheckpointSystem,
    PipelineSystem,
    ReplyError,
    ToplineSystem,
    WavFolderSystem,
)
from bench.backends.tts import OpenAITTS
from bench.data.audio import load_audio
from bench.data.schema import read_queries
from tests.bench.conftest import PLANTED_KEY, make_remote_set


def test_checkpoint_system_names_what_is_missing(tmp_path, capsys):
    runtime = Runtime(Cache(tmp_path / "c.sqlite"))
    with pytest.raises(ConfigError, match="Orbax checkpoint not found: .*nope"):
        CheckpointSystem(tmp_path / "nope", tmp_path, runtime)
    (tmp_path / "ckpt").mkdir()
    with pytest.raises(ConfigError, match="needs --system-speech DIR"):
        CheckpointSystem(tmp_path / "ckpt", None, runtime)
    # Through the CLI: exit status 2, the reason on stderr, nothing scored.
    out = tmp_path / "out"
    assert score.main(["--system", "checkpoint", "--system-path", str(tmp_path / "ckpt"),
                       "--out", str(out), "--cache", str(tmp_path / "c.sqlite")]) == 2
    assert "--system-speech" in capsys.readouterr().err
    assert not (out / "judgements.jsonl").exists()


def test_wavdir_names_the_missing_file(tmp_path):
    queries, _ = make_remote_set(tmp_path, _NoServer(), 1)
    q = read_queries(queries)[0]
    with pytest.raises(ConfigError, match="reply folder not found"):
        WavFolderSystem(tmp_path / "replies")
    (tmp_path / "replies").mkdir()
    system = WavFolderSystem(tmp_path / "replies")
    with pytest.raises(ReplyError, match=r"no reply file .*replies/q01/a\.wav"):
        system.respond(q, q.styles[0])


class _NoServer:
    def register_audio(self, *args):
        pass


@pytest.fixture
def runtime(tmp_path):
    rt = Runtime(Cache(tmp_path / "cache.sqlite"))
    yield rt
    rt.close()


def _endpoint(server, model):
    return Endpoint(model=model, base_url=server.base_url, key_env="BENCH_TEST_KEY", timeout_s=5)


def test_pipeline_throws_style_away_and_topline_uses_it(tmp_path, fake_server, monkeypatch,
                                                        runtime):
    monkeypatch.setenv("BENCH_TEST_KEY", PLANTED_KEY)
    queries, _ = make_remote_set(tmp_path, fake_server, 1)
    q = read_queries(queries)[0]
    asr = OpenAIASR(_endpoint(fake_server, "whisper-1"), runtime)
    tts = OpenAITTS(_endpoint(fake_server, "gpt-4o-mini-tts"), runtime)
    chat = _endpoint(fake_server, "gpt-4.1")

    out = PipelineSystem(asr, chat, tts, runtime).respond(q, q.styles[0])
    assert "q01a" in out.text and load_audio(out.audio).size > 0
    chats = [b for e, b in fake_server.bodies if e == "chat"]
    speech = [json.loads(b) for e, b in fake_server.bodies if e == "speech"]
    assert len(chats) == 1 and "prompt q01a" in chats[0] and "style a" not in chats[0]
    assert "instructions" not in speech[0]  # no style reaches the voice either

    out = ToplineSystem(chat, tts, runtime).respond(q, q.styles[1])
    chats = [b for e, b in fake_server.bodies if e == "chat"]
    speech = [json.loads(b) for e, b in fake_server.bodies if e == "speech"]
    assert "Spoken style: style b" in chats[-1]  # the true style is given to the text model
    assert speech[-1]["instructions"] == "warm, slow, soft"  # and reaches the TTS
    assert out.text.startswith("Sure, here is my answer")

    # Cached: asking again makes no new request.
    n = sum(fake_server.counts.values())
    PipelineSystem(asr, chat, tts, runtime).respond(q, q.styles[0])
    assert sum(fake_server.counts.values()) == n


def test_whisper_local_from_a_checkpoint_file(tmp_path, runtime):
    torch = pytest.importorskip("torch")
    whisper = pytest.importorskip("whisper")
    from whisper.model import ModelDimensions, Whisper

    with pytest.raises(ConfigError, match="not found.*download"):
        WhisperLocalASR("tiny", runtime)
    # A tiny random model in the real checkpoint layout: exercises the real load/decode path.
    dims = ModelDimensions(n_mels=80, n_audio_ctx=1500, n_audio_state=16, n_audio_head=2,
                           n_audio_layer=1, n_vocab=51865, n_text_ctx=8, n_text_state=16,
                           n_text_head=2, n_text_layer=1)
    torch.manual_seed(0)
    ckpt = tmp_path / "tiny.pt"
    torch.save({"dims": dims.__dict__, "model_state_dict": Whisper(dims).state_dict()}, ckpt)
    wav = tmp_path / "a.wav"
    sf.write(wav, 0.3 * np.sin(2 * np.pi * 300 * np.arange(22050) / 22050), 22050)
    asr = WhisperLocalASR(str(ckpt), runtime)
    text = asr.transcribe(str(wav))
    direct = whisper.load_model(str(ckpt), device="cpu").transcribe(
        load_audio(wav), language="en", fp16=False, temperature=0.0,
        condition_on_previous_text=False)["text"].strip()
    assert text == direct
    assert asr.name == "whisper-local/tiny.pt"
    before = runtime.totals.cached
    assert asr.transcribe(str(wav)) == text and runtime.totals.cached == before + 1
