"""The log of requests the emulator received: parsed bodies (tests validate every one against
Google's discovery documents), the Authorization header cut to its scheme and a short prefix."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ..requestlog import RequestLog as SharedRequestLog


def redact_authorization(header: str | None) -> str | None:
    """``Bearer ya29.a…``: the scheme stays, at most 6 characters of the credential."""
    if header is None:
        return None
    scheme, _, credential = header.strip().partition(" ")
    credential = credential.strip()
    return f"{scheme} {credential[: min(6, len(credential) // 2)]}…"


@dataclass
class LoggedRequest:
    method: str
    path: str  # percent-decoded
    query: dict[str, list[str]]
    body: Any  # the parsed JSON body; the text when it is not JSON; None when empty
    authorization: str | None  # redacted
    status: int  # HTTP status sent; 0 = dropped before a response
    fault: str | None  # injected fault kinds that fired, e.g. "status", "delay"
    at: str  # RFC 3339, by the emulator's clock
    response: Any = None  # the parsed JSON reply

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class RequestLog(SharedRequestLog[LoggedRequest]):
    """The requests received, in the order they completed."""
