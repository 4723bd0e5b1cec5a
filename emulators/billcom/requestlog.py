"""The log of requests the emulator received, with every credential redacted.

Tests read it to assert what a client sent, but it must never hold a usable secret (logs get
printed on failure): the ``password`` of a login, the ``sessionId`` header and the ``devKey``
header or field keep only a short prefix.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ..requestlog import RequestLog as SharedRequestLog
from ..requestlog import redact as shared_redact
from ..requestlog import redact_value as shared_redact_value

SECRET_KEYS = frozenset({"password", "sessionid", "devkey"})


def redact_value(value: str) -> str:
    return shared_redact_value(value, 4)


def redact(obj: Any) -> Any:
    """A copy of a parsed body with the values of SECRET_KEYS redacted, at any depth."""
    return shared_redact(obj, SECRET_KEYS, 4)


@dataclass
class LoggedRequest:
    method: str
    path: str  # without the gateway's /connect prefix: /v3/invoices
    query: dict[str, str]
    body: Any  # parsed JSON (secrets redacted), the text if it was not JSON, None when empty
    session: str | None  # the sessionId header, redacted
    status: int  # HTTP status sent (or executed, for drop_after); 0 = dropped before a response
    code: str | None  # the BDC code of an error answer
    fault: str | None  # injected fault kinds that fired, e.g. "status", "delay+drop_after"
    at: float  # the emulator clock when the request arrived
    # Places in one sequence of arrivals and completions: two requests overlapped iff each
    # arrived before the other completed.
    arrived: int = 0
    completed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class RequestLog(SharedRequestLog[LoggedRequest]):
    """The requests received (secrets redacted), in the order they completed."""
