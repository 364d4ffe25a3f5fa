"""Records: round trips, and validation errors that name file, line and field."""

from __future__ import annotations

import json

import pytest

from bench.data.schema import (
    JsonlAppender,
    Judgement,
    SchemaError,
    read_judgements,
    read_queries,
    write_jsonl,
)

GOOD = {"id": "q1", "dimension": "emotion", "text": "I got the results.", "scenario": "s",
        "split": "synthetic", "styles": [{"name": "happy", "audio": "a/h.wav"},
                                         {"name": "sad", "audio": "/abs/s.wav"}]}


def _write(tmp_path, *records):
    p = tmp_path / "q.jsonl"
    p.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return p


def test_queries_load_with_audio_resolved_relative_to_the_file(tmp_path):
    q = read_queries(_write(tmp_path, GOOD))[0]
    assert q.styles[0].audio == str((tmp_path / "a" / "h.wav").resolve())
    assert q.styles[1].audio == "/abs/s.wav"
    assert q.item_id(q.styles[1]) == "q1:sad" and q.contrast(q.styles[0]).name == "sad"


@pytest.mark.parametrize("change, line, field", [
    ({"dimension": "accent"}, 2, "dimension"),
    ({"split": "dev"}, 2, "split"),
    ({"text": 3}, 2, "text"),
    ({"styles": [{"name": "a", "audio": "x"}]}, 2, "styles"),
    ({"styles": [{"name": "a", "audio": "x"}, {"name": "a", "audio": "y"}]}, 2, "styles[1].name"),
    ({"styles": [{"name": "a"}, {"name": "b", "audio": "y"}]}, 2, "styles[0].audio"),
    ({"colour": "red"}, 2, "colour"),
    ({"id": "q1"}, 2, "id"),  # duplicate of line 1
])
def test_errors_name_file_line_and_field(tmp_path, change, line, field):
    bad = {**GOOD, **change}
    path = _write(tmp_path, GOOD if field == "id" else {**GOOD, "id": "q0"}, bad)
    with pytest.raises(SchemaError) as err:
        read_queries(path)
    assert (err.value.path, err.value.line, err.value.field) == (str(path), line, field)
    assert f"{path}:{line}: field '{field}'" in str(err.value)


def test_missing_field_and_bad_json(tmp_path):
    with pytest.raises(SchemaError, match=r"q.jsonl:1: field 'scenario': missing"):
        read_queries(_write(tmp_path, {k: v for k, v in GOOD.items() if k != "scenario"}))
    with pytest.raises(SchemaError, match=r"q.jsonl:2: field '<line>': invalid JSON"):
        read_queries(_write(tmp_path, GOOD, "{not json"))


def test_judgements_round_trip_last_record_wins_and_torn_tail(tmp_path):
    a = Judgement("q1:a", "q1", "a", "emotion", "synthetic", "S", None, error="boom",
                  transient=True)
    b = Judgement("q1:a", "q1", "a", "emotion", "synthetic", "S", 4, backends={"judge": "x"})
    path = tmp_path / "j.jsonl"
    write_jsonl(path, [a, b])
    assert read_judgements(path) == [b]
    path.write_text(path.read_text() + '{"item_id": "q2:a", "sco')  # killed mid-write
    with pytest.raises(SchemaError):
        read_judgements(path)
    assert read_judgements(path, tolerate_torn_tail=True) == [b]
    # Appending after a torn tail must not glue the new record onto the fragment.
    w = JsonlAppender(path)
    w.append(a)
    w.close()
    assert read_judgements(path) == [a]


def test_judgement_validation(tmp_path):
    rec = {"item_id": "q1:a", "query_id": "q1", "style": "a", "dimension": "emotion",
           "split": "real", "system": "S", "score": 6}
    (tmp_path / "j.jsonl").write_text(json.dumps(rec) + "\n")
    with pytest.raises(SchemaError, match="j.jsonl:1: field 'score': 6 outside"):
        read_judgements(tmp_path / "j.jsonl")
    (tmp_path / "j.jsonl").write_text(json.dumps({**rec, "score": None}) + "\n")
    with pytest.raises(SchemaError, match="field 'error': a record without a score"):
        read_judgements(tmp_path / "j.jsonl")
