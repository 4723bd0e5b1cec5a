"""JSON in and out with exact decimals, and the emulator's replies.

Bodies are parsed with ``parse_float=Decimal`` so 0.1 stays 0.1; Decimals go back out as JSON
numbers with their exact text (the stdlib encoder would only write floats).
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from ..decimals import decimal_text
from ..serving import Reply

JSON_CONTENT_TYPE = "application/json; charset=UTF-8"


class BodyError(ValueError):
    """The request body is not JSON."""


def _constant(name: str) -> Any:
    raise BodyError(f"{name} is not a JSON number")


def loads(data: bytes) -> Any:
    try:
        return json.loads(data.decode("utf-8"), parse_float=Decimal, parse_constant=_constant)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BodyError(str(exc)) from exc


def _default(obj: Any) -> Any:
    raise TypeError(f"cannot encode {type(obj).__name__} as JSON")


def dumps(obj: Any) -> bytes:
    """Compact JSON; Decimals as exact numbers (marked, encoded as strings, then unquoted)."""
    marker = "\x00dec:"

    def mark(value: Any) -> Any:
        if isinstance(value, Decimal):
            return marker + decimal_text(value)
        if isinstance(value, dict):
            return {str(k): mark(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [mark(v) for v in value]
        return value

    text = json.dumps(mark(obj), separators=(",", ":"), default=_default)
    # json.dumps escapes the NUL of the marker as \u0000: swap each marked string for its number.
    escaped = json.dumps(marker)[1:-1]
    out: list[str] = []
    rest = text
    while True:
        start = rest.find('"' + escaped)
        if start < 0:
            out.append(rest)
            break
        end = rest.index('"', start + 1)
        out.append(rest[:start])
        out.append(rest[start + 1 + len(escaped) : end])
        rest = rest[end + 1 :]
    return "".join(out).encode("utf-8")


def json_reply(status: int, payload: Any, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, {"Content-Type": JSON_CONTENT_TYPE, **(headers or {})}, dumps(payload))
