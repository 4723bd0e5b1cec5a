"""Checks for single values of request bodies (strings, money, dates, references)."""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from . import errors

CENTS = Decimal("0.01")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def timestamp() -> str:
    """MetaData times: local time to the second with its offset, as QuickBooks writes them."""
    return datetime.now().astimezone().isoformat(timespec="seconds")


def string(
    body: dict[str, Any], key: str, *, max_length: int | None = None, required: bool = False
) -> str | None:
    """``body[key]`` as a string (None when absent), within ``max_length`` characters."""
    value = body.get(key)
    if value is None or (required and isinstance(value, str) and not value.strip()):
        if required:
            raise errors.required(key)
        return None
    if not isinstance(value, str):
        raise errors.invalid_property(f"{key} must be a string", key)
    if max_length is not None and len(value) > max_length:
        raise errors.business(
            f"String length specified does not match the supported length. Min:0 "
            f"Max:{max_length} supplied length:{len(value)} for {key}",
            key,
        )
    return value


def decimal(value: Any, element: str) -> Decimal:
    """A JSON number as a Decimal. Body numbers arrive as int or Decimal (parse_float=Decimal).

    UNCONFIRMED: numeric strings are taken too, as QuickBooks' (Java) JSON binder coerces them.
    """
    if isinstance(value, bool):
        raise errors.invalid_property(f"{element} must be a number", element)
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, str):
        try:
            result = Decimal(value.strip())
        except InvalidOperation as exc:
            raise errors.invalid_property(f"{element} must be a number", element) from exc
    else:
        raise errors.invalid_property(f"{element} must be a number", element)
    if not result.is_finite():
        raise errors.invalid_property(f"{element} must be a finite number", element)
    return result


def money(value: Any, element: str) -> Decimal:
    """An amount with at most two decimal places (12.500 is 12.50 and passes)."""
    amount = decimal(value, element)
    if amount != amount.quantize(CENTS):
        raise errors.business(f"{element} {value} has more than 2 decimal places", element)
    return amount


def iso_date(body: dict[str, Any], key: str) -> str | None:
    """A YYYY-MM-DD date (None when absent)."""
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, str) and _DATE.fullmatch(value):
        try:
            date.fromisoformat(value)
            return value
        except ValueError:
            pass
    raise errors.business(f"{key} {value!r} is not a date in the format YYYY-MM-DD", key)


def ref_value(body: dict[str, Any], key: str) -> str | None:
    """The ``value`` of a reference such as ``{"CustomerRef": {"value": "42"}}``."""
    ref = body.get(key)
    if ref is None:
        return None
    if not isinstance(ref, dict):
        raise errors.invalid_property(f"{key} must be an object with a value", key)
    value = ref.get("value")
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise errors.required(key)
    return value.strip()
