"""Replies with QuickBooks' JSON: exact decimals, compact, ``application/json;charset=UTF-8``."""

from __future__ import annotations

from typing import Any

from ..serving import Reply
from . import encoding

__all__ = ["JSON_CONTENT_TYPE", "Reply", "json_reply"]

JSON_CONTENT_TYPE = "application/json;charset=UTF-8"


def json_reply(status: int, payload: Any, headers: dict[str, str] | None = None) -> Reply:
    return Reply(
        status, {"Content-Type": JSON_CONTENT_TYPE, **(headers or {})}, encoding.dumps(payload)
    )
