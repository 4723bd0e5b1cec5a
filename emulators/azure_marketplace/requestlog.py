"""The log of requests the emulator received, secrets redacted, and its JSON in and out.

Tests read the log to assert what a client sent (the token request included), so it keeps
parsed bodies; it never holds a usable credential: the Authorization header, `client_secret`,
`access_token`, `client_assertion` keep a short prefix only.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any

from ..requestlog import RequestLog as SharedRequestLog
from ..requestlog import redact as shared_redact
from ..requestlog import redact_value as shared_redact_value

SECRET_KEYS = frozenset({"client_secret", "access_token", "client_assertion", "refresh_token"})


def redact_value(value: str) -> str:
    return shared_redact_value(value, 6)


def redact(obj: Any) -> Any:
    """A copy of a parsed body with the values of SECRET_KEYS redacted, at any depth."""
    return shared_redact(obj, SECRET_KEYS, 6)


def redact_authorization(header: str | None) -> str | None:
    if header is None:
        return None
    scheme, _, credential = header.strip().partition(" ")
    return f"{scheme} {redact_value(credential.strip())}" if credential else redact_value(scheme)


class BodyError(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    raise BodyError(f"{name} is not a JSON number")


def loads(data: bytes) -> Any:
    """A JSON body with every non-integer number as a Decimal (0.1 stays 0.1)."""
    try:
        return json.loads(
            data.decode("utf-8"), parse_float=Decimal, parse_constant=_reject_constant
        )
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BodyError(str(exc)) from exc


def _default(obj: Any) -> Any:
    raise TypeError(f"cannot encode {type(obj).__name__} as JSON")


def dumps(obj: Any) -> bytes:
    """JSON with Decimals written as their own text ("5.0", "0.1"): exact, never via float."""
    return _encode(obj).encode("utf-8")


def _encode(obj: Any) -> str:
    if isinstance(obj, Decimal):
        if not obj.is_finite():
            raise ValueError(f"cannot encode {obj} as JSON")
        return str(obj)
    if isinstance(obj, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{_encode(v)}" for k, v in obj.items()) + "}"
    if isinstance(obj, list | tuple):
        return "[" + ",".join(_encode(v) for v in obj) + "]"
    return json.dumps(obj, default=_default)


@dataclass
class LoggedRequest:
    method: str
    path: str
    query: dict[str, str]
    body: Any  # parsed JSON or form (redacted); text when unreadable; None when empty
    authorization: str | None  # redacted
    tls: bool  # arrived over https
    request_id: str | None  # the x-ms-requestid header
    correlation_id: str | None  # the x-ms-correlationid header
    status: int  # 0 = dropped before a response
    fault: str | None
    at: float
    arrived: int = 0
    completed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class RequestLog(SharedRequestLog[LoggedRequest]):
    """The requests received (admin endpoints excluded), in the order they completed."""
