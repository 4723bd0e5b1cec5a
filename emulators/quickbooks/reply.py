"""One HTTP answer, as the socket layer sends it (or drops it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import encoding

JSON_CONTENT_TYPE = "application/json;charset=UTF-8"


@dataclass
class Reply:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    drop: bool = False  # close the connection without sending anything


def json_reply(status: int, payload: Any, headers: dict[str, str] | None = None) -> Reply:
    return Reply(
        status, {"Content-Type": JSON_CONTENT_TYPE, **(headers or {})}, encoding.dumps(payload)
    )
