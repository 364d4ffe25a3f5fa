"""The judge's calls through the OpenAI Batch API (`bench.score --batch`, distillation's
`config.distill.batch`): half the online price, answers within 24 h.

A first pass collects the first ask of every item whose answer is not cached
(`BatchCollector`). `run_batch` writes them to `<folder>/requests-<n>.jsonl` (each body
exactly what the online call sends; custom_id = the call's cache key), uploads it,
submits the batch and records its id in `<folder>/state.json` before it polls. Each
answer goes into the cache entry the online call would use, so the ordinary scoring pass
afterwards finds it there and parses it with the same parser; an unusable answer is not
cached but handed to that pass once, whose judge re-asks online as it would online, and
a request the batch failed is asked online. A run stopped while a batch is pending goes
on polling the same batch when started again: nothing is submitted twice (the uploaded
file is recorded before the batch is made, and a batch the API already has for that file
is found, not made again).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from openai.types.chat import ChatCompletion

from bench.backends.cache import cache_key
from bench.backends.judge import BACKEND, JudgeInput, OpenAIJudge, Verdict, answer_of, usable
from bench.backends.remote import call_with_retries

# OpenAI bills Batch API tokens at half the online price (ledger estimates).
PRICE_FACTOR = 0.5
ENDPOINT = "/v1/chat/completions"
TERMINAL = ("completed", "failed", "expired", "cancelled")
# Per batch, the API takes at most 50,000 requests and a 200 MB input file.
MAX_REQUESTS = 50_000
MAX_BYTES = 190 * 2**20


class BatchError(RuntimeError):
    """A batch that ended without answering everything, or is still pending."""


class Deferred(Exception):
    """The item's judge call went into a batch: the item is scored after it."""


@dataclass(frozen=True)
class Request:
    custom_id: str  # the call's cache key
    body: dict  # the chat.completions body the online call sends


@dataclass(frozen=True)
class Polling:
    interval_s: float = 30.0
    timeout_s: float = 24 * 3600.0  # then BatchError; a re-run polls the same batch


class BatchCollector:
    """A judge for the first pass: judges an item whose first ask is cached at once, else
    keeps that ask for the batch and raises `Deferred`."""

    heuristic = False

    def __init__(self, judge: OpenAIJudge):
        self.inner, self.name = judge, judge.name
        self.requests: dict[str, Request] = {}
        self._lock = threading.Lock()

    def identity(self) -> dict[str, str]:
        return self.inner.identity()

    def judge(self, inp: JudgeInput) -> Verdict:
        inputs, body = self.inner.request(self.inner.first_messages(inp))
        key = cache_key(BACKEND, self.inner.endpoint.label(), inputs)
        hit = self.inner.runtime.cache.get(key)
        if hit is not None and usable(hit):
            return self.inner.judge(inp)
        with self._lock:
            self.requests.setdefault(key, Request(key, body))
        raise Deferred(key)


class _State:
    """`<folder>/state.json`: every batch submitted from this folder, written atomically."""

    def __init__(self, folder: Path):
        self.path = folder / "state.json"
        self.batches: list[dict] = (json.loads(self.path.read_text())["batches"]
                                    if self.path.exists() else [])

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"batches": self.batches}, indent=2) + "\n")
        tmp.replace(self.path)


def run_batch(judge: OpenAIJudge, requests: list[Request], folder: str | Path,
              polling: Polling = Polling()) -> list[dict]:
    """Finish any batch a stopped run left pending in `folder`, then submit the requests
    whose answers are still not cached (one batch, more past the API's limits) and ingest
    the answers. Returns the state entries of the batches finished now; BatchError when
    one did not complete."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state, client = _State(folder), judge.endpoint.client()
    finished = [_finish(judge, client, state, entry, polling)
                for entry in state.batches if entry["status"] not in TERMINAL]
    # What a finished batch did not answer usably is asked online by the scoring pass.
    asked = {cid for entry in finished for cid in _bodies(state, entry)}
    todo = [r for r in requests if r.custom_id not in asked and not _cached(judge, r.custom_id)]
    submitted = [_submit(judge, client, state, folder, part) for part in _parts(todo)]
    return finished + [_finish(judge, client, state, entry, polling) for entry in submitted]


def _parts(todo: list[Request]) -> list[list[Request]]:
    """`todo` cut into batches within the API's limits on requests and input file size."""
    parts: list[list[Request]] = []
    size = 0
    for r in todo:
        n = len(json.dumps(r.body)) + 200  # the line's other fields
        if not parts or len(parts[-1]) >= MAX_REQUESTS or size + n > MAX_BYTES:
            parts.append([])
            size = 0
        parts[-1].append(r)
        size += n
    return parts


