"""The log of /v1 requests the emulator received (admin endpoints are not logged)."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class LoggedRequest:
    method: str
    path: str
    query: dict[str, Any]  # the decoded query string
    params: dict[str, Any]  # decoded parameters: the body for POST, the query for GET/DELETE
    idempotency_key: str | None
    status: int  # HTTP status sent (or executed, for drop_after); 0 = dropped before a response
    replayed: bool  # answered from a saved idempotent response
    fault: str | None  # injected fault kinds that fired, e.g. "status", "delay+drop_after"
    at: float  # unix time the request arrived
    request_id: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class RequestLog:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[LoggedRequest] = []

    def append(self, entry: LoggedRequest) -> None:
        with self._lock:
            self._entries.append(entry)

    def snapshot(self) -> list[LoggedRequest]:
        with self._lock:
            return list(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
