"""Draft queries: text-only benchmark items, before any speech is rendered.

bench.generate writes them (with the filters' verdicts), the review sheet accepts or
rejects them, and bench.synth turns accepted drafts into a queries.jsonl with audio.
Each style also carries an example reply (`reply`, spoken in `reply_style`) and a draft
may carry `neutral_reply` (one answer that ignores the style): these become the SFT
targets (bench.data.sft_export) and the style-blind reference replies.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.data.schema import SchemaError, iter_jsonl, write_jsonl


@dataclass(frozen=True)
class DraftStyle:
    name: str  # e.g. "excited"; unique within the draft
    description: str  # how it is said: the TTS instructions
    reference: str = ""  # what a fitting reply does in this style
    reply: str = ""  # an example fitting reply (SFT target text)
    reply_style: str = ""  # how that reply sounds (TTS instructions of the reply)


@dataclass(frozen=True)
class Verdict:
    filter: str  # neutrality | plausibility | relevance | duplicate | review
    passed: bool
    reason: str


@dataclass(frozen=True)
class Draft:
    id: str
    dimension: str
    text: str
    scenario: str
    styles: tuple[DraftStyle, ...]
    neutral_reply: str = ""
    verdicts: tuple[Verdict, ...] = ()
    origin: str = ""  # which generation call wrote it, e.g. "emotion/batch0/2"

    @property
    def dropped_by(self) -> Verdict | None:
        """The first failed check, if any."""
        return next((v for v in self.verdicts if not v.passed), None)

    def with_verdict(self, verdict: Verdict) -> Draft:
        return dataclasses.replace(self, verdicts=(*self.verdicts, verdict))


def normalise(text: str) -> str:
    """Lower case, punctuation dropped, whitespace collapsed: the duplicate key."""
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def _str(path: Path, line: int, where: str, raw: dict, key: str, required: bool = True) -> str:
    if key not in raw:
        if required:
            raise SchemaError(path, line, f"{where}{key}", "missing")
        return ""
    if not isinstance(raw[key], str):
        raise SchemaError(path, line, f"{where}{key}", f"expected str, got "
                          f"{type(raw[key]).__name__}")
    return raw[key].strip()


def draft_from_dict(raw: Any, path: Path = Path("<memory>"), line: int = 0) -> Draft:
    """Validate one JSON object as a Draft; errors name file, line and field."""
    if not isinstance(raw, dict):
        raise SchemaError(path, line, "<record>", f"expected object, got {type(raw).__name__}")
    unknown = set(raw) - {f.name for f in dataclasses.fields(Draft)}
    if unknown:
        raise SchemaError(path, line, sorted(unknown)[0], "unknown field")
    vals = {k: _str(path, line, "", raw, k) for k in ("id", "dimension", "text", "scenario")}
    if not vals["id"] or ":" in vals["id"]:
        raise SchemaError(path, line, "id", "must be non-empty and contain no ':'")
    for k in ("text", "scenario"):
        if not vals[k]:
            raise SchemaError(path, line, k, "empty")
    styles_raw = raw.get("styles")
    if not isinstance(styles_raw, list) or len(styles_raw) != 2:
        raise SchemaError(path, line, "styles", "expected a list of 2 contrastive styles")
    styles = []
    for i, s in enumerate(styles_raw):
        where = f"styles[{i}]."
        if not isinstance(s, dict):
            raise SchemaError(path, line, where[:-1], "expected object")
        extra = set(s) - {f.name for f in dataclasses.fields(DraftStyle)}
        if extra:
            raise SchemaError(path, line, where + sorted(extra)[0], "unknown field")
        st = DraftStyle(*(_str(path, line, where, s, k, req) for k, req in (
            ("name", True), ("description", True), ("reference", False), ("reply", False),
            ("reply_style", False))))
        if not st.name or not re.fullmatch(r"[\w\-]+", st.name):
            raise SchemaError(path, line, where + "name", "must be a word (letters, digits, -_)")
        styles.append(st)
    if styles[0].name == styles[1].name:
        raise SchemaError(path, line, "styles[1].name", "both styles have the same name")
    verdicts = []
    for i, v in enumerate(raw.get("verdicts", [])):
        if not isinstance(v, dict) or set(v) != {"filter", "passed", "reason"}:
            raise SchemaError(path, line, f"verdicts[{i}]", "expected {filter, passed, reason}")
        verdicts.append(Verdict(str(v["filter"]), bool(v["passed"]), str(v["reason"])))
    return Draft(**vals, styles=tuple(styles),
                 neutral_reply=_str(path, line, "", raw, "neutral_reply", False),
                 verdicts=tuple(verdicts), origin=_str(path, line, "", raw, "origin", False))


def draft_to_dict(d: Draft) -> dict:
    out = dataclasses.asdict(d)
    out["styles"] = [dataclasses.asdict(s) for s in d.styles]
    out["verdicts"] = [dataclasses.asdict(v) for v in d.verdicts]
    return out


def read_drafts(path: str | os.PathLike) -> list[Draft]:
    """Load and validate a drafts JSONL file; ids must be unique."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"drafts file not found: {path}")
    out, seen = [], {}
    for n, raw in iter_jsonl(path):
        d = draft_from_dict(raw, path, n)
        if d.id in seen:
            raise SchemaError(path, n, "id", f"duplicate id {d.id!r} (first on line {seen[d.id]})")
        seen[d.id] = n
        out.append(d)
    return out


def write_drafts(path: str | os.PathLike, drafts: list[Draft]) -> None:
    write_jsonl(path, [draft_to_dict(d) for d in drafts])


@dataclass
class DraftSet:
    """Drafts split by outcome, in generation order."""

    kept: list[Draft] = field(default_factory=list)
    dropped: list[Draft] = field(default_factory=list)
