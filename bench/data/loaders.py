"""Bench manifests as training / eval inputs: flat item records and a grain data source.

A queries.jsonl (bench.synth, bench.data.corpora, the bundled set) holds queries of two
styles each; loaders see one record per (query, style) item, in file order:

    item_id, query_id, dimension, split, text, scenario, style, description, reference,
    reply_style, audio_path (str), audio (int16[T] at 16 kHz, when with_audio)

`ParaS2SSource` is a grain random-access source over those records (audio decoded on
access, so building it is cheap); `bench.data.tfds_paras2s` materialises the same records as
a TFDS data set from local files. Both yield exactly `item_records(...)`; see
tests/bench/test_loaders.py.

    import grain
    ds = grain.MapDataset.source(ParaS2SSource("runs/set/queries.jsonl")).shuffle(seed=0)
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from bench.data.audio import SAMPLE_RATE, load_audio
from bench.data.schema import read_queries

TEXT_FIELDS = ("item_id", "query_id", "dimension", "split", "text", "scenario", "style",
               "description", "reference", "reply_style", "audio_path")


def item_records(queries_file: str | os.PathLike, split: str | None = None) -> list[dict]:
    """One text-only record per (query, style) item; `split` keeps only that split."""
    out = []
    for q in read_queries(queries_file):
        if split is not None and q.split != split:
            continue
        for s in q.styles:
            out.append({"item_id": q.item_id(s), "query_id": q.id, "dimension": q.dimension,
                        "split": q.split, "text": q.text, "scenario": q.scenario,
                        "style": s.name, "description": s.description,
                        "reference": s.reference, "reply_style": s.reply_style,
                        "audio_path": s.audio})
    return out


def pcm16(path: str | os.PathLike) -> np.ndarray:
    """A speech file as int16 samples at 16 kHz mono (what both loaders store)."""
    x = load_audio(path, SAMPLE_RATE)
    return np.round(np.clip(x, -1.0, 1.0) * 32767).astype(np.int16)


class ParaS2SSource:
    """grain RandomAccessDataSource over a queries.jsonl: len() items, item i as a dict."""

    def __init__(self, queries_file: str | os.PathLike, split: str | None = None,
                 with_audio: bool = True):
        self.path = Path(queries_file)
        self.with_audio = with_audio
        self._records = item_records(self.path, split)

    def __len__(self) -> int:
        return len(self._records)

    def __getitem__(self, index: int) -> dict:
        rec = dict(self._records[index])
        if self.with_audio:
            rec["audio"] = pcm16(rec["audio_path"])
        return rec

    def __repr__(self) -> str:
        return f"ParaS2SSource({str(self.path)!r}, {len(self)} items)"
