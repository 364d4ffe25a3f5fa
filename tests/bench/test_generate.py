"""bench.generate against the local OpenAI-compatible server with scripted answers."""

from __future__ import annotations

import csv
import json
from dataclasses import replace

import numpy as np
import pytest

from bench.backends.cache import Cache
from bench.backends.remote import Endpoint, RetryPolicy
from bench.backends.runtime import Runtime
from bench.data.dedup import deduplicate
from bench.data.dimensions import EXTENSION_FILE, load_dimensions
from bench.data.drafts import normalise, read_drafts
from bench.data.review import ReviewError, export_sheet, import_sheet
from bench.generate import ChatLLM, main, run, seed_drafts
from tests.bench.conftest import PLANTED_KEY
from tests.bench.gen_script import EXPECTED_DROPPED, EXPECTED_KEPT, script

DIMS = ["emotion", "sarcasm", "age", "gender"]


def _llm(server, tmp_path, monkeypatch) -> ChatLLM:
    monkeypatch.setenv("BENCH_TEST_KEY", PLANTED_KEY)
    rt = Runtime(Cache(tmp_path / "cache.sqlite"), tmp_path / "ledger.jsonl",
                 RetryPolicy(3, 0.01))
    return ChatLLM(Endpoint("gpt-4.1", server.base_url, "BENCH_TEST_KEY", 5.0), rt)


def test_generates_filters_deduplicates_and_keeps_reasons(tmp_path, fake_server, monkeypatch):
    script(fake_server)
    out = tmp_path / "gen"
    summary = run(_llm(fake_server, tmp_path, monkeypatch), load_dimensions(), DIMS, out,
                  concurrency=2)
    kept = read_drafts(out / "kept.jsonl")
    dropped = {d.id: d for d in read_drafts(out / "dropped.jsonl")}
    assert {d.id for d in kept} == EXPECTED_KEPT
    assert {k: d.dropped_by.filter for k, d in dropped.items()} == EXPECTED_DROPPED
    # Every drop keeps its reason; the failing filter is the last one that ran.
    assert "neutrality fails" in dropped["emotion-b0-1"].dropped_by.reason
    assert [v.filter for v in dropped["emotion-b0-4"].verdicts] == ["neutrality", "plausibility"]
    assert "same text as emotion-b0-0" in dropped["emotion-b0-2"].dropped_by.reason
    assert all([v.filter for v in d.verdicts] == ["neutrality", "plausibility", "relevance"]
               and all(v.passed and v.reason for v in d.verdicts) for d in kept)
    assert summary["dropped_by"] == {"neutrality": 1, "duplicate": 1, "plausibility": 1,
                                     "relevance": 1}
    assert len(summary["unreadable_items"]) == 1 and "styles" in summary["unreadable_items"][0]
    # Calls: 4 generations; 3 filters per kept item, 1-3 per filtered-out one, none for the
    # duplicate.
    assert len(fake_server.rule_bodies("generate")) == 4
    assert len(fake_server.rule_bodies()) == 4 + 3 * 6 + 1 + 2 + 3
    ledger = [json.loads(x) for x in (tmp_path / "ledger.jsonl").read_text().splitlines()]
    assert len(ledger) == len(fake_server.rule_bodies())
    assert summary["estimated_cost_usd"] > 0
    rows = list(csv.DictReader(open(out / "review.csv")))
    assert {r["id"] for r in rows} == EXPECTED_KEPT and all(r["decision"] == "" for r in rows)
    assert json.loads((out / "dimensions.json").read_text()).keys() == set(DIMS)

    # A second run with the same cache asks the server nothing.
    before = len(fake_server.rule_bodies())
    run(_llm(fake_server, tmp_path, monkeypatch), load_dimensions(), DIMS, tmp_path / "again")
    assert len(fake_server.rule_bodies()) == before
    again = read_drafts(tmp_path / "again" / "candidates.jsonl")
    assert again == read_drafts(out / "candidates.jsonl")


def test_malformed_verdict_is_reasked_then_the_item_is_dropped(tmp_path, fake_server,
                                                               monkeypatch):
    script(fake_server)
    fake_server.script[("neutrality", "any")] = ["malformed", "ok", "malformed", "malformed"]
    out = tmp_path / "gen"
    run(_llm(fake_server, tmp_path, monkeypatch), load_dimensions(), ["sarcasm"], out,
        concurrency=1)
    kept, dropped = read_drafts(out / "kept.jsonl"), read_drafts(out / "dropped.jsonl")
    assert [d.id for d in kept] == ["sarcasm-b0-0"]  # re-asked once, then a valid verdict
    assert [d.id for d in dropped] == ["sarcasm-b0-1"]
    assert "no usable verdict" in dropped[0].dropped_by.reason


def test_extension_dimension_is_data_only(tmp_path, fake_server, monkeypatch):
    script(fake_server)
    specs = load_dimensions(EXTENSION_FILE)
    assert {"speech_rate", "pauses", "accent"} <= set(specs) and not specs["pauses"].paper
    run(_llm(fake_server, tmp_path, monkeypatch), specs, ["pauses"], tmp_path / "gen")
    assert [d.dimension for d in read_drafts(tmp_path / "gen" / "kept.jsonl")] == ["pauses"]
    gen = fake_server.rule_bodies("generate")[0]
    assert "hesitation" in gen and "fluent vs hesitant" in gen


