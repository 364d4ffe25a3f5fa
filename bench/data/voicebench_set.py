"""A local copy of VoiceBench's published data, read in its own layout.

VoiceBench (Chen et al., 2024: general ability of voice assistants) publishes one
dataset repository (`hlt-lab/voicebench`) with one folder per subset and one Parquet
file set per split::

    <root>/<subset>/<split>-00000-of-00001.parquet     e.g. alpacaeval/test-...,
                                                        sd-qa/usa-..., ifeval/test-...

Every row has the spoken prompt `audio` ({"bytes": <wav/flac>, "path": name}) and its
transcript `prompt`; subsets add what their scorer needs: `reference` (sd-qa, the
multiple-choice sets openbookqa / mmsu, bbh), `key`, `instruction_id_list`, `kwargs`
(ifeval), `id` (bbh: which task). A copy made with `huggingface-cli download
hlt-lab/voicebench --repo-type dataset --local-dir <root>` has this layout.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

# subset -> how it is scored (see bench/voicebench.py)
SCORERS = {
    "alpacaeval": "open", "alpacaeval_full": "open", "commoneval": "open", "wildvoice": "open",
    "sd-qa": "qa", "openbookqa": "mcq", "mmsu": "mcq", "ifeval": "ifeval", "bbh": "bbh",
    "advbench": "harm",
}


class VoiceBenchError(ValueError):
    """The local copy is missing or malformed; the message names the file and field."""


@dataclasses.dataclass(frozen=True)
class Item:
    """One VoiceBench prompt."""

    subset: str
    split: str
    index: int  # row within (subset, split)
    prompt: str  # transcript of the spoken prompt
    audio: bytes  # the encoded prompt speech
    fields: dict[str, Any]  # reference / instruction_id_list / kwargs / key / id

    @property
    def id(self) -> str:
        return f"{self.subset}-{self.split}-{self.index:05d}"


def splits(root: str | Path, subset: str) -> list[str]:
    """The splits of `subset` present under `root` (from the Parquet file names)."""
    folder = Path(root) / subset
    return sorted({p.name.split("-")[0] for p in folder.glob("*.parquet")})


def read_subset(root: str | Path, subset: str, split: str | None = None) -> list[Item]:
    """Every item of `subset` (all its splits, or one) in file and row order."""
    import pyarrow.parquet as pq

    if subset not in SCORERS:
        raise VoiceBenchError(f"unknown VoiceBench subset {subset!r}; known: {sorted(SCORERS)}")
    folder = Path(root) / subset
    wanted = [split] if split else splits(root, subset)
    files = [f for s in wanted for f in sorted(folder.glob(f"{s}-*.parquet"))]
    if not files:
        raise VoiceBenchError(f"{folder}: no {split or '*'}-*.parquet files (a local copy of "
                              "hlt-lab/voicebench has <subset>/<split>-NNNNN-of-NNNNN.parquet)")
    items: list[Item] = []
    for path in files:
        table = pq.read_table(path)
        for name in ("audio", "prompt"):
            if name not in table.column_names:
                raise VoiceBenchError(f"{path}: no column {name!r}")
        split_name = path.name.split("-")[0]
        start = sum(1 for i in items if i.split == split_name)
        for row, rec in enumerate(table.to_pylist()):
            audio = rec.pop("audio")
            if not isinstance(audio, dict) or not audio.get("bytes"):
                raise VoiceBenchError(f"{path}, row {row}: 'audio' holds no bytes")
            prompt = rec.pop("prompt")
            if isinstance(rec.get("kwargs"), str):  # some exports keep kwargs as JSON text
                rec["kwargs"] = json.loads(rec["kwargs"])
            items.append(Item(subset, split_name, start + row, prompt, audio["bytes"], rec))
    return items
