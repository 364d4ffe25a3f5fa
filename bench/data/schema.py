"""Records of ParaS2SBench: queries, system replies and judgements, stored as JSONL.

Every record is validated on load; a bad record raises `SchemaError` naming the
file, the line and the field, so a broken data file is fixed in one look.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DIMENSIONS = ("emotion", "sarcasm", "age", "gender")  # the paper's four
SPLITS = ("synthetic", "real")


class SchemaError(ValueError):
    """A record that does not match the schema; the message names file, line, field."""

    def __init__(self, path: str | os.PathLike, line: int, field_name: str, problem: str):
        self.path, self.line, self.field = str(path), line, field_name
        super().__init__(f"{path}:{line}: field '{field_name}': {problem}")


@dataclass(frozen=True)
class StyleVariant:
    """One way of saying the query's neutral text."""

    name: str  # short label, e.g. "excited"; unique within its query
    audio: str  # path of the spoken prompt (absolute once loaded)
    description: str = ""  # how it is said; also the instructions given to a TTS
    reference: str = ""  # what a fitting reply says or does in this style
    reply_style: str = ""  # how a fitting reply sounds, e.g. "warm, slow, soft"
    speaker: str = ""  # who speaks the prompt; clips of one speaker give their usual voice


@dataclass(frozen=True)
class Query:
    """A neutral text said in two contrastive styles, with the scenario that explains why."""

    id: str
    dimension: str  # one of DIMENSIONS, or an extension from bench/data/dimensions.json
    text: str  # neutral text: the words alone do not reveal the style
    scenario: str  # why the style changes what a good reply is
    split: str  # "synthetic" (TTS) or "real" (recorded speech)
    styles: tuple[StyleVariant, ...]  # exactly two

    def item_id(self, style: StyleVariant) -> str:
        return f"{self.id}:{style.name}"

    def contrast(self, style: StyleVariant) -> StyleVariant:
        """The other style of the pair."""
        return next(s for s in self.styles if s.name != style.name)


@dataclass(frozen=True)
class Reply:
    """What a system under test answered to one (query, style) item."""

    item_id: str
    system: str
    audio: str | None = None  # path of the reply speech
    text: str | None = None  # the system's own transcript, when it gives one
    error: str | None = None
    latency_s: float = 0.0
    cost_usd: float = 0.0


@dataclass(frozen=True)
class Judgement:
    """The scored outcome of one item; `score` is None when `error` says why."""

    item_id: str
    query_id: str
    style: str
    dimension: str
    split: str
    system: str
    score: int | None
    reason: str = ""
    error: str | None = None
    error_stage: str | None = None  # system | input_audio | reply_audio | asr | style | judge
    transient: bool = False  # True when a re-run may succeed (retries exhausted)
    heuristic: bool = False  # True when the rule judge (not an LLM) gave the score
    judge_version: str = ""  # model snapshot the judge server reported
    backends: dict[str, str] = field(default_factory=dict)  # role -> "backend/model"
    input_transcript: str = ""
    input_caption: str = ""
    reply_transcript: str = ""
    reply_caption: str = ""
    input_caption_words: dict = field(default_factory=dict)  # attribute -> word (emotion, ...)
    reply_caption_words: dict = field(default_factory=dict)
    reply_audio: str | None = None
    # The audio that was scored (recorded when the file exists, also for a failed item): an
    # item whose file changed is scored again.
    prompt_sha256: str = ""
    reply_sha256: str = ""
    fingerprint: str = ""  # digest of the run's set-up (bench.scoring.fingerprint)
    cost_usd: float = 0.0
    latency_s: float = 0.0
    cached_calls: int = 0
    paid_calls: int = 0


def _check(path: Path, line: int, name: str, value: Any, kind: type | tuple) -> Any:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        want = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise SchemaError(path, line, name, f"expected {want}, got {type(value).__name__}")
    return value


def _style(path: Path, line: int, i: int, raw: Any) -> StyleVariant:
    where = f"styles[{i}]"
    _check(path, line, where, raw, dict)
    unknown = set(raw) - {f.name for f in dataclasses.fields(StyleVariant)}
    if unknown:
        raise SchemaError(path, line, f"{where}.{sorted(unknown)[0]}", "unknown field")
    for req in ("name", "audio"):
        if req not in raw:
            raise SchemaError(path, line, f"{where}.{req}", "missing")
    values = {k: _check(path, line, f"{where}.{k}", v, str) for k, v in raw.items()}
    if not values["name"].strip():
        raise SchemaError(path, line, f"{where}.name", "empty")
    audio = Path(values["audio"])
    # Audio paths are relative to the queries file, so a data set can be moved whole.
    values["audio"] = str(audio if audio.is_absolute() else (path.parent / audio).resolve())
    return StyleVariant(**values)


