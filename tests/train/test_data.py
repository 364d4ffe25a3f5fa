"""Data pipeline: validation errors, determinism, process sharding, exact resume, buckets."""

import json

import numpy as np
import pytest

from paras2s_jax.model import tiny
from paras2s_jax.train import data as data_lib

MC = tiny()


def _records(n: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{
        "id": f"r{i}",
        "prompt_audio": rng.integers(0, 256, size=rng.integers(2, 8)).tolist(),
        "reply_text": rng.integers(0, 100, size=rng.integers(1, 4)).tolist(),
        "reply_audio": rng.integers(0, 256, size=rng.integers(1, 8)).tolist(),
    } for i in range(n)]


def _write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _take(ds, n):
    it = iter(ds)
    return [next(it) for _ in range(n)]


@pytest.mark.parametrize("change, needle", [
    (lambda r: r.pop("reply_audio"), "missing field 'reply_audio'"),
    (lambda r: r.__setitem__("reply_text", [1, 2000]), "'reply_text' has id 2000"),
    (lambda r: r.__setitem__("prompt_audio", [300]), "'prompt_audio' has id 300"),
    (lambda r: r.__setitem__("reply_text", "abc"), "'reply_text' must be a list of ints"),
])
def test_bad_record_names_file_record_and_field(tmp_path, change, needle):
    records = _records(5)
    change(records[3])
    path = _write(tmp_path / "shard.jsonl", records)
    with pytest.raises(data_lib.DataError) as err:
        data_lib.read_records([path], MC)
    msg = str(err.value)
    assert str(path) in msg and "record 3" in msg and needle in msg


def test_invalid_json_and_missing_file(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(_records(1)[0]) + "\n{not json\n")
    with pytest.raises(data_lib.DataError, match="bad.jsonl, record 1: invalid JSON"):
        data_lib.read_records([path], MC)
    with pytest.raises(data_lib.DataError, match="not found"):
        data_lib.read_records([tmp_path / "nope.jsonl"], MC)


def test_array_record_matches_jsonl(tmp_path):
    from array_record.python.array_record_module import ArrayRecordWriter

    records = _records(7)
    path = tmp_path / "shard.array_record"
    writer = ArrayRecordWriter(str(path), "group_size:1")
    for r in records:
        writer.write(json.dumps(r).encode())
    writer.close()
    jsonl = _write(tmp_path / "shard.jsonl", records)
    assert data_lib.read_records([path], MC) == data_lib.read_records([jsonl], MC)


def test_shuffle_is_deterministic_and_seeded():
    records = [data_lib.validate_record(r, MC, "x") for r in _records(40)]
    a = _take(data_lib.train_dataset(records, MC, 8, [32, 64], seed=1, process_index=0,
                                     process_count=1), 12)
    b = _take(data_lib.train_dataset(records, MC, 8, [32, 64], seed=1, process_index=0,
                                     process_count=1), 12)
    c = _take(data_lib.train_dataset(records, MC, 8, [32, 64], seed=2, process_index=0,
                                     process_count=1), 12)
    for x, y in zip(a, b, strict=True):
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])
    assert any(not np.array_equal(x["audio"], y["audio"]) for x, y in zip(a, c, strict=True))
    # 12 batches of 8 = 96 > 40 records: every record appears, epochs reshuffle
    assert {b["text"].shape[1] for b in a} <= {32, 64}


def _rows(batch):
    return {tuple(batch["audio"][i]) for i in range(batch["audio"].shape[0])}


def test_processes_split_the_global_batch():
    records = [data_lib.validate_record(r, MC, "x") for r in _records(30)]
    whole = _take(data_lib.train_dataset(records, MC, 8, [64], seed=3, process_index=0,
                                         process_count=1), 6)
    parts = [_take(data_lib.train_dataset(records, MC, 8, [64], seed=3, process_index=p,
                                          process_count=2), 6) for p in range(2)]
    for step, full in enumerate(whole):
        p0, p1 = parts[0][step], parts[1][step]
        assert p0["audio"].shape[0] == p1["audio"].shape[0] == 4
        assert _rows(p0) | _rows(p1) == _rows(full)
        assert _rows(p0).isdisjoint(_rows(p1)) or len(_rows(full)) < 8


def test_iterator_state_resumes_exactly():
    records = [data_lib.validate_record(r, MC, "x") for r in _records(20)]
    ds = data_lib.train_dataset(records, MC, 4, [64], seed=0, process_index=0, process_count=1)
    it = iter(ds)
    for _ in range(7):
        next(it)
    state = it.get_state()
    expected = [next(it) for _ in range(5)]
    it2 = iter(ds)
    it2.set_state(state)
    for x in expected:
        np.testing.assert_array_equal(x["audio"], next(it2)["audio"])


def test_bucketing_and_too_long_sequence():
    assert data_lib.bucket_for(30, [64, 32]) == 32
    assert data_lib.bucket_for(33, [32, 64]) == 64
    long = {"prompt_audio": list(range(100)), "reply_text": [1], "reply_audio": [2]}
    records = [data_lib.validate_record(long, MC, "x")]
    with pytest.raises(data_lib.DataError, match="exceed the largest bucket 64"):
        data_lib.train_dataset(records, MC, 1, [32, 64], seed=0, process_index=0,
                               process_count=1)


def test_eval_batches_pad_with_empty_rows():
    records = [data_lib.validate_record(r, MC, "x") for r in _records(5)]
    batches = data_lib.eval_batches(records, MC, 4, [64])
    assert len(batches) == 2
    assert batches[1]["attention_mask"][1:].sum() == 0  # 1 real row, 3 filler rows


def test_processes_agree_on_the_bucket():
    # Alternate short and long records: on its own rows alone, process 0 (short rows)
    # would pick the 32 bucket and process 1 the 64 one; they would run different programs.
    short = {"prompt_audio": [1, 2], "reply_text": [3], "reply_audio": [4]}
    long = {"prompt_audio": list(range(30)), "reply_text": [3], "reply_audio": [4]}
    records = [data_lib.validate_record(r, MC, "x") for r in [short, long] * 8]
    assert len(data_lib.sft_sequence(records[0], MC)) <= 32
    assert len(data_lib.sft_sequence(records[1], MC)) > 32
    parts = [data_lib.train_dataset(records, MC, 4, [32, 64], seed=0, process_index=p,
                                    process_count=2) for p in range(2)]
    whole = _take(data_lib.train_dataset(records, MC, 4, [32, 64], seed=0, process_index=0,
                                         process_count=1), 20)
    for full, p0, p1 in zip(whole, _take(parts[0], 20), _take(parts[1], 20), strict=True):
        assert p0["text"].shape == p1["text"].shape == (2, full["text"].shape[1])
        np.testing.assert_array_equal(p0["audio"], full["audio"][0::2])
        np.testing.assert_array_equal(p1["audio"], full["audio"][1::2])
    evals = [data_lib.eval_batches(records, MC, 4, [32, 64], process_index=p, process_count=2)
             for p in range(2)]
    assert [b["text"].shape for b in evals[0]] == [b["text"].shape for b in evals[1]]
    assert all(b["text"].shape[1] == 64 for b in evals[0])
