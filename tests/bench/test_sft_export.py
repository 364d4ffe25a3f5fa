"""SFT export: path-only records by default (the stated limitation), trainer-ready with codes."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from bench import synth
from bench.data.audio import file_sha256
from bench.data.drafts import write_drafts
from bench.data.sft_export import LIMITATION, ExportError, export, main
from bench.generate import seed_drafts

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    root = tmp_path_factory.mktemp("sft")
    write_drafts(root / "drafts.jsonl", seed_drafts(per_dimension=1))
    assert synth.main(["render", "--drafts", str(root / "drafts.jsonl"), "--out",
                       str(root / "set"), "--candidates", "1", "--select", "first",
                       "--replies"]) == 0
    return root / "set"


def _shard_records(out):
    summary = json.loads((out / "export.json").read_text())
    return summary, [json.loads(x) for s in summary["shards"]
                     for x in (out / s).read_text().splitlines()]


def test_path_only_export_says_the_trainer_cannot_read_it(rendered, tmp_path, capsys):
    assert main(["--set", str(rendered), "--out", str(tmp_path / "sft"), "--shard-size",
                 "3"]) == 0
    summary, records = _shard_records(tmp_path / "sft")
    assert summary["records"] == 8 and len(summary["shards"]) == 3
    assert summary["tokens"] is False and summary["note"] == LIMITATION
    first = records[0]
    assert set(first) == {"id", "dimension", "style", "prompt_wav", "reply_transcript",
                          "reply_style", "reply_wav"}
    assert first["id"] == "emo-ex:excited"
    assert first["reply_transcript"] == "Wow, how exciting! Tell me everything, what happened?"
    assert all(p.endswith(".wav") for r in records for p in (r["prompt_wav"], r["reply_wav"]))

    from paras2s_jax.model.config import tiny
    from paras2s_jax.train.data import DataError, validate_record

    with pytest.raises(DataError, match="missing field 'prompt_audio'"):
        validate_record(first, tiny(), "sft-00000")


def test_with_codes_and_tokenizer_records_are_trainer_ready(rendered, tmp_path):
    from paras2s_jax.checkpoint.random_checkpoint import write_tokenizer
    from paras2s_jax.model.config import tiny
    from paras2s_jax.train.data import validate_record

    (tmp_path / "tok").mkdir()
    write_tokenizer(tmp_path / "tok", 1024)
    codes = tmp_path / "codes"
    codes.mkdir()
    wavs = sorted(rendered.rglob("audio/*/*.wav")) + sorted(rendered.rglob("replies/*/*/*.wav"))
    for k, wav in enumerate(wavs):  # stand-in for a speech tokenizer: 12 codes per file
        np.save(codes / f"{file_sha256(wav)}.npy", (np.arange(12) * (k + 1)) % 256)
    summary = export(rendered, tmp_path / "sft", codes_dir=str(codes),
                     text_tokenizer=str(tmp_path / "tok"))
    assert summary["tokens"] is True
    _, records = _shard_records(tmp_path / "sft")
    for r in records:
        checked = validate_record(r, tiny(), r["id"])
        assert len(checked["prompt_audio"]) == 12 and checked["reply_text"]

    (codes / f"{file_sha256(wavs[0])}.npy").unlink()
    with pytest.raises(ExportError, match=f"no audio codes for .*{wavs[0].name}"):
        export(rendered, tmp_path / "sft2", codes_dir=str(codes),
               text_tokenizer=str(tmp_path / "tok"))


@pytest.mark.slow  # ~30 s on 2 cores: tokenizer and Whisper compilations
def test_speech_tokenizer_codes_and_features(rendered, tmp_path):
    from paras2s_jax.audio import write_random_speech
    from paras2s_jax.checkpoint.random_checkpoint import write_tokenizer
    from paras2s_jax.model.config import tiny
    from paras2s_jax.speech import Speech
    from paras2s_jax.train.data import read_records

    (tmp_path / "tok").mkdir()
    write_tokenizer(tmp_path / "tok", 1024)
    write_random_speech(tmp_path / "speech", "tiny")
    (tmp_path / "codes").mkdir()
    assert main(["--set", str(rendered), "--out", str(tmp_path / "sft"), "--speech",
                 str(tmp_path / "speech"), "--codes-dir", str(tmp_path / "codes"),
                 "--text-tokenizer", str(tmp_path / "tok"), "--features"]) == 0
    summary, records = _shard_records(tmp_path / "sft")
    assert summary["tokens"] is True
    checked = read_records([tmp_path / "sft" / s for s in summary["shards"]], tiny(),
                           whisper_features=True)  # prompt_features resolve, shapes match
    speech = Speech.load(tmp_path / "speech", detokenizer=False)
    first = records[0]
    assert first["prompt_audio"] == speech.encode(first["prompt_wav"]).codes.tolist()
    assert len(first["reply_audio"]) == speech.encode(first["reply_wav"]).codes.size > 0
    assert len(checked) == 8 and len(list((tmp_path / "codes").glob("*.npy"))) == 16
    with pytest.raises(ExportError, match="--features needs --speech"):
        export(rendered, tmp_path / "sft2", text_tokenizer=str(tmp_path / "tok"), features=True)
