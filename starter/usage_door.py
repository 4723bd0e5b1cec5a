"""The door for usage: validate a batch of events (Orb's ingestion shape), then store it;
and the Python API of marketplace links and dimension mappings (errors name the field).

A batch is all or nothing: if any event is malformed, none is stored and the error names every
bad line (up to MAX_PROBLEMS) and its field, so the sender fixes the file and sends it again;
events already stored by an earlier attempt then count as duplicates. What the result calls
accepted is committed: nothing accepted is ever dropped.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import pydantic

from billbridge.activities.store import MarketplaceSetupError, Store
from billbridge.core.models import format_validation_error
from billbridge.core.text import unstorable_text
from billbridge.core.usage import (
    MARKETPLACES,
    DimensionMapping,
    IngestResult,
    MarketplaceLink,
    UsageEvent,
)
from billbridge.starter.door import InvalidPayload
from billbridge.workflows.marketplace_metering import workflow_id as metering_workflow_id

MAX_PROBLEMS = 20


class InvalidUsage(InvalidPayload):
    """A batch refused at the door: `problems` has one "line N: field: message" per error."""

    def __init__(self, problems: list[str], total: int) -> None:
        self.problems = problems
        more = f"\n... and {total - len(problems)} more" if total > len(problems) else ""
        noun = "event" if total == 1 else "events"
        super().__init__(
            f"{total} malformed {noun}; nothing was stored:\n" + "\n".join(problems) + more
        )


def _parse(where: str, item: Any) -> UsageEvent | str:
    """The event, or its problem: "where: field: message" (one line per field)."""
    if isinstance(item, UsageEvent):
        return item
    if not isinstance(item, dict):
        return f"{where}: expected a JSON object (an Orb usage event)"
    unstorable = list(unstorable_text(item))
    if unstorable:
        return "\n".join(f"{where}: {line}" for line in unstorable)
    try:
        return UsageEvent.model_validate(item)
    except pydantic.ValidationError as err:
        lines = (
            format_validation_error(err)
            .replace("Value error, ", "")
            .replace("<root>: ", "")
            .splitlines()
        )
        return "\n".join(f"{where}: {line}" for line in lines)


def _validate(numbered: Iterable[tuple[str, Any]]) -> list[UsageEvent]:
    events: list[UsageEvent] = []
    problems: list[str] = []
    total = 0
    for where, item in numbered:
        parsed = _parse(where, item)
        if isinstance(parsed, UsageEvent):
            events.append(parsed)
            continue
        total += 1
        if len(problems) < MAX_PROBLEMS:
            problems.append(parsed)
    if total:
        raise InvalidUsage(problems, total)
    return events


def parse_usage_events(events: Iterable[Any]) -> list[UsageEvent]:
    """Events given as dicts (or UsageEvents); errors say "event N" (1-based).

    For exact quantities pass numbers as Decimal, int or decimal strings; a float is read
    through its shortest repr (what its JSON text was), never as its binary value.
    """
    return _validate((f"event {n}", item) for n, item in enumerate(events, start=1))


def parse_usage_jsonl(text: str) -> list[UsageEvent]:
    """One JSON event per line (blank lines skipped); numbers are read as Decimal, never float.
    Errors say "line N" (1-based, as an editor counts)."""

    def numbered() -> Iterable[tuple[str, Any]]:
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line, parse_float=Decimal)
            except json.JSONDecodeError as err:
                item = _NotJson(f"{err.msg} at column {err.colno}")
            yield f"line {n}", item

    events: list[UsageEvent] = []
    problems: list[str] = []
    total = 0
    for where, item in numbered():
        parsed = (
            f"{where}: not JSON: {item.reason}"
            if isinstance(item, _NotJson)
            else _parse(where, item)
        )
        if isinstance(parsed, UsageEvent):
            events.append(parsed)
            continue
        total += 1
        if len(problems) < MAX_PROBLEMS:
            problems.append(parsed)
    if total:
        raise InvalidUsage(problems, total)
    return events


class _NotJson:
    def __init__(self, reason: str) -> None:
        self.reason = reason


def ingest_usage(store: Store, events: Iterable[Any]) -> IngestResult:
    """Validate and store a batch of usage events; raises InvalidUsage (nothing stored)
    naming every malformed event and field. Events are deduplicated by idempotency_key."""
    return store.ingest_usage(parse_usage_events(events))


def ingest_usage_jsonl(store: Store, text: str) -> IngestResult:
    """`billbridge usage ingest events.jsonl`: the same, from JSON Lines."""
    return store.ingest_usage(parse_usage_jsonl(text))


def _refusal(what: str, err: pydantic.ValidationError) -> InvalidPayload:
    text = format_validation_error(err).replace("Value error, ", "").replace("<root>: ", "")
    return InvalidPayload(f"invalid {what}: " + "; ".join(text.splitlines()))


def check_one_marketplace(store: Store, link: MarketplaceLink) -> None:
    """One marketplace per customer: its MarketplaceMeteringWorkflow
    (`marketplace-metering/<customer id>`, the issue's id) reports to one. Raises
    InvalidPayload naming the `marketplace` field when the customer is linked to another."""
    others = [
        other.marketplace
        for other in store.marketplace_links(customer_id=link.customer_id)
        if other.marketplace != link.marketplace
    ]
    if others:
        raise InvalidPayload(
            f"invalid marketplace link: marketplace: customer {link.customer_id} is already "
            f"linked to {others[0]}; a customer reports to one marketplace (its metering "
            f"workflow is {metering_workflow_id(link.customer_id)}): "
            f"`billbridge marketplace unlink {link.customer_id} {others[0]}` first"
        )


def link_marketplace(store: Store, payload: dict[str, Any] | MarketplaceLink) -> MarketplaceLink:
    """Link a customer to its marketplace account (MarketplaceLink's fields); raises
    InvalidPayload naming the field (an account field missing, an unknown connection, a
    customer already linked to another marketplace...). Linking again to the same marketplace
    replaces the link. Store only: starter/metering_door.start_metering starts its metering."""
    try:
        link = MarketplaceLink.model_validate(payload)
    except pydantic.ValidationError as err:
        raise _refusal("marketplace link", err) from err
    check_one_marketplace(store, link)
    try:
        store.link_marketplace(link)
    except MarketplaceSetupError as err:
        raise InvalidPayload(f"invalid marketplace link: {err}") from err
    return link


def set_dimension_mapping(
    store: Store, connection_id: str, payload: dict[str, Any] | DimensionMapping
) -> DimensionMapping:
    """Map an event (a property summed, or a count) to a dimension of a marketplace
    connection, with its factor; raises InvalidPayload naming the field."""
    try:
        mapping = DimensionMapping.model_validate(payload)
    except pydantic.ValidationError as err:
        raise _refusal("dimension mapping", err) from err
    row = store.get_connection(connection_id)
    if row is None or row.provider not in MARKETPLACES:
        raise InvalidPayload(
            f"invalid dimension mapping: connection: {connection_id!r} is not a marketplace "
            "connection"
        )
    store.set_dimension_mapping(connection_id, mapping)
    return mapping
