"""A thread-safe log of the requests an emulator received, generic over its entry type.

Handler threads append while a test reads, so every access holds one lock and readers get a
copy. Each emulator defines its own entry (what its protocol makes worth asserting on).
"""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

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
