"""Input checks against botocore's own model of the service, as AWS's front end applies them.

The constraints (required members, string lengths and patterns, list sizes, integer ranges,
enums) are read from botocore/data/meteringmarketplace/2016-01-14/service-2.json, the model AWS
generates its SDKs from, so the emulator refuses what AWS's validation layer refuses: a
ValidationException listing every violation, member paths in lowerCamelCase as Coral writes them
(``usageRecords.1.member.quantityAsDecimal``). A JSON value of the wrong type is a
SerializationException. Unknown members are ignored, as AWS JSON services ignore them
(https://smithy.io/2.0/aws/protocols/aws-json-1_1-protocol.html: servers accept unknown members
for forward compatibility) — the tests, not the emulator, catch a misspelled member.
UNCONFIRMED: the exact message wording for this service.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from botocore.loaders import Loader
from botocore.model import ListShape, OperationModel, ServiceModel, Shape, StructureShape

from . import errors

SERVICE = "meteringmarketplace"


@cache
def service_model() -> ServiceModel:
    return ServiceModel(Loader().load_service_model(SERVICE, "service-2"), SERVICE)


def operation(name: str) -> OperationModel:
    return service_model().operation_model(name)


def _camel(name: str) -> str:
    return name[:1].lower() + name[1:]


def check_input(operation_name: str, body: Any) -> None:
    """Raise ValidationException / SerializationException when ``body`` breaks the model."""
    shape = operation(operation_name).input_shape
    assert shape is not None
    problems: list[str] = []
    if not isinstance(body, dict):
        raise errors.serialization("Start of structure or map found where not expected.")
    _check(shape, body, "", problems)
    if problems:
        raise errors.validation(problems)


def _check(shape: Shape, value: Any, path: str, problems: list[str]) -> None:
    kind = shape.type_name
    where = path or "request"
    if kind == "structure":
        assert isinstance(shape, StructureShape)
        if not isinstance(value, dict):
            raise errors.serialization(f"Expected a structure at '{where}'")
        for name in shape.required_members:
            if value.get(name) is None:
                problems.append(
                    f"Value null at '{_join(path, name)}' failed to satisfy constraint: "
                    "Member must not be null"
                )
        for name, member in shape.members.items():
            if value.get(name) is not None:
                _check(member, value[name], _join(path, name), problems)
        return
    if kind == "list":
        assert isinstance(shape, ListShape)
        if not isinstance(value, list):
            raise errors.serialization(f"Expected a list at '{where}'")
        _range(shape, len(value), value, path, problems, "have length")
        for index, item in enumerate(value, start=1):
            if item is not None:
                _check(shape.member, item, f"{path}.{index}.member", problems)
        return
    if kind == "string":
        if not isinstance(value, str):
            raise errors.serialization(f"Expected a string at '{where}'")
        _range(shape, len(value), value, path, problems, "have length")
        pattern = shape.metadata.get("pattern")
        if pattern is not None and re.search(pattern, value) is None:
            problems.append(
                f"Value '{value}' at '{path}' failed to satisfy constraint: "
                f"Member must satisfy regular expression pattern: {pattern}"
            )
        enum = shape.metadata.get("enum")
        if enum and value not in enum:
            problems.append(
                f"Value '{value}' at '{path}' failed to satisfy constraint: "
                f"Member must satisfy enum value set: [{', '.join(enum)}]"
            )
        return
    if kind in ("integer", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise errors.serialization(f"Expected an integer at '{where}'")
        _range(shape, value, value, path, problems, "be")
        return
    if kind == "timestamp":
        # awsJson sends timestamps as epoch seconds (a JSON number).
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise errors.serialization(f"Expected a timestamp (epoch seconds) at '{where}'")
        return
    if kind == "boolean" and not isinstance(value, bool):
        raise errors.serialization(f"Expected a boolean at '{where}'")


def _range(shape: Shape, size: int, value: Any, path: str, problems: list[str], verb: str) -> None:
    low, high = shape.metadata.get("min"), shape.metadata.get("max")
    shown = value if not isinstance(value, list) else "[...]"
    if low is not None and size < low:
        problems.append(
            f"Value '{shown}' at '{path}' failed to satisfy constraint: "
            f"Member must {verb} greater than or equal to {low}"
        )
    if high is not None and size > high:
        problems.append(
            f"Value '{shown}' at '{path}' failed to satisfy constraint: "
            f"Member must {verb} less than or equal to {high}"
        )


def _join(path: str, name: str) -> str:
    return f"{path}.{_camel(name)}" if path else _camel(name)
