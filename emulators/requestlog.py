"""A thread-safe log of the requests an emulator received, generic over its entry type.

Handler threads append while a test reads, so every access holds one lock and readers get a
copy. Each emulator defines its own entry (what its protocol makes worth asserting on).
"""

from __future__ import annotations

import threading
from collections.abc import Collection
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class RequestLog(Generic[T]):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[T] = []
        self._ticks = 0

    def tick(self) -> int:
        """The next place in the sequence of request arrivals and completions (two requests
        overlapped when one arrived before the other completed)."""
        with self._lock:
            self._ticks += 1
            return self._ticks

    def append(self, entry: T) -> None:
        with self._lock:
            self._entries.append(entry)

    def snapshot(self) -> list[T]:
        """The entries so far, oldest first (a copy: later requests do not change it)."""
        with self._lock:
            return list(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def redact_value(value: str, keep: int = 6) -> str:
    """The first `keep` characters and an ellipsis (never more than half of a short value):
    enough to tell two secrets apart in a failing test's output, never enough to use one."""
    return value[: min(keep, len(value) // 2)] + "…"


def redact(obj: Any, secret_keys: Collection[str], keep: int = 6) -> Any:
    """A copy of a parsed body with the values of `secret_keys` (lower case, compared without
    case) redacted, at any depth."""
    if isinstance(obj, dict):
        return {
            key: redact_value(str(value), keep)
            if str(key).lower() in secret_keys and value is not None
            else redact(value, secret_keys, keep)
            for key, value in obj.items()
        }
    if isinstance(obj, list):
        return [redact(value, secret_keys, keep) for value in obj]
    return obj
