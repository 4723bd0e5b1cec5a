"""Parameter validation with Stripe's error shapes.

Each endpoint declares an :class:`Obj` of the parameters it accepts; coercion turns the decoded
form tree (all strings) into typed values and reports the first problem the way Stripe does:
``parameter_unknown`` / ``parameter_missing`` / ``parameter_invalid_integer`` /
``parameter_invalid_empty`` with ``param`` naming the full bracketed path, e.g.
``lines[3][price_data][currency]``.

An empty string is Stripe's "unset" marker: an optional field given ``""`` coerces to ``None``
(for metadata: "clear all keys"); a required or non-nullable field given ``""`` is an error.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from . import errors

_INT_RE = re.compile(r"^-?\d+$")
# The SDK encodes Decimal with str(), which gives exponent notation for very small/large values
# ("1E-12"); that is accepted here (assumed to be accepted by Stripe too: UNCONFIRMED).
_DEC_RE = re.compile(r"^-?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$")

MAX_DECIMAL_PLACES = 12
METADATA_MAX_KEYS = 50
METADATA_MAX_KEY_LENGTH = 40
METADATA_MAX_VALUE_LENGTH = 500


def join(path: str, key: str | int) -> str:
    return str(key) if not path else f"{path}[{key}]"


class Spec:
    nullable: bool = True

    def coerce(self, value: Any, path: str) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError


class AnyValue(Spec):
    """Accepted and kept as decoded (for parameters the emulator does not model)."""

    def coerce(self, value: Any, path: str) -> Any:
        return value


def _scalar(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise errors.invalid(f"Invalid {path}: expected a string value, not a hash or array", path)
    return value


class Str(Spec):
    def __init__(self, max_length: int | None = 5000, nullable: bool = True) -> None:
        self.max_length = max_length
        self.nullable = nullable

    def coerce(self, value: Any, path: str) -> str:
        text = _scalar(value, path)
        if self.max_length is not None and len(text) > self.max_length:
            raise errors.invalid(
                f"Invalid string: {text[:40]}...; must be at most {self.max_length} characters",
                path,
            )
        return text


class Enum(Spec):
    def __init__(self, *choices: str, nullable: bool = True) -> None:
        self.choices = choices
        self.nullable = nullable

    def coerce(self, value: Any, path: str) -> str:
        text = _scalar(value, path)
        if text not in self.choices:
            opts = list(self.choices)
            listed = ", ".join(opts[:-1]) + (", or " if len(opts) > 2 else " or ") + opts[-1]
            raise errors.invalid(f"Invalid {path}: must be one of {listed}", path)
        return text


class Int(Spec):
    def __init__(
        self, minimum: int | None = None, maximum: int | None = None, nullable: bool = True
    ) -> None:
        self.minimum = minimum
        self.maximum = maximum
        self.nullable = nullable

    def coerce(self, value: Any, path: str) -> int:
        text = _scalar(value, path)
        if not _INT_RE.match(text):
            raise errors.invalid(f"Invalid integer: {text}", path, "parameter_invalid_integer")
        number = int(text)
        if self.minimum is not None and number < self.minimum:
            raise errors.invalid(
                f"This value must be greater than or equal to {self.minimum}.", path
            )
        if self.maximum is not None and number > self.maximum:
            raise errors.invalid(f"This value must be less than or equal to {self.maximum}.", path)
        return number


class Bool(Spec):
    def coerce(self, value: Any, path: str) -> bool:
        text = _scalar(value, path)
        if text == "true":
            return True
        if text == "false":
            return False
        # Unconfirmed: Stripe's exact wording/code for a malformed boolean.
        raise errors.invalid(f"Invalid boolean: {text}", path)


class Dec(Spec):
    """A decimal string (``unit_amount_decimal``, ``quantity_decimal``): at most 12 places."""

    def __init__(self, non_negative: bool = True) -> None:
        self.non_negative = non_negative

    def coerce(self, value: Any, path: str) -> Decimal:
        text = _scalar(value, path)
        if not _DEC_RE.match(text):
            # Unconfirmed: Stripe's exact wording/code for a malformed decimal.
            raise errors.invalid(f"Invalid decimal: {text}", path)
        try:
            number = Decimal(text)
        except InvalidOperation as exc:  # pragma: no cover - regex guards this
            raise errors.invalid(f"Invalid decimal: {text}", path) from exc
        exponent = number.as_tuple().exponent
        if isinstance(exponent, int) and -exponent > MAX_DECIMAL_PLACES:
            raise errors.invalid(
                f"Invalid decimal: {text}; must have at most {MAX_DECIMAL_PLACES} decimal places",
                path,
            )
        if self.non_negative and number < 0:
            raise errors.invalid("This value must be greater than or equal to 0.", path)
        return number


class Metadata(Spec):
    """``metadata[k]=v``; ``v == ""`` unsets k (returned as None); ``metadata=""`` clears all."""

    def coerce(self, value: Any, path: str) -> dict[str, str | None]:
        if isinstance(value, list):  # "metadata[0]=x" decodes as a list
            value = {str(i): v for i, v in enumerate(value)}
        if not isinstance(value, dict):
            raise errors.invalid("Invalid object", path)
        out: dict[str, str | None] = {}
        for key, raw in value.items():
            sub = join(path, key)
            if not isinstance(raw, str):
                raise errors.invalid(
                    f"Invalid value for metadata key {key!r}: metadata values must be strings",
                    sub,
                )
            if len(key) > METADATA_MAX_KEY_LENGTH:
                raise errors.invalid(
                    f"Metadata keys can have up to {METADATA_MAX_KEY_LENGTH} characters, but you "
                    f"passed in a key that is {len(key)} characters. Invalid key: {key}",
                    sub,
                )
            if len(raw) > METADATA_MAX_VALUE_LENGTH:
                raise errors.invalid(
                    f"Metadata values can have up to {METADATA_MAX_VALUE_LENGTH} characters, but "
                    f"you passed in a value that is {len(raw)} characters. Invalid value: {raw}",
                    sub,
                )
            out[key] = raw if raw != "" else None
        return out


class ListOf(Spec):
    def __init__(self, item: Spec, max_items: int | None = None) -> None:
        self.item = item
        self.max_items = max_items

    def coerce(self, value: Any, path: str) -> list[Any]:
        if isinstance(value, dict) and all(k.isdigit() for k in value):
            value = [value[k] for k in sorted(value, key=int)]
        if not isinstance(value, list):
            raise errors.invalid("Invalid array", path)
        if self.max_items is not None and len(value) > self.max_items:
            raise errors.invalid(
                f"Invalid array: {path} must have at most {self.max_items} elements", path
            )
        out: list[Any] = []
        for i, item in enumerate(value):
            sub = join(path, i)
            if item == "":
                raise errors.invalid_empty(sub)
            out.append(self.item.coerce(item, sub))
        return out


class Obj(Spec):
    def __init__(
        self,
        fields: dict[str, Spec],
        required: tuple[str, ...] = (),
        nullable: bool = True,
    ) -> None:
        self.fields = fields
        self.required = required
        self.nullable = nullable

    def coerce(self, value: Any, path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise errors.invalid("Invalid object", path or None)
        out: dict[str, Any] = {}
        for key, raw in value.items():
            sub = join(path, key)
            spec = self.fields.get(key)
            if spec is None:
                raise errors.unknown(sub)
            if raw == "":
                if key in self.required or not spec.nullable:
                    raise errors.invalid_empty(sub)
                out[key] = None
                continue
            out[key] = spec.coerce(raw, sub)
        for key in self.required:
            if key not in out:
                raise errors.missing(join(path, key))
        return out


def endpoint(fields: dict[str, Spec], required: tuple[str, ...] = ()) -> Obj:
    """Top-level parameters; ``expand`` is accepted everywhere."""
    return Obj({"expand": ListOf(Str()), **fields}, required)


# Shared sub-shapes -------------------------------------------------------------------------

PERIOD = Obj({"start": Int(minimum=0), "end": Int(minimum=0)}, required=("start", "end"))
LIST_PARAMS: dict[str, Spec] = {
    "limit": Int(1, 100),
    "starting_after": Str(nullable=False),
    "ending_before": Str(nullable=False),
    "created": AnyValue(),
}
