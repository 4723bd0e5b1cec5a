"""JSON in and out with exact decimals.

Request bodies are parsed with ``parse_float=Decimal`` so 0.1 stays 0.1, and Decimals are written
back as JSON numbers with their exact text (``12.5``, ``1234.56``): the stdlib encoder can only
emit floats, which would put binary noise such as ``0.30000000000000004`` on the wire.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from ..decimals import decimal_text


class BodyError(ValueError):
    """The request body is not the JSON (or text) the endpoint needs."""


def _reject_constant(name: str) -> Any:
    raise BodyError(f"{name} is not a JSON number")


def loads(data: bytes) -> Any:
    """Parse a JSON request body; every non-integer number becomes a Decimal."""
    try:
        return json.loads(
            data.decode("utf-8"), parse_float=Decimal, parse_constant=_reject_constant
        )
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BodyError(str(exc)) from exc


def _encode(obj: Any, out: list[str]) -> None:
    if obj is None:
        out.append("null")
    elif obj is True:
        out.append("true")
    elif obj is False:
        out.append("false")
    elif isinstance(obj, Decimal):
        if not obj.is_finite():
            raise ValueError(f"cannot encode {obj} as JSON")
        out.append(decimal_text(obj))
    elif isinstance(obj, int | float | str):
        out.append(json.dumps(obj))
    elif isinstance(obj, dict):
        out.append("{")
        for i, (key, value) in enumerate(obj.items()):
            if i:
                out.append(",")
            out.append(json.dumps(str(key)))
            out.append(":")
            _encode(value, out)
        out.append("}")
    elif isinstance(obj, list | tuple):
        out.append("[")
        for i, value in enumerate(obj):
            if i:
                out.append(",")
            _encode(value, out)
        out.append("]")
    else:
        raise TypeError(f"cannot encode {type(obj).__name__} as JSON")


def dumps(obj: Any) -> bytes:
    """Compact JSON (as QuickBooks sends it) with Decimals as exact numbers."""
    out: list[str] = []
    _encode(obj, out)
    return "".join(out).encode("utf-8")
