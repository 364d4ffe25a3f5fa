"""OpenAI-compatible endpoints: client set-up, retries with backoff, cost estimates.

The API key is read from an environment variable at client creation and never
stored on any object that is logged or written; `redact` scrubs it from error text.
"""

from __future__ import annotations

import os
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import openai

T = TypeVar("T")
_SECRETS: set[str] = set()
_SECRETS_LOCK = threading.Lock()


class ConfigError(ValueError):
    """A back end that cannot be set up as asked (missing key, bad path, ...)."""


class TransientError(RuntimeError):
    """A call that kept failing with retryable errors; a later re-run may succeed."""


# Key-shaped tokens (sk-..., also partly masked echoes such as "sk-proj-abc***xyz").
_KEYLIKE = re.compile(r"\bsk-[A-Za-z0-9_\-*]{6,}")


def redact(text: str) -> str:
    """Replace every API key in use, and anything key-shaped, by '***'."""
    with _SECRETS_LOCK:
        secrets = sorted(_SECRETS, key=len, reverse=True)
    for s in secrets:
        text = text.replace(s, "***")
    return _KEYLIKE.sub("sk-***", text)


def _safe_url(url: str | None) -> str:
    if not url:
        return "api.openai.com"
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    # Drop user:password@ and query strings: both can carry credentials.
    return urlunsplit((parts.scheme, host, parts.path, "", "")).split("//", 1)[-1]


@dataclass(frozen=True)
class Endpoint:
    """Where and how to call an OpenAI-compatible API; holds the key's *name* only."""

    model: str
    base_url: str | None = None  # None: the OpenAI API
    key_env: str = "OPENAI_API_KEY"  # "" for servers that need no key (local vLLM)
    timeout_s: float = 60.0

    def label(self) -> str:
        return f"{self.model}@{_safe_url(self.base_url)}"

    def client(self) -> openai.OpenAI:
        if self.key_env:
            key = os.environ.get(self.key_env, "")
            if not key:
                raise ConfigError(
                    f"environment variable {self.key_env} is not set; it must hold the API key "
                    f"for {self.label()} (or pass an empty key variable for keyless servers)"
                )
            with _SECRETS_LOCK:
                _SECRETS.add(key)
        else:
            key = "no-key"
        # Retries are ours (RetryPolicy): the client's own would hide attempts from the ledger.
        return openai.OpenAI(
            api_key=key, base_url=self.base_url, max_retries=0, timeout=self.timeout_s
        )


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter on 429, 5xx, timeouts and dropped connections."""

    max_attempts: int = 5
    base_delay_s: float = 1.0
    max_delay_s: float = 60.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_delay_s)
        d = self.base_delay_s * 2 ** (attempt - 1)
        return min(d * (0.5 + random.random() / 2), self.max_delay_s)


def is_retryable(err: BaseException) -> bool:
    if isinstance(err, openai.APITimeoutError | openai.APIConnectionError | openai.RateLimitError):
        return True
    if isinstance(err, openai.APIStatusError):
        return err.status_code in (408, 409, 429) or err.status_code >= 500
    return False


def _retry_after(err: BaseException) -> float | None:
    response = getattr(err, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def call_with_retries(fn: Callable[[], T], policy: RetryPolicy, what: str) -> tuple[T, int]:
    """Run fn, retrying retryable failures; return (result, attempts used)."""
    for attempt in range(1, policy.max_attempts + 1):
        try:
            return fn(), attempt
        except Exception as err:
            if not is_retryable(err):
                raise
            if attempt == policy.max_attempts:
                raise TransientError(
                    f"{what}: gave up after {attempt} attempts: {type(err).__name__}: "
                    f"{redact(str(err))[:300]}"
                ) from None
            time.sleep(policy.delay(attempt, _retry_after(err)))
    raise AssertionError("unreachable")


class RateLimiter:
    """At most `per_second` request starts per second, shared by all threads (0: no limit).

    Bounded concurrency alone still bursts; paid APIs meter requests per minute.
    """

    def __init__(self, per_second: float = 0.0):
        self.interval = 1.0 / per_second if per_second > 0 else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    def acquire(self) -> None:
        if not self.interval:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        time.sleep(max(0.0, start - now))


# USD list prices used for the ledger's *estimates* (override with --prices FILE.json).
# chat: per 1M input / output tokens; transcription: per audio minute; speech: per 1M chars.
DEFAULT_PRICES: dict[str, dict[str, float]] = {
    "gpt-4.1": {"input_per_mtok": 2.0, "output_per_mtok": 8.0},
    "gpt-4.1-mini": {"input_per_mtok": 0.4, "output_per_mtok": 1.6},
    "gpt-4o": {"input_per_mtok": 2.5, "output_per_mtok": 10.0},
    "gpt-4o-mini": {"input_per_mtok": 0.15, "output_per_mtok": 0.6},
    "whisper-1": {"per_minute": 0.006},
    "gpt-4o-transcribe": {"per_minute": 0.006},
    "gpt-4o-mini-transcribe": {"per_minute": 0.003},
    "tts-1": {"per_mchar": 15.0},
    "gpt-4o-mini-tts": {"per_mchar": 15.0},
}


def estimate_cost(prices: dict[str, dict[str, float]], model: str,
                  usage: dict[str, Any]) -> float | None:
    """Cost of one call from its usage; None for a model without a price."""
    p = prices.get(model)
    if not p:
        return None
    cost = usage.get("prompt_tokens", 0) * p.get("input_per_mtok", 0.0) / 1e6
    cost += usage.get("completion_tokens", 0) * p.get("output_per_mtok", 0.0) / 1e6
    cost += usage.get("audio_seconds", 0.0) / 60 * p.get("per_minute", 0.0)
    cost += usage.get("characters", 0) * p.get("per_mchar", 0.0) / 1e6
    return cost


def usage_of(response: Any) -> dict[str, int]:
    """Token counts from a chat completion, if the server reported them."""
    u = getattr(response, "usage", None)
    if u is None:
        return {}
    return {
        "prompt_tokens": int(getattr(u, "prompt_tokens", 0) or 0),
        "completion_tokens": int(getattr(u, "completion_tokens", 0) or 0),
    }
