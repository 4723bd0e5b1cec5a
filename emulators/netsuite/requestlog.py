"""The log of requests the emulator received, with every secret redacted."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ..requestlog import RequestLog as SharedRequestLog
from ..requestlog import redact as shared_redact
from ..requestlog import redact_value as shared_redact_value

SECRET_KEYS = frozenset({"client_assertion", "access_token"})


def redact_value(value: str) -> str:
    return shared_redact_value(value, 6)


def redact(obj: Any) -> Any:
    """A copy of a parsed body with the values of SECRET_KEYS redacted, at any depth."""
    return shared_redact(obj, SECRET_KEYS, 6)


def auth_kind(header: str | None) -> str | None:
    """``Bearer`` or ``OAuth`` (TBA): the scheme only; the credential is never logged."""
    if not header:
        return None
    return header.strip().partition(" ")[0]


@dataclass
class LoggedRequest:
    method: str
    path: str
    query: dict[str, str]
    body: Any  # parsed JSON, form dict (secrets redacted) or text; None when empty
    auth: str | None  # "Bearer", "OAuth" or None
    status: int  # HTTP status sent (executed, for drop_after); 0 = dropped before a response
    fault: str | None  # injected fault kinds that fired, e.g. "status", "delay+drop_after"
    at: float
    error_code: str | None = None  # o:errorCode of an error answer
    over_limit: bool = False  # refused by the concurrency limit
    in_flight: int = 0  # requests in flight at the account when this one was admitted
    # Places in one sequence of arrivals and completions (RequestLog.tick).
    arrived: int = 0
    completed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class RequestLog(SharedRequestLog[LoggedRequest]):
    """The requests received (secrets redacted), in the order they completed."""
