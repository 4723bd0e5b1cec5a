"""Reading Service Control v1 request bodies as Google's JSON parser does.

The field names are the proto3 JSON names of google.api.servicecontrol.v1 (the same as the
discovery document `servicecontrol.v1.json` shipped in google-api-python-client). A name the
message does not have, a value of the wrong JSON type, a timestamp that is not RFC 3339 or an
int64 that is not an integer fail the whole request with 400 INVALID_ARGUMENT, as Google's
front end does for any proto3 JSON it cannot parse ("Invalid JSON payload received. Unknown name
..."; the mapping rules: https://protobuf.dev/programming-guides/json/ — int64 is written as a
decimal string and read from a string or a number, Timestamp as RFC 3339 with "Z" or an offset).
Whether a parsed operation makes sense for Marketplace is decided elsewhere (api.py), per
operation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from .errors import GoogleError

# Known fields per message (servicecontrol.v1 discovery schemas; `extensions` is in the proto,
# google/api/servicecontrol/v1/operation.proto). Values of fields Marketplace does not use are
# taken as they are.
OPERATION_FIELDS = frozenset(
    {
        "operationId",
        "operationName",
        "consumerId",
        "startTime",
        "endTime",
        "labels",
        "metricValueSets",
        "logEntries",
        "importance",
        "userLabels",
        "quotaProperties",
        "resources",
        "traceSpans",
        "extensions",
    }
)
METRIC_VALUE_SET_FIELDS = frozenset({"metricName", "metricValues"})
METRIC_VALUE_FIELDS = frozenset(
    {
        "labels",
        "startTime",
        "endTime",
        "boolValue",
        "int64Value",
        "doubleValue",
        "stringValue",
        "distributionValue",
        "moneyValue",
    }
)
CHECK_REQUEST_FIELDS = frozenset(
    {"operation", "requestProjectSettings", "serviceConfigId", "skipActivationCheck"}
)
REPORT_REQUEST_FIELDS = frozenset({"operations", "serviceConfigId"})
IMPORTANCE = frozenset({"LOW", "HIGH", "DEBUG", "PROMOTED"})

_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$"
)
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def invalid(message: str) -> GoogleError:
    return GoogleError("INVALID_ARGUMENT", message)


def _unknown(obj: dict[str, Any], known: frozenset[str], where: str) -> None:
    for name in obj:
        if name not in known:
            raise invalid(
                f"Invalid JSON payload received. Unknown name \"{name}\" at '{where}': "
                "Cannot find field."
            )


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise invalid(f"Invalid JSON payload received. Expected an object at '{where}'.")
    return value


def _string(value: Any, where: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise invalid(f"Invalid value at '{where}' ({type(value).__name__}), expected a string.")
    return value


def _labels(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    labels = _object(value, where)
    for key, item in labels.items():
        _string(item, f"{where}[{key}]")
    return dict(labels)


def timestamp(value: Any, where: str) -> datetime | None:
    """An RFC 3339 timestamp (google-datetime) as an aware UTC datetime; None when absent."""
    if value is None:
        return None
    text = _string(value, where)
    match = _RFC3339.match(text)
    if match is None:
        raise invalid(
            f"Invalid value at '{where}' (type.googleapis.com/google.protobuf.Timestamp), "
            "Illegal timestamp format; timestamps must end with 'Z' or have a valid timezone "
            f'offset. "{text}"'
        )
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    fraction, zone = match.group(7), match.group(8)
    micro = int((fraction[1:] + "000000")[:6]) if fraction else 0
    try:
        at = datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)
    except ValueError as err:
        raise invalid(f"Invalid value at '{where}': {err}") from None
    if zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        at -= sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
    return at


def int64(value: Any, where: str) -> int:
    """A proto3 JSON int64: a decimal string (what Google's clients write) or a JSON number
    without a fraction."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise invalid(f"Invalid value at '{where}' (TYPE_INT64), {value!r}")
    text = str(value)
    if isinstance(value, float):
        if not value.is_integer():
            raise invalid(f"Invalid value at '{where}' (TYPE_INT64), {text}")
        text = str(int(value))
    if not re.fullmatch(r"-?\d+", text):
        raise invalid(f"Invalid value at '{where}' (TYPE_INT64), \"{text}\"")
    number = int(text)
    if not INT64_MIN <= number <= INT64_MAX:
        raise invalid(f"Invalid value at '{where}' (TYPE_INT64), out of range")
    return number


@dataclass(frozen=True)
class MetricValue:
    int64_value: int | None
    other_kind: str  # the value field used when it is not int64Value ("" when int64 or none)
    labels: dict[str, str]


@dataclass(frozen=True)
class MetricValueSet:
    metric_name: str
    values: tuple[MetricValue, ...]


@dataclass(frozen=True)
class Operation:
    raw: dict[str, Any]
    operation_id: str
    operation_name: str
    consumer_id: str
    start_time: datetime | None
    end_time: datetime | None
    metric_value_sets: tuple[MetricValueSet, ...]
    user_labels: dict[str, str] = field(default_factory=dict)

    def content(self) -> tuple[Any, ...]:
        """What makes two operations with one operationId the same report."""
        return (
            self.consumer_id,
            self.start_time,
            self.end_time,
            tuple(
                (s.metric_name, tuple((v.int64_value, v.other_kind) for v in s.values))
                for s in self.metric_value_sets
            ),
        )


def _metric_value(value: Any, where: str) -> MetricValue:
    obj = _object(value, where)
    _unknown(obj, METRIC_VALUE_FIELDS, where)
    timestamp(obj.get("startTime"), f"{where}.start_time")
    timestamp(obj.get("endTime"), f"{where}.end_time")
    kinds = [k for k in ("boolValue", "int64Value", "doubleValue", "stringValue",
                         "distributionValue", "moneyValue") if k in obj]  # fmt: skip
    if len(kinds) > 1:  # a oneof: one value per MetricValue
        raise invalid(f"Invalid JSON payload at '{where}': oneof field 'value' is already set.")
    labels = _labels(obj.get("labels"), f"{where}.labels")
    if kinds == ["int64Value"]:
        return MetricValue(int64(obj["int64Value"], f"{where}.int64_value"), "", labels)
    return MetricValue(None, kinds[0] if kinds else "", labels)


def _metric_value_set(value: Any, where: str) -> MetricValueSet:
    obj = _object(value, where)
    _unknown(obj, METRIC_VALUE_SET_FIELDS, where)
    values = obj.get("metricValues") or []
    if not isinstance(values, list):
        raise invalid(f"Invalid value at '{where}.metric_values', expected a list.")
    return MetricValueSet(
        _string(obj.get("metricName"), f"{where}.metric_name"),
        tuple(_metric_value(v, f"{where}.metric_values[{i}]") for i, v in enumerate(values)),
    )


def operation(value: Any, where: str) -> Operation:
    obj = _object(value, where)
    _unknown(obj, OPERATION_FIELDS, where)
    importance = obj.get("importance")
    if importance is not None and importance not in IMPORTANCE:
        raise invalid(f"Invalid value at '{where}.importance', \"{importance}\"")
    sets = obj.get("metricValueSets") or []
    if not isinstance(sets, list):
        raise invalid(f"Invalid value at '{where}.metric_value_sets', expected a list.")
    _labels(obj.get("labels"), f"{where}.labels")
    return Operation(
        raw=obj,
        operation_id=_string(obj.get("operationId"), f"{where}.operation_id"),
        operation_name=_string(obj.get("operationName"), f"{where}.operation_name"),
        consumer_id=_string(obj.get("consumerId"), f"{where}.consumer_id"),
        start_time=timestamp(obj.get("startTime"), f"{where}.start_time"),
        end_time=timestamp(obj.get("endTime"), f"{where}.end_time"),
        metric_value_sets=tuple(
            _metric_value_set(s, f"{where}.metric_value_sets[{i}]") for i, s in enumerate(sets)
        ),
        user_labels=_labels(obj.get("userLabels"), f"{where}.user_labels"),
    )


def check_request(body: Any) -> Operation:
    obj = _object(body, "")
    _unknown(obj, CHECK_REQUEST_FIELDS, "")
    return operation(obj.get("operation") or {}, "operation")


def report_request(body: Any) -> list[Operation]:
    obj = _object(body, "")
    _unknown(obj, REPORT_REQUEST_FIELDS, "")
    ops = obj.get("operations") or []
    if not isinstance(ops, list):
        raise invalid("Invalid value at 'operations', expected a list.")
    return [operation(op, f"operations[{i}]") for i, op in enumerate(ops)]
