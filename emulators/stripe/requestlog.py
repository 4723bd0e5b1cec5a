"""The log of /v1 requests the emulator received (admin endpoints are not logged)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ..requestlog import RequestLog as SharedRequestLog


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
    # Places in one sequence of arrivals and completions (RequestLog.tick): two requests
    # overlapped iff each arrived before the other completed.
    arrived: int = 0
    completed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class RequestLog(SharedRequestLog[LoggedRequest]):
    """The /v1 requests received, in the order they completed."""