def test_embedding_similarity_drops_near_duplicates():
    drafts = seed_drafts()
    vocab = sorted({w for d in drafts for w in normalise(d.text).split()})

    def bag_of_words(texts):  # stands in for a sentence encoder
        return np.array([[normalise(t).split().count(w) for w in vocab] for t in texts], float)

    unique, dups = deduplicate(drafts, bag_of_words, threshold=0.95)
    assert len(unique) == len(drafts) and not dups
    para = replace(drafts[0], id="para", text="At the grocery store I just bumped into my ex!")
    unique, dups = deduplicate([*drafts, para], bag_of_words, threshold=0.95)
    assert [d.id for d in dups] == ["para"] and len(unique) == len(drafts)
    assert f"with {drafts[0].id}" in dups[0].dropped_by.reason
    assert "embedding similarity" in dups[0].dropped_by.reason
    _, dups = deduplicate([*drafts, para], None)
    assert not dups  # without an encoder only exact (normalised) copies are caught


def test_review_sheet_round_trip_with_edits_and_errors(tmp_path):
    drafts = seed_drafts()
    sheet = export_sheet(drafts, tmp_path / "review.csv")
    rows = list(csv.DictReader(open(sheet)))
    rows[0].update(decision="Accept", reviewer="ana", text="I ran into my ex at the shop.")
    rows[1].update(decision="reject", note="text reveals style")
    with open(sheet, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    accepted, rejected, pending = import_sheet(sheet, drafts)
    assert [d.id for d in accepted] == [drafts[0].id] and [d.id for d in rejected] == [drafts[1].id]
    assert len(pending) == len(drafts) - 2
    assert accepted[0].text == "I ran into my ex at the shop."
    assert accepted[0].verdicts[-1].reason == "accepted by ana (edited text)"
    assert rejected[0].dropped_by.reason == "rejected by reviewer (text reveals style)"

    rows[2]["decision"] = "maybe"
    with open(sheet, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with pytest.raises(ReviewError, match=r"review.csv:4: column 'decision': 'maybe'"):
        import_sheet(sheet, drafts)


def test_cli_review_writes_accepted(tmp_path, capsys):
    from bench.data.drafts import write_drafts

    drafts = seed_drafts(per_dimension=1)
    write_drafts(tmp_path / "kept.jsonl", drafts)
    sheet = export_sheet(drafts, tmp_path / "review.csv")
    rows = list(csv.DictReader(open(sheet)))
    rows[0]["decision"] = "accept"
    with open(sheet, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    assert main(["review", "--out", str(tmp_path), "--sheet", str(sheet)]) == 0
    assert [d.id for d in read_drafts(tmp_path / "accepted.jsonl")] == [drafts[0].id]
    assert "accepted 1, rejected 0, not reviewed 3" in capsys.readouterr().out


def test_progress_is_reused_only_for_the_same_candidate(tmp_path, fake_server, monkeypatch):
    script(fake_server)
    out = tmp_path / "gen"
    run(_llm(fake_server, tmp_path, monkeypatch), load_dimensions(), ["sarcasm"], out)
    progress = out / "progress.jsonl"
    lines = [json.loads(x) for x in progress.read_text().splitlines()]
    lines[0]["text"] = "a stale text from an older prompt"
    lines[0]["verdicts"] = [{"filter": "neutrality", "passed": False, "reason": "stale"}]
    progress.write_text("".join(json.dumps(x) + "\n" for x in lines))
    before = len(fake_server.rule_bodies())
    run(_llm(fake_server, tmp_path, monkeypatch), load_dimensions(), ["sarcasm"], out)
    assert len(fake_server.rule_bodies()) == before  # re-filtered from the cache
    kept = read_drafts(out / "kept.jsonl")
    assert [d.text for d in kept] == ["Oh great, another meeting.", "Nice job on the report."]


@pytest.mark.slow
def test_local_hf_encoder_embeds_for_dedup(tmp_path, monkeypatch):
    """--embed-model loads a local encoder folder (a tiny random BERT here), no download."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from transformers import BertConfig, BertModel, BertTokenizer

    from bench.data.dedup import hf_embedder

    words = sorted({w for d in seed_drafts() for w in normalise(d.text).split()})
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    model_dir = tmp_path / "enc"
    BertTokenizer(str(vocab)).save_pretrained(model_dir)
    BertModel(BertConfig(vocab_size=5 + len(words), hidden_size=32, num_hidden_layers=1,
                         num_attention_heads=2, intermediate_size=64)).save_pretrained(model_dir)
    embed = hf_embedder(str(model_dir))
    vecs = embed(["I just bumped into my ex.", "I just bumped into my ex."])
    assert vecs.shape == (2, 32) and np.allclose(vecs[0], vecs[1], atol=1e-5)
    drafts = seed_drafts()
    unique, dups = deduplicate([*drafts, replace(drafts[0], id="copy")], embed, 0.999)
    assert [d.id for d in dups] == ["copy"]
