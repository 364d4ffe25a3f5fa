"""The TFDS builder and the grain source yield exactly the JSONL manifest's records."""

from __future__ import annotations

import importlib.util
import json

import grain
import numpy as np
import pytest
import tensorflow_datasets as tfds

from bench.data.loaders import ParaS2SSource, item_records, pcm16
from bench.data.tfds_paras2s import ParaS2SBench
from bench.scoring.options import OFFLINE_DIR


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    """The bundled set, with two queries moved to the real split, in a fresh folder."""
    root = tmp_path_factory.mktemp("set")
    lines = []
    for k, line in enumerate((OFFLINE_DIR / "queries.jsonl").read_text().splitlines()):
        q = json.loads(line)
        q["split"] = "real" if k % 2 else "synthetic"
        for s in q["styles"]:
            s["audio"] = str(OFFLINE_DIR / s["audio"])
        lines.append(json.dumps(q))
    (root / "queries.jsonl").write_text("\n".join(lines) + "\n")
    return root / "queries.jsonl"


def _expected(manifest, split):
    return [{**r, "audio": pcm16(r["audio_path"])} for r in item_records(manifest, split)]


def _same(got: list[dict], want: list[dict]) -> None:
    assert len(got) == len(want) > 0
    for g, w in zip(got, want, strict=True):
        assert set(g) == set(w)
        for k, v in w.items():
            if isinstance(v, np.ndarray):
                np.testing.assert_array_equal(g[k], v, err_msg=k)
            else:  # tfds hands text back as bytes
                assert (g[k].decode() if isinstance(g[k], bytes) else g[k]) == v, k


def test_grain_source_yields_the_manifest_records(manifest):
    for split in ("synthetic", "real"):
        src = ParaS2SSource(manifest, split)
        _same([src[i] for i in range(len(src))], _expected(manifest, split))
    everything = ParaS2SSource(manifest, with_audio=False)
    assert [src for src in everything] == item_records(manifest) and len(everything) == 8
    ds = grain.MapDataset.source(ParaS2SSource(manifest, "real"))
    _same(list(ds), _expected(manifest, "real"))


def test_tfds_builder_yields_the_manifest_records_without_tensorflow(manifest, tmp_path):
    assert importlib.util.find_spec("tensorflow") is None  # tfds works without it here
    builder = ParaS2SBench(data_dir=str(tmp_path / "tfds"))
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(manifest.parent)))
    assert set(builder.info.splits) == {"synthetic", "real"}
    for split in ("synthetic", "real"):
        source = builder.as_data_source(split=split)
        _same([source[i] for i in range(len(source))], _expected(manifest, split))
    again = tfds.builder("paras2s_bench", data_dir=str(tmp_path / "tfds"))  # registered name
    assert again.info.splits["real"].num_examples == 4


def test_tfds_builder_names_a_missing_manifest(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "README").write_text("not a set")
    builder = ParaS2SBench(data_dir=str(tmp_path / "tfds"))
    with pytest.raises(FileNotFoundError, match=r"empty/queries.jsonl not found"):
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=str(tmp_path / "empty")))
