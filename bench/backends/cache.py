"""SQLite cache of every back-end call, so a re-run or a resumed run never pays twice.

Key = sha256 of (backend, model, inputs); inputs hold content hashes of audio, never
paths. Each write commits at once (WAL journal), so a killed run keeps every answer it
had received. Audio results are stored as content-addressed blobs next to the database.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any


def cache_key(backend: str, model: str, inputs: dict[str, Any]) -> str:
    """Stable hash of what determines a call's answer."""
    blob = json.dumps({"backend": backend, "model": model, "inputs": inputs}, sort_keys=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def digest(value: Any) -> str:
    """Short sha256 of a JSON-able value: names a prompt, rubric or rule set in a fingerprint."""
    blob = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:12]


def code_digest(*objects: Any) -> str:
    """Digest of the source code of functions/classes: any edit to the rules changes it."""
    return digest([inspect.getsource(o) for o in objects])


class Cache:
    """Thread-safe key -> JSON value store with audio blobs."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.blob_dir = self.path.with_name(self.path.stem + "_blobs")
        self.blob_dir.mkdir(exist_ok=True)
        self._lock = threading.Lock()
        # One connection shared under a lock: sqlite3 objects are not thread-safe.
        # timeout: another bench.score process may share the cache and hold the write lock.
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None,
                                   timeout=60)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS calls (key TEXT PRIMARY KEY, role TEXT, backend TEXT,"
            " model TEXT, value TEXT NOT NULL, created REAL)"
        )

    def get(self, key: str) -> dict | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM calls WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def put(self, key: str, role: str, backend: str, model: str, value: dict) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO calls VALUES (?, ?, ?, ?, ?, ?)",
                (key, role, backend, model, json.dumps(value), time.time()),
            )

    def put_blob(self, data: bytes, suffix: str = ".wav") -> str:
        """Store bytes under their hash; return the blob's path."""
        path = self.blob_dir / (hashlib.sha256(data).hexdigest() + suffix)
        if not path.exists():
            tmp = path.with_suffix(".part")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        return str(path)

    def count(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM calls").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()
