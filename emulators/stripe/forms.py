"""Decoding of Stripe's bracketed form encoding.

Stripe v1 takes ``application/x-www-form-urlencoded`` bodies (and query strings for GET/DELETE)
whose keys nest with brackets: ``metadata[k]=v``, ``lines[0][price_data][currency]=usd``,
``expand[]=lines``. The official SDK always indexes arrays (``expand[0]=...``); ``[]`` appends.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

_KEY_RE = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_SEGMENT_RE = re.compile(r"\[([^\[\]]*)\]")


class FormError(ValueError):
    """A form key that cannot be decoded (malformed brackets or conflicting shapes)."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


def parse_pairs(raw: str | bytes) -> list[tuple[str, str]]:
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    return parse_qsl(text, keep_blank_values=True)


def _segments(key: str) -> list[str]:
    match = _KEY_RE.match(key)
    if match is None:
        raise FormError(f"Invalid parameter name: {key}", key)
    return [match.group(1), *_SEGMENT_RE.findall(match.group(2))]


def _conflict(key: str) -> FormError:
    return FormError(f"Invalid value for {key}: conflicting parameter shapes", key)


def decode_form(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Build the nested parameter tree. Later duplicates of a scalar key win."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        segs = _segments(key)
        container: dict[str, Any] | list[Any] = root
        for i, seg in enumerate(segs):
            last = i == len(segs) - 1
            nxt_is_append = not last and segs[i + 1] == ""
            if isinstance(container, list):
                # Only reached through an `[]` segment: append a fresh element.
                if last:
                    container.append(value)
                    break
                child_new: dict[str, Any] | list[Any] = [] if nxt_is_append else {}
                container.append(child_new)
                container = child_new
                continue
            if seg == "" and i > 0:
                raise _conflict(key)
            if last:
                if isinstance(container.get(seg), dict | list):
                    raise _conflict(key)
                container[seg] = value
                break
            child = container.get(seg)
            if child is None:
                child = [] if nxt_is_append else {}
                container[seg] = child
            elif isinstance(child, str) or (nxt_is_append != isinstance(child, list)):
                raise _conflict(key)
            container = child
    return _listify(root)


def _listify(node: Any) -> Any:
    """Turn dicts keyed exactly "0".."n-1" into lists (how indexed arrays arrive)."""
    if isinstance(node, list):
        return [_listify(v) for v in node]
    if isinstance(node, dict):
        converted = {k: _listify(v) for k, v in node.items()}
        if converted and all(k.isdigit() and str(int(k)) == k for k in converted):
            indexes = sorted(int(k) for k in converted)
            if indexes == list(range(len(indexes))):
                return [converted[str(i)] for i in indexes]
        return converted
    return node


def decode(raw: str | bytes) -> dict[str, Any]:
    return decode_form(parse_pairs(raw))