def _cached(judge: OpenAIJudge, key: str) -> bool:
    hit = judge.runtime.cache.get(key)
    return hit is not None and usable(hit)


def _bodies(state: _State, entry: dict) -> dict[str, dict]:
    """custom_id -> request body of the batch's request file."""
    path = state.path.parent / entry["requests"]
    return {r["custom_id"]: r["body"] for r in map(json.loads, path.read_text().splitlines())}


def _api(judge: OpenAIJudge, fn, what: str):
    return call_with_retries(fn, judge.runtime.retry, f"batch: {what}")[0]


def _submit(judge, client, state: _State, folder: Path, todo: list[Request]) -> dict:
    path = folder / f"requests-{len(state.batches) + 1}.jsonl"
    path.write_text("".join(json.dumps({"custom_id": r.custom_id, "method": "POST",
                                        "url": ENDPOINT, "body": r.body}) + "\n" for r in todo))
    data = path.read_bytes()
    upload = _api(judge, lambda: client.files.create(file=(path.name, data), purpose="batch"),
                  f"upload {path}")
    entry = {"id": None, "requests": path.name, "input_file_id": upload.id,
             "model": judge.endpoint.label(), "count": len(todo), "status": "submitting",
             "submitted": time.time()}
    state.batches.append(entry)
    state.save()  # a run stopped from here on finds (or makes) this batch, never a second
    _create(judge, client, state, entry)
    return entry


def _create(judge, client, state: _State, entry: dict) -> None:
    """The batch of the entry's uploaded file: the one the API already has (a run stopped,
    or a retried request timed out, after it was made), else a new one; recorded before
    polling."""
    def find_or_create():
        for b in client.batches.list(limit=100):
            if b.input_file_id == entry["input_file_id"]:
                return b
        return client.batches.create(input_file_id=entry["input_file_id"], endpoint=ENDPOINT,
                                     completion_window="24h")

    batch = _api(judge, find_or_create, f"submit {entry['requests']}")
    entry.update(id=batch.id, status=batch.status)
    state.save()


def _finish(judge, client, state: _State, entry: dict, polling: Polling) -> dict:
    """Poll the batch until it ends, ingest what it answered, record that in the state."""
    if entry["id"] is None:
        _create(judge, client, state, entry)
    deadline = time.monotonic() + polling.timeout_s
    while True:
        batch = _api(judge, lambda: client.batches.retrieve(entry["id"]), f"poll {entry['id']}")
        if batch.status in TERMINAL:
            break
        if time.monotonic() >= deadline:
            raise BatchError(f"batch {entry['id']} is still {batch.status} after "
                             f"{polling.timeout_s:g} s; it is recorded in {state.path}: run "
                             "the same command again to go on waiting for it (nothing is "
                             "submitted twice)")
        time.sleep(polling.interval_s)
    lines = [json.loads(x) for fid in (batch.output_file_id, batch.error_file_id) if fid
             for x in _api(judge, lambda f=fid: client.files.content(f).text,
                           f"download {fid}").splitlines() if x.strip()]
    bodies = _bodies(state, entry)
    counts = {"cached": 0, "unusable": 0, "failed": 0}
    for line in lines:
        cid, response = line.get("custom_id"), line.get("response") or {}
        if cid not in bodies or response.get("status_code") != 200:
            counts["failed"] += 1  # asked online by the scoring pass
            continue
        inputs, _ = judge.request(bodies[cid]["messages"])
        if cache_key(BACKEND, entry["model"], inputs) != cid:
            raise BatchError(f"{state.path.parent / entry['requests']}: custom_id {cid} is "
                             "not the cache key of its request (written by another version?)")
        value, usage = answer_of(ChatCompletion.model_validate(response["body"]))
        kept = judge.runtime.ingest("judge", BACKEND, entry["model"], inputs, value, usage,
                                    usable, entry["id"], PRICE_FACTOR)
        counts["cached" if kept else "unusable"] += 1
    counts["failed"] += entry["count"] - len(lines)
    entry.update(status=batch.status, **counts)
    state.save()
    if batch.status != "completed":
        errors = "; ".join(e.message or e.code or "" for e in
                           (batch.errors.data if batch.errors and batch.errors.data else []))
        raise BatchError(
            f"batch {entry['id']} ended {batch.status}" + (f" ({errors})" if errors else "")
            + f": {counts['cached']} of {entry['count']} answers received and cached; "
            f"recorded in {state.path}. Run again to submit the rest as a new batch, or "
            "without batch mode to ask them online.")
    return entry