def query_from_dict(raw: Any, path: Path = Path("<memory>"), line: int = 0,
                    extra_dimensions: Iterable[str] = ()) -> Query:
    """Validate one raw JSON object as a Query; `extra_dimensions` extend DIMENSIONS."""
    _check(path, line, "<record>", raw, dict)
    unknown = set(raw) - {f.name for f in dataclasses.fields(Query)}
    if unknown:
        raise SchemaError(path, line, sorted(unknown)[0], "unknown field")
    for req in ("id", "dimension", "text", "scenario", "split", "styles"):
        if req not in raw:
            raise SchemaError(path, line, req, "missing")
    for name in ("id", "dimension", "text", "scenario", "split"):
        _check(path, line, name, raw[name], str)
    if not raw["id"].strip() or ":" in raw["id"]:
        raise SchemaError(path, line, "id", "must be non-empty and contain no ':'")
    known = tuple(DIMENSIONS) + tuple(sorted(set(extra_dimensions) - set(DIMENSIONS)))
    if raw["dimension"] not in known:
        raise SchemaError(path, line, "dimension", f"{raw['dimension']!r} not in {known}")
    if raw["split"] not in SPLITS:
        raise SchemaError(path, line, "split", f"{raw['split']!r} not in {SPLITS}")
    _check(path, line, "styles", raw["styles"], list)
    styles = tuple(_style(path, line, i, s) for i, s in enumerate(raw["styles"]))
    if len(styles) != 2:
        raise SchemaError(path, line, "styles", f"expected 2 contrastive styles, got {len(styles)}")
    if styles[0].name == styles[1].name:
        raise SchemaError(path, line, "styles[1].name", "both styles have the same name")
    fields = {k: raw[k] for k in ("id", "dimension", "text", "scenario", "split")}
    return Query(**fields, styles=styles)


def _plain(record: Any) -> dict:
    out = dataclasses.asdict(record)
    if isinstance(record, Query):
        out["styles"] = [dataclasses.asdict(s) for s in record.styles]
    return out


def iter_jsonl(
    path: str | os.PathLike, tolerate_torn_tail: bool = False
) -> Iterator[tuple[int, Any]]:
    """Yield (line number, parsed object); blank lines are skipped.

    `tolerate_torn_tail` drops an unparsable *last* line: what a killed writer leaves.
    """
    path = Path(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    for n, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            yield n, json.loads(text)
        except json.JSONDecodeError as err:
            if tolerate_torn_tail and n == len(lines):
                return
            raise SchemaError(path, n, "<line>", f"invalid JSON: {err.msg}") from None


def read_queries(path: str | os.PathLike) -> list[Query]:
    """Load and validate a queries JSONL file; ids must be unique."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"queries file not found: {path}")
    queries, seen = [], {}
    # A data set may declare extension dimensions in its own dimensions.json.
    from bench.data.dimensions import dataset_dimension_names

    extra = dataset_dimension_names(path)
    for n, raw in iter_jsonl(path):
        q = query_from_dict(raw, path, n, extra)
        if q.id in seen:
            raise SchemaError(path, n, "id", f"duplicate id {q.id!r} (first on line {seen[q.id]})")
        seen[q.id] = n
        queries.append(q)
    return queries


def judgement_from_dict(raw: Any, path: Path = Path("<memory>"), line: int = 0) -> Judgement:
    """Validate one raw JSON object as a Judgement."""
    _check(path, line, "<record>", raw, dict)
    known = {f.name: f for f in dataclasses.fields(Judgement)}
    unknown = set(raw) - set(known)
    if unknown:
        raise SchemaError(path, line, sorted(unknown)[0], "unknown field")
    for req in ("item_id", "query_id", "style", "dimension", "split", "system", "score"):
        if req not in raw:
            raise SchemaError(path, line, req, "missing")
    score = raw["score"]
    if score is not None:
        _check(path, line, "score", score, int)
        if not 1 <= score <= 5:
            raise SchemaError(path, line, "score", f"{score} outside the 1-5 Likert scale")
    elif not raw.get("error"):
        raise SchemaError(path, line, "error", "a record without a score must say why")
    if raw["split"] not in SPLITS:
        raise SchemaError(path, line, "split", f"{raw['split']!r} not in {SPLITS}")
    return Judgement(**raw)


def read_judgements(path: str | os.PathLike, tolerate_torn_tail: bool = False) -> list[Judgement]:
    """Load judgements; when a (system, item) appears more than once the last record wins."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"judgements file not found: {path}")
    latest: dict[tuple[str, str], Judgement] = {}
    for n, raw in iter_jsonl(path, tolerate_torn_tail):
        j = judgement_from_dict(raw, path, n)
        latest.pop((j.system, j.item_id), None)
        latest[(j.system, j.item_id)] = j
    return list(latest.values())


def write_jsonl(path: str | os.PathLike, records: Iterable[Any]) -> None:
    """Write records atomically: a crash leaves the old file or the new one, never half."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(_plain(r) if dataclasses.is_dataclass(r) else r) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class JsonlAppender:
    """Append records one line at a time, durably (fsync), from many threads."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._lock = threading.Lock()
        # A torn last line (killed writer) would glue onto the next record: cut it off.
        if self.path.exists():
            data = self.path.read_bytes()
            if data and not data.endswith(b"\n"):
                self.path.write_bytes(data[: data.rfind(b"\n") + 1])
        self._f = open(self.path, "a", encoding="utf-8")

    def append(self, record: Any) -> None:
        line = json.dumps(_plain(record) if dataclasses.is_dataclass(record) else record) + "\n"
        with self._lock:
            self._f.write(line)
            self._f.flush()
            os.fsync(self._f.fileno())

    def close(self) -> None:
        with self._lock:
            self._f.close()
