"""The log of requests the emulator received, with every secret redacted.

Tests read it to assert what a client sent, so it keeps parsed bodies; but it must never hold a
usable credential (logs get printed on failure): the Authorization header and any ``token``,
``code``, ``refresh_token``, ``access_token`` or ``client_secret`` value keep only a short prefix.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ..requestlog import RequestLog as SharedRequestLog
from ..requestlog import redact as shared_redact
from ..requestlog import redact_value as shared_redact_value

SECRET_KEYS = frozenset(
    {"token", "code", "refresh_token", "access_token", "client_secret", "id_token"}
)
PREFIX = 6


def redact_value(value: str) -> str:
    return shared_redact_value(value, PREFIX)


def redact(obj: Any) -> Any:
    """A copy of a parsed body with the values of SECRET_KEYS redacted, at any depth."""
    return shared_redact(obj, SECRET_KEYS, PREFIX)


def redact_authorization(header: str | None) -> str | None:
    """``Bearer eyJhbG…`` / ``Basic YmlsbG…``: the scheme stays, the credential is cut."""
    if header is None:
        return None
    scheme, _, credential = header.strip().partition(" ")
    if not credential:
        return redact_value(scheme)
    return f"{scheme} {redact_value(credential.strip())}"


@dataclass
class LoggedRequest:
    method: str
    path: str
    query: dict[str, str]  # the decoded query string (secrets redacted)
    body: Any  # the parsed body: JSON value, form dict or text; None when empty (redacted)
    authorization: str | None  # the Authorization header, redacted
    request_id: str | None  # the ``requestid`` query parameter
    status: int  # HTTP status sent (or executed, for drop_after); 0 = dropped before a response
    replayed: bool  # answered from the response saved for ``request_id``
    fault: str | None  # injected fault kinds that fired, e.g. "status", "delay+drop_after"
    at: float  # unix time the request arrived
    intuit_tid: str = ""  # the transaction id sent back in the ``intuit_tid`` header
    # Places in one sequence of arrivals and completions (RequestLog.tick): two requests
    # overlapped iff each arrived before the other completed.
    arrived: int = 0
    completed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class RequestLog(SharedRequestLog[LoggedRequest]):
    """The requests received (secrets redacted), in the order they completed."""
