"""Style TTS: espeak-ng presets differ measurably; N candidates + selection; the manifest."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from bench import synth
from bench.data.audio import load_audio
from bench.data.dimensions import EXTENSION_FILE
from bench.data.drafts import write_drafts
from bench.data.schema import iter_jsonl, read_queries
from bench.data.style_table import format_table, measure_styles, presets_markdown
from bench.generate import seed_drafts
from bench.scoring.options import OFFLINE_DIR
from tests.bench.conftest import PLANTED_KEY

ROOT = Path(__file__).resolve().parents[2]
espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")


def _render(tmp_path, drafts, *extra) -> Path:
    write_drafts(tmp_path / "drafts.jsonl", drafts)
    out = tmp_path / "set"
    assert synth.main(["render", "--drafts", str(tmp_path / "drafts.jsonl"), "--out", str(out),
                       *extra]) == 0
    return out


@espeak
def test_espeak_styles_differ_on_the_analysers_features():
    rows = {(r.dimension, r.style): r for r in measure_styles(EXTENSION_FILE)}
    print("\n" + format_table(list(rows.values())))

    def r(dim, style):
        return rows[(dim, style)]

    # emotion: arousal raises pitch, rate and energy
    for hi, lo in (("excited", "sad"), ("happy", "disappointed")):
        a, b = r("emotion", hi), r("emotion", lo)
        assert a.pitch_hz > b.pitch_hz * 1.4 and a.rate > b.rate * 1.4, (a, b)
        assert a.level_dbfs > b.level_dbfs + 8, (a, b)
    assert r("emotion", "angry").level_dbfs > r("emotion", "calm").level_dbfs + 3
    assert r("emotion", "angry").rate > r("emotion", "calm").rate
    # sarcasm (as prosody only): slower, lower than sincere
    assert r("sarcasm", "sarcastic").rate < r("sarcasm", "sincere").rate * 0.75
    assert r("sarcasm", "sarcastic").pitch_hz < r("sarcasm", "sincere").pitch_hz * 0.75
    # age and gender: register
    assert r("age", "child").pitch_hz > 2 * r("age", "adult").pitch_hz
    assert r("age", "elderly").rate < r("age", "adult").rate * 0.75
    assert r("gender", "female").pitch_hz > 1.6 * r("gender", "male").pitch_hz
    # extension dimensions
    assert r("speech_rate", "hurried").rate > 1.4 * r("speech_rate", "slow").rate
    assert r("pauses", "hesitant").pause_share > r("pauses", "fluent").pause_share + 0.2


def test_preset_table_document_is_current():
    assert (ROOT / "bench" / "STYLE_PRESETS.md").read_text() == presets_markdown()


@espeak
def test_espeak_candidates_auto_then_manual_selection(tmp_path, capsys):
    drafts = seed_drafts(per_dimension=1)
    out = _render(tmp_path, drafts, "--candidates", "3", "--select", "auto")
    manifest = [raw for _, raw in iter_jsonl(out / "manifest.jsonl")]
    assert len(manifest) == 4 * 2 * 3
    for m in manifest:
        info = sf.info(str(out / m["path"]))
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert m["sample_rate"] == 16000 and m["duration_s"] > 0.5 and m["features"]
    chosen = [m for m in manifest if m["selected"]]
    assert len(chosen) == 8 and {m["selected_by"] for m in chosen} == {"auto"}
    for m in chosen:  # the analyser's favourite among its three
        group = [x for x in manifest if (x["query_id"], x["style"]) == (m["query_id"], m["style"])]
        assert m["agreement"] == max(x["agreement"] for x in group)
    excited = next(m for m in chosen if m["style"] == "excited")
    assert excited["expected"] == {"speed": "fast", "volume": "loud", "pitch": "high"}
    assert excited["agreement"] >= 2 / 3
    queries = read_queries(out / "queries.jsonl")
    assert len(queries) == 4 and all(Path(s.audio).is_file() for q in queries for s in q.styles)

    rows = list(csv.DictReader(open(out / "selection.csv")))
    assert len(rows) == 8 and all(len(r["candidates"].split()) == 3 for r in rows)
    rows[0]["choice"] = "2"
    with open(out / "selection.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    assert synth.main(["select", "--out", str(out), "--sheet", str(out / "selection.csv")]) == 0
    manifest = [raw for _, raw in iter_jsonl(out / "manifest.jsonl")]
    picked = [m for m in manifest if m["selected"] and m["query_id"] == rows[0]["query_id"]
              and m["style"] == rows[0]["style"]]
    assert [(m["candidate"], m["selected_by"]) for m in picked] == [(2, "manual")]
    audio = out / "audio" / rows[0]["query_id"] / f"{rows[0]['style']}.wav"
    np.testing.assert_array_equal(load_audio(audio), load_audio(out / picked[0]["path"]))

    rows[1]["choice"] = "7"
    with open(out / "selection.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    capsys.readouterr()
    assert synth.main(["select", "--out", str(out), "--sheet", str(out / "selection.csv")]) == 2
    assert "selection.csv:3: column 'choice': '7'" in capsys.readouterr().err


def test_openai_tts_draws_n_candidates_once_each(tmp_path, fake_server, monkeypatch):
    monkeypatch.setenv("BENCH_TEST_KEY", PLANTED_KEY)
    drafts = seed_drafts(per_dimension=1)[:1]
    argv = ["--backend", "openai", "--candidates", "3", "--select", "first", "--base-url",
            fake_server.base_url, "--key-env", "BENCH_TEST_KEY", "--cache",
            str(tmp_path / "tts.sqlite"), "--backoff", "0.01"]
    out = _render(tmp_path, drafts, *argv)
    speech = [json.loads(b) for e, b in fake_server.bodies if e == "speech"]
    assert len(speech) == 2 * 3
    assert {b["instructions"] for b in speech} == {s.description for s in drafts[0].styles}
    assert {b["voice"] for b in speech} == {"alloy"}  # emotion styles: the default voice
    assert len(read_queries(out / "queries.jsonl")) == 1
    _render(tmp_path, drafts, *argv)  # again: every candidate comes from the cache
    assert len([e for e, _ in fake_server.bodies if e == "speech"]) == 6
    ledger = [json.loads(x) for x in (out / "ledger.jsonl").read_text().splitlines()]
    assert sum(not x["cached"] for x in ledger) == 6 and sum(x["cached"] for x in ledger) == 6


@espeak
def test_pipeline_regenerates_the_bundled_offline_set(tmp_path):
    """`bench.generate seed` + `bench.synth render --backend espeak` == bench/data/offline."""
    from bench.generate import main as generate_main

    assert generate_main(["seed", "--out", str(tmp_path / "seed"), "--per-dimension", "1"]) == 0
    out = tmp_path / "offline"
    assert synth.main(["render", "--drafts", str(tmp_path / "seed" / "accepted.jsonl"),
                       "--out", str(out), "--backend", "espeak", "--candidates", "1",
                       "--format", "flac", "--replies"]) == 0
    assert (out / "queries.jsonl").read_text() == (OFFLINE_DIR / "queries.jsonl").read_text()
    made = sorted(p.relative_to(out) for p in out.rglob("*.flac"))
    bundled = sorted(p.relative_to(OFFLINE_DIR) for p in OFFLINE_DIR.rglob("*.flac"))
    assert made == bundled and len(made) == 24
    for rel in made:
        np.testing.assert_array_equal(load_audio(out / rel), load_audio(OFFLINE_DIR / rel),
                                      err_msg=str(rel))


@espeak
def test_extension_dimension_set_loads_with_its_table(tmp_path):
    d = seed_drafts(per_dimension=1)[0]
    ext = d.__class__(**{**d.__dict__, "id": "pause-1", "dimension": "pauses"})
    out = _render(tmp_path, [ext], "--candidates", "1", "--select", "first",
                  "--dimensions-file", str(EXTENSION_FILE))
    assert json.loads((out / "dimensions.json").read_text()).keys() == {"pauses"}
    assert read_queries(out / "queries.jsonl")[0].dimension == "pauses"


def test_openai_gender_styles_get_their_own_voices(tmp_path, fake_server, monkeypatch):
    monkeypatch.setenv("BENCH_TEST_KEY", PLANTED_KEY)
    gender = [d for d in seed_drafts(per_dimension=1) if d.dimension == "gender"]
    _render(tmp_path, gender, "--backend", "openai", "--candidates", "1", "--select", "first",
            "--base-url", fake_server.base_url, "--key-env", "BENCH_TEST_KEY", "--backoff",
            "0.01")
    speech = [json.loads(b) for e, b in fake_server.bodies if e == "speech"]
    assert {(b["instructions"], b["voice"]) for b in speech} == {("a woman, calm", "coral"),
                                                                  ("a man, calm", "onyx")}
