"""Idempotency-Key bookkeeping (https://docs.stripe.com/idempotency).

Keys are scoped per API key. The first response produced once execution began (successes and
500s alike) is saved and replayed for the same key + endpoint + parameters; a different endpoint
or parameters is an ``idempotency_error``; a request arriving while the first is still running
gets 409. Validation failures, rate limits and injected faults are never saved, so they can be
retried. Saved keys are pruned after ``ttl_seconds`` (Stripe: at least 24 hours).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

MAX_KEY_LENGTH = 255


@dataclass(frozen=True)
class Fingerprint:
    method: str
    path: str
    params: str  # canonical JSON of the decoded parameters

    @classmethod
    def of(cls, method: str, path: str, params: Any) -> Fingerprint:
        return cls(method, path, json.dumps(params, sort_keys=True, separators=(",", ":")))


@dataclass(frozen=True)
class SavedResponse:
    status: int
    body: bytes
    headers: dict[str, str]
    request_id: str


@dataclass
class _Entry:
    fingerprint: Fingerprint
    started: float
    request_id: str
    response: SavedResponse | None = None  # None while the first request is in flight


class Outcome(Enum):
    NEW = "new"
    REPLAY = "replay"
    IN_FLIGHT = "in_flight"
    PARAMS_MISMATCH = "params_mismatch"
    ENDPOINT_MISMATCH = "endpoint_mismatch"


@dataclass(frozen=True)
class Begin:
    outcome: Outcome
    saved: SavedResponse | None = None
    original: Fingerprint | None = None


class IdempotencyStore:
    def __init__(self, ttl_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str], _Entry] = {}

    def _prune(self, now: float) -> None:
        expired = [
            k
            for k, e in self._entries.items()
            if e.response is not None and now - e.started >= self.ttl_seconds
        ]
        for k in expired:
            del self._entries[k]

    def begin(self, scope: str, key: str, fingerprint: Fingerprint, request_id: str) -> Begin:
        with self._lock:
            now = self._clock()
            self._prune(now)
            entry = self._entries.get((scope, key))
            if entry is None:
                self._entries[(scope, key)] = _Entry(fingerprint, now, request_id)
                return Begin(Outcome.NEW)
            if entry.response is None:
                return Begin(Outcome.IN_FLIGHT, original=entry.fingerprint)
            original = entry.fingerprint
            if (original.method, original.path) != (fingerprint.method, fingerprint.path):
                return Begin(Outcome.ENDPOINT_MISMATCH, original=original)
            if original.params != fingerprint.params:
                return Begin(Outcome.PARAMS_MISMATCH, original=original)
            return Begin(Outcome.REPLAY, saved=entry.response, original=original)

    def complete(self, scope: str, key: str, response: SavedResponse) -> None:
        with self._lock:
            entry = self._entries.get((scope, key))
            if entry is not None:
                entry.response = response

    def abandon(self, scope: str, key: str) -> None:
        """Forget an in-flight key whose request failed before execution (nothing is saved)."""
        with self._lock:
            entry = self._entries.get((scope, key))
            if entry is not None and entry.response is None:
                del self._entries[(scope, key)]

    def expire_all(self) -> None:
        """Simulate Stripe pruning every saved key (in-flight requests are left alone)."""
        with self._lock:
            for k in [k for k, e in self._entries.items() if e.response is not None]:
                del self._entries[k]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
