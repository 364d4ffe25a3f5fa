"""Paralinguistic dimensions as data: what to generate, which style pairs, how to voice them.

The built-in table is `bench/data/dimensions.json`: the paper's four (emotion, sarcasm,
age, gender). `bench/data/dimensions_extension.json` holds ready-made extensions
(speech_rate, pauses, accent); pass it, or your own file, with `--dimensions-file`. A
new dimension is a new JSON entry, never a code change. Each entry holds:

    definition   what the dimension is, told to the LLM that writes queries
    style_pairs  contrastive style names, e.g. [["excited", "sad"], ...]
    style_voice  style name -> default TTS instructions (espeak-ng reads keywords of
                 these, see bench.backends.tts.STYLE_PRESETS)
    guidance     what changes in a good reply, told to generator and filters

A data set that uses dimensions beyond the paper's four carries the table it was made
with as `dimensions.json` next to its `queries.jsonl` (bench.synth writes it), so
bench.data.schema accepts those names for that data set only.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

BUILTIN_FILE = Path(__file__).parent / "dimensions.json"
EXTENSION_FILE = Path(__file__).parent / "dimensions_extension.json"
DATASET_FILE = "dimensions.json"  # name of a data set's own table, next to queries.jsonl


class DimensionError(ValueError):
    """A dimension table entry that is missing or malformed; names the file and field."""


@dataclass(frozen=True)
class DimensionSpec:
    name: str
    definition: str
    style_pairs: tuple[tuple[str, str], ...]
    style_voice: dict[str, str]
    guidance: str = ""
    paper: bool = False  # one of the paper's four dimensions

    def voice(self, style: str) -> str:
        """Default TTS instructions for a style name (the name itself when unknown)."""
        return self.style_voice.get(style, style)


def _spec(name: str, raw: object, where: str) -> DimensionSpec:
    if not isinstance(raw, dict):
        raise DimensionError(f"{where}: dimension {name!r} must be a JSON object")
    for key in ("definition", "style_pairs", "style_voice"):
        if key not in raw:
            raise DimensionError(f"{where}: dimension {name!r}: field {key!r} missing")
    pairs = raw["style_pairs"]
    if not isinstance(pairs, list) or not pairs or not all(
            isinstance(p, list) and len(p) == 2 and all(isinstance(s, str) for s in p)
            for p in pairs):
        raise DimensionError(f"{where}: dimension {name!r}: field 'style_pairs' must be a "
                             "non-empty list of [style, style] pairs")
    voice = raw["style_voice"]
    if not isinstance(voice, dict) or not all(isinstance(v, str) for v in voice.values()):
        raise DimensionError(f"{where}: dimension {name!r}: field 'style_voice' must map "
                             "style names to strings")
    unknown = set(raw) - {"definition", "style_pairs", "style_voice", "guidance", "paper"}
    if unknown:
        raise DimensionError(f"{where}: dimension {name!r}: unknown field {sorted(unknown)[0]!r}")
    return DimensionSpec(name, str(raw["definition"]), tuple(tuple(p) for p in pairs),
                         dict(voice), str(raw.get("guidance", "")), bool(raw.get("paper", False)))


def read_table(path: str | os.PathLike) -> dict[str, DimensionSpec]:
    """The dimensions defined in one JSON file."""
    file = Path(path)
    if not file.is_file():
        raise DimensionError(f"dimensions file not found: {file}")
    try:
        table = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DimensionError(f"{file}: invalid JSON ({err.msg}, line {err.lineno})") from None
    if not isinstance(table, dict):
        raise DimensionError(f"{file}: expected an object of dimension name -> entry")
    specs = {}
    for name, raw in table.items():
        if not name or ":" in name or not name.replace("_", "").isalnum():
            raise DimensionError(f"{file}: bad dimension name {name!r} (letters, digits, _)")
        specs[name] = _spec(name, raw, str(file))
    return specs


def load_dimensions(path: str | os.PathLike | None = None) -> dict[str, DimensionSpec]:
    """Built-in dimensions, updated by those in `path` (which may add or override)."""
    return {**read_table(BUILTIN_FILE), **(read_table(path) if path else {})}


def write_table(specs: dict[str, DimensionSpec], path: str | os.PathLike) -> None:
    """Write specs in the JSON layout `read_table` reads."""
    table = {s.name: {"paper": s.paper, "definition": s.definition,
                      "style_pairs": [list(p) for p in s.style_pairs],
                      "style_voice": s.style_voice, "guidance": s.guidance}
             for s in specs.values()}
    Path(path).write_text(json.dumps(table, indent=2) + "\n", encoding="utf-8")


def dataset_dimension_names(queries_file: str | os.PathLike) -> set[str]:
    """Dimension names declared by the data set of `queries_file` (empty when none)."""
    table = Path(queries_file).parent / DATASET_FILE
    return set(read_table(table)) if table.is_file() else set()
