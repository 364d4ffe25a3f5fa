"""The one path every back-end call takes: cache look-up, retries, cost/latency ledger.

Back ends describe a call (role, backend, model, inputs) and how to compute it; the
Runtime answers from the SQLite cache when it can, otherwise runs it (with retries for
remote calls), stores the answer, and appends a line to the ledger.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.backends.cache import Cache, cache_key
from bench.backends.remote import (
    DEFAULT_PRICES,
    RateLimiter,
    RetryPolicy,
    call_with_retries,
    estimate_cost,
    redact,
)
from bench.data.schema import JsonlAppender


@dataclass
class ItemStats:
    """Calls made on behalf of one item (kept per worker thread)."""

    cost_usd: float = 0.0
    latency_s: float = 0.0
    cached: int = 0
    paid: int = 0


@dataclass
class Totals:
    calls: int = 0
    cached: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0
    unpriced: int = 0  # paid calls to models missing from the price table
    failed: int = 0  # calls that raised (after retries, for remote ones)
    by_backend: dict[str, dict[str, float]] = field(default_factory=dict)


class Runtime:
    """Cache + retries + ledger shared by all back ends of a run."""

    def __init__(
        self,
        cache: Cache,
        ledger_path: str | Path | None = None,
        retry: RetryPolicy | None = None,
        prices: dict[str, dict[str, float]] | None = None,
        limiter: RateLimiter | None = None,
    ):
        self.cache = cache
        self.retry = retry or RetryPolicy()
        self.prices = prices if prices is not None else DEFAULT_PRICES
        self.limiter = limiter or RateLimiter()
        self._ledger = JsonlAppender(ledger_path) if ledger_path else None
        self._local = threading.local()
        self._lock = threading.Lock()
        self._held: dict[str, dict] = {}  # key -> unusable batch answer, handed out once
        self.totals = Totals()

    @contextmanager
    def item(self):
        """Collect the stats of the calls made inside this block on this thread."""
        self._local.stats = ItemStats()
        try:
            yield self._local.stats
        finally:
            self._local.stats = None

    def call(
        self,
        role: str,
        backend: str,
        model: str,
        inputs: dict[str, Any],
        compute: Callable[[], tuple[dict, dict]],
        remote: bool,
        keep: Callable[[dict], bool] | None = None,
    ) -> dict:
        """Return the cached value for these inputs, or compute, cache and log it.

        `compute` returns (value, usage); usage feeds the cost estimate. A value for which
        `keep` is False (an unusable answer) is returned and logged but not cached.
        """
        key = cache_key(backend, model, inputs)
        stats = getattr(self._local, "stats", None)
        hit = self.cache.get(key)
        if hit is not None and keep is not None and not keep(hit):
            hit = None  # an unusable answer cached by an older version: ask again
        if hit is not None:
            self._log(role, backend, model, key, cached=True, latency=0.0, cost=0.0, attempts=0)
            if stats:
                stats.cached += 1
            return hit
        with self._lock:
            held = self._held.pop(key, None)
        if held is not None:
            # Received (and paid, see `ingest`) by a batch, unusable: the caller handles it as
            # a fresh answer to this call (the judge re-asks), as online.
            self._log(role, backend, model, key, False, 0.0, 0.0, 0, extra={"from_batch": True})
            return held
        t0 = time.monotonic()
        try:
            if remote:
                def limited():  # every attempt, retries included, waits its turn
                    self.limiter.acquire()
                    return compute()

                (value, usage), attempts = call_with_retries(
                    limited, self.retry, f"{role} call to {backend}/{model}"
                )
            else:
                (value, usage), attempts = compute(), 1
        except Exception as err:
            # Failed calls cost time (and maybe money): they belong in the ledger too.
            self._log_failure(role, backend, model, key, time.monotonic() - t0, err)
            raise
        latency = time.monotonic() - t0
        # Remote models are labelled "name@host"; prices are per model name.
        cost = estimate_cost(self.prices, model.split("@")[0], usage) if remote else 0.0
        priced = cost is not None
        cost = cost or 0.0
        if keep is None or keep(value):
            self.cache.put(key, role, backend, model, value)
        self._log(role, backend, model, key, False, latency, cost, attempts, usage, priced)
        if stats:
            stats.paid += int(remote)
            stats.cost_usd += cost
            stats.latency_s += latency
        return value

    def ingest(self, role: str, backend: str, model: str, inputs: dict[str, Any], value: dict,
               usage: dict, keep: Callable[[dict], bool], batch_id: str,
               price_factor: float) -> bool:
        """Record an answer that a batch received for a call with these inputs: cached under
        the call's own key when `keep` accepts it, else held for the next `call` with these
        inputs; logged with its cost (`price_factor` x list price). True when cached."""
        key = cache_key(backend, model, inputs)
        cost = estimate_cost(self.prices, model.split("@")[0], usage)
        kept = keep(value)
        if kept:
            self.cache.put(key, role, backend, model, value)
        else:
            with self._lock:
                self._held[key] = value
        self._log(role, backend, model, key, False, 0.0, (cost or 0.0) * price_factor, 1, usage,
                  cost is not None, extra={"batch": batch_id})
        return kept

    def _log(self, role, backend, model, key, cached, latency, cost, attempts, usage=None,
             priced=True, extra=None):
        name = f"{role}:{backend}/{model}"
        with self._lock:
            t = self.totals
            t.calls += 1
            t.unpriced += int(not priced)
            t.cached += int(cached)
            t.cost_usd += cost
            t.latency_s += latency
            b = t.by_backend.setdefault(name, {"calls": 0, "cached": 0, "cost_usd": 0.0,
                                               "latency_s": 0.0})
            b["calls"] += 1
            b["cached"] += int(cached)
            b["cost_usd"] += cost
            b["latency_s"] += latency
        if self._ledger:
            self._ledger.append({
                "time": time.time(), "role": role, "backend": backend,
                "model": redact(model), "key": key[:16], "cached": cached,
                "latency_s": round(latency, 4), "cost_usd": cost, "priced": priced,
                "attempts": attempts, "usage": usage or {}, **(extra or {}),
            })

    def _log_failure(self, role, backend, model, key, latency, err) -> None:
        with self._lock:
            self.totals.failed += 1
        if self._ledger:
            self._ledger.append({
                "time": time.time(), "role": role, "backend": backend, "model": redact(model),
                "key": key[:16], "cached": False, "latency_s": round(latency, 4),
                "cost_usd": 0.0, "error": redact(f"{type(err).__name__}: {err}")[:300],
            })

    def open_ledger(self, path: str | Path) -> None:
        """Append every call of this run to a JSONL ledger at `path`."""
        self._ledger = JsonlAppender(path)

    def close(self) -> None:
        if self._ledger:
            self._ledger.close()
