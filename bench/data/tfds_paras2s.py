"""TFDS builder of a ParaS2SBench set from local files (manual_dir); never downloads.

    import tensorflow_datasets as tfds
    import bench.data.tfds_paras2s  # registers "paras2s_bench"
    builder = tfds.builder("paras2s_bench", data_dir="runs/tfds")
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir="runs/set"))
    source = builder.as_data_source(split="synthetic")   # random access, no TensorFlow

manual_dir is a folder holding queries.jsonl (and the audio it points to), as written
by bench.synth or bench.data.corpora. Splits are the queries' own splits ("synthetic",
"real") that occur in it. Records are written in manifest order (shuffling disabled) as
`bench.data.loaders.item_records` + int16 audio. Stored as array_record, which tfds reads
and writes without TensorFlow installed. Audio is a plain int16 tensor feature because
tfds' Audio feature needs TensorFlow to encode.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from bench.data.loaders import TEXT_FIELDS, item_records, pcm16
from bench.data.schema import read_queries


class ParaS2SBench(tfds.core.GeneratorBasedBuilder):
    """ParaS2SBench items: one record per (query, style) with its prompt audio."""

    name = "paras2s_bench"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Items of a bench queries.jsonl with 16 kHz int16 audio."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Point manual_dir at a folder with queries.jsonl and its audio, made by "
        "`python -m bench.synth render` or `python -m bench.importers`.")

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        # tfds' own look-up goes through importlib_resources, which is not installed here
        # (nor needed): the builder's file is known.
        return epath.Path(__file__)

    def __init__(self, *, file_format: str = "array_record", **kwargs):
        super().__init__(file_format=file_format, **kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        features = {k: tfds.features.Text() for k in TEXT_FIELDS}
        features["audio"] = tfds.features.Tensor(shape=(None,), dtype=np.int16)
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(features),
                                     disable_shuffling=True, supervised_keys=None,
                                     description=self.__doc__)

    def _split_generators(self, dl_manager):
        queries = Path(dl_manager.manual_dir) / "queries.jsonl"
        if not queries.is_file():
            raise FileNotFoundError(f"{queries} not found: manual_dir must hold a bench "
                                    "queries.jsonl")
        splits = sorted({q.split for q in read_queries(queries)})
        return {s: self._generate_examples(queries, s) for s in splits}

    def _generate_examples(self, queries: Path, split: str):
        for rec in item_records(queries, split):
            yield rec["item_id"], {**rec, "audio": pcm16(rec["audio_path"])}
