"""Properties of usage: what the door stores is counted exactly once per customer, dimension and
hour, and what the hours report adds up to what was ingested; malformed usage is refused at the
usage door naming the event and field, and nothing of its batch is stored.

Events are generated in Orb's ingestion shape (tests/billing_strategies.py): several customers
(sent by id or by external id), event names mapped to dimensions (a property summed, or events
counted, times a unit factor), fractional and negative quantities as JSON numbers or decimal
text, non-numeric values, timestamps in several zones and right at hour boundaries.
"""

from __future__ import annotations

import json
import re
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal, localcontext
from itertools import accumulate
from typing import Any

import pytest
from billing_strategies import (
    CHARACTERS,
    USAGE_HOURS,
    USAGE_START,
    examples,
    ids,
    usage_numbers,
    usage_timestamps,
)
from hypothesis import example, given, settings
from hypothesis import strategies as st
from stores import throwaway_postgres  # noqa: F401 (the postgres_url fixture)
from test_properties_door import snapshot

from billbridge.activities.metering import ingested_to_date
from billbridge.activities.store import Store
from billbridge.core.metering import hour_quantity
from billbridge.core.models import Customer
from billbridge.core.usage import DimensionMapping, MarketplaceLink
from billbridge.starter.usage_door import InvalidUsage, ingest_usage, ingest_usage_jsonl

HOUR = timedelta(hours=1)
END = USAGE_START + USAGE_HOURS * HOUR
FACTORS = tuple(Decimal(f) for f in ("1", "0.001", "100", "0.000000001", "2.5"))
names = st.text(CHARACTERS, min_size=1, max_size=12)
# Summed properties (and one never mapped): numbers, taken back now and then, and values that
# are no number at all (not counted).
PROPERTIES = st.dictionaries(
    st.sampled_from(("quantity", "bytes", "region")),
    usage_numbers(negative=False)
    | usage_numbers(negative=True)
    | st.sampled_from(("n/a", True, None)),
    max_size=3,
)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def usage_store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Store]:
    """One store per database for the module: each example's customers and keys are its own
    (a fresh prefix), so examples never count each other's events."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('usage') / 'billbridge.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    store = Store(url)
    yield store
    store.close()


# --------------------------------------------------------------------------- conservation


@st.composite
def usage_batches(draw: st.DrawFn) -> tuple[list[Customer], list[DimensionMapping], list[Any]]:
    """(customers, dimension mappings, events), ids under a prefix of the example's own."""
    prefix = uuid.uuid4().hex[:8]
    customers = [
        Customer(
            id=f"{prefix}/{cid}", external_customer_id=f"{prefix}/ext/{cid}", name=cid, email=""
        )
        for cid in draw(st.lists(ids, min_size=1, max_size=3, unique=True))
    ]
    event_names = draw(st.lists(names, min_size=1, max_size=3, unique=True))
    mappings = [
        DimensionMapping(
            event_name=name,
            property=draw(st.sampled_from((None, "quantity", "bytes"))),
            dimension=draw(names),
            factor=draw(st.sampled_from(FACTORS)),
        )
        for name in event_names
        for _ in range(draw(st.integers(1, 2)))
    ]
    events = []
    for n in range(draw(st.integers(1, 30))):
        customer = draw(st.sampled_from(customers))
        sender = (
            {"customer_id": customer.id}
            if draw(st.booleans())
            else {"external_customer_id": customer.external_customer_id}
        )
        events.append(
            {
                "idempotency_key": f"{prefix}/{n}",
                **sender,
                "event_name": draw(st.sampled_from(event_names)),
                "timestamp": draw(usage_timestamps()),
                "properties": draw(PROPERTIES),
            }
        )
    return customers, mappings, events


def _belongs(event: dict[str, Any], customer: Customer) -> bool:
    return (
        event.get("customer_id") == customer.id
        or event.get("external_customer_id") == customer.external_customer_id
    )


def _number(value: Any) -> Decimal | None:
    """What counts as a quantity (core/usage.py's rule, read from its docs): a JSON number or
    decimal text, never a boolean."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | Decimal):
        return Decimal(value)
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]+(\.[0-9]+)?", value):
        return Decimal(value)
    return None


def expected_totals(
    customer: Customer, mappings: list[DimensionMapping], events: list[dict[str, Any]]
) -> dict[datetime, dict[str, Decimal]]:
    """Per UTC hour and dimension, computed apart from the store: each event in the hour its
    timestamp falls in, its property (or 1 per event) times the factor, exactly."""
    hours: dict[datetime, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    with localcontext() as ctx:
        ctx.prec = 200
        for event in events:
            if not _belongs(event, customer):
                continue
            moment = datetime.fromisoformat(event["timestamp"]).astimezone(UTC)
            hour = moment.replace(minute=0, second=0, microsecond=0)
            for mapping in mappings:
                if mapping.event_name != event["event_name"]:
                    continue
                amount = (
                    Decimal(1)
                    if mapping.property is None
                    else _number(event["properties"].get(mapping.property))
                )
                if amount is not None:
                    hours[hour][mapping.dimension] += amount * mapping.factor
    return hours


def reports(ingested_to_date: list[Decimal], *, integers: bool) -> list[Decimal]:
    """The cumulative rule hour after hour (core/metering.py), every report delivered."""
    reported, sent = Decimal(0), []
    for ingested in ingested_to_date:
        sent.append(hour_quantity(ingested, reported, integers=integers))
        reported += sent[-1]
    return sent


@settings(max_examples=examples(60))
@given(batch=usage_batches())
def test_every_hour_counts_its_events_exactly_and_the_reports_add_up(
    usage_store: Store, batch: tuple[list[Customer], list[DimensionMapping], list[Any]]
) -> None:
    customers, mappings, events = batch
    usage_store.upsert_customers(customers)
    accepted = ingest_usage(usage_store, events)
    assert (accepted.accepted, accepted.duplicates) == (len(events), 0)
    again = ingest_usage(usage_store, events)  # the same batch sent twice counts once
    assert (again.accepted, again.duplicates, again.conflicts) == (0, len(events), ())
    dimensions = sorted({m.dimension for m in mappings})
    for customer in customers:
        expected = expected_totals(customer, mappings, events)
        hourly = usage_store.hourly_usage_totals(customer.id, USAGE_START, END, mappings)
        assert sorted(hourly) == [USAGE_START + n * HOUR for n in range(USAGE_HOURS)]
        for hour, aggregate in hourly.items():
            assert aggregate.totals == {d: expected[hour][d] for d in dimensions}, hour
        whole = usage_store.usage_totals(customer.id, USAGE_START, END, mappings)
        link = MarketplaceLink(
            customer_id=customer.id,
            marketplace="azure",
            connection_id="azure",
            account={"resource_id": "resource", "plan_id": "plan"},
        )
        for dimension in dimensions:
            cumulative = list(accumulate(hourly[h].totals[dimension] for h in sorted(hourly)))
            assert whole[dimension] == cumulative[-1]
            # What the metering activity reads as ingested by the end (activities/metering.py).
            assert ingested_to_date(usage_store, link, mappings, dimension, END) == cumulative[-1]
            # What the hours report: everything ingested, or (integers only) all but a
            # remainder below 1 that rides along; usage taken back is netted, never sent
            # negative, so the reports reach the highest the usage ever stood at.
            highest = max(Decimal(0), *cumulative)
            exact = reports(cumulative, integers=False)
            assert min(exact) >= 0 and sum(exact) == highest
            whole_units = reports(cumulative, integers=True)
            assert all(r >= 0 and r == r.to_integral_value() for r in whole_units)
            assert 0 <= highest - sum(whole_units) < 1


# --------------------------------------------------------------------------- the usage door


def _valid_event(n: int) -> dict[str, Any]:
    return {
        "idempotency_key": f"refused/{n}",
        "customer_id": "cust_refused",
        "event_name": "api_call",
        "timestamp": "2026-03-01T10:15:00Z",
        "properties": {"quantity": "1.5"},
    }


BrokenEvent = tuple[Any, str]  # (the event, what the refusal must say after "event N: ")


def _without(field: str) -> Callable[[dict[str, Any]], BrokenEvent]:
    return lambda event: ({k: v for k, v in event.items() if k != field}, f"{field}: Field")


BREAKAGES: dict[str, Callable[[dict[str, Any]], BrokenEvent]] = {
    "no key": _without("idempotency_key"),
    "no name": _without("event_name"),
    "no timestamp": _without("timestamp"),
    "empty key": lambda e: ({**e, "idempotency_key": ""}, "idempotency_key: "),
    "two customers": lambda e: (
        {**e, "external_customer_id": "acme"},
        "customer_id, external_customer_id: give exactly one",
    ),
    "no customer": lambda e: (
        {k: v for k, v in e.items() if k != "customer_id"},
        "customer_id, external_customer_id: give exactly one",
    ),
    "empty customer": lambda e: ({**e, "customer_id": ""}, "customer_id: empty"),
    "no zone": lambda e: ({**e, "timestamp": "2026-03-01T10:15:00"}, "timestamp: "),
    "epoch seconds": lambda e: ({**e, "timestamp": 1772359200}, "timestamp: expected an ISO"),
    "not a time": lambda e: ({**e, "timestamp": "yesterday"}, "timestamp: "),
    "nested property": lambda e: ({**e, "properties": {"q": {"n": 1}}}, "properties: q: nested"),
    "listed property": lambda e: ({**e, "properties": {"q": [1]}}, "properties: q: nested"),
    "infinite": lambda e: ({**e, "properties": {"q": Decimal("Infinity")}}, "properties: q: "),
    "not a number": lambda e: ({**e, "properties": {"q": Decimal("NaN")}}, "properties: q: "),
    "unknown field": lambda e: ({**e, "quantity": 3}, "quantity: Extra inputs"),
    "not an object": lambda e: (["an", "event"], "expected a JSON object"),
    "surrogate": lambda e: ({**e, "customer_id": "cust\udc00"}, "customer_id: lone surrogate"),
    "NUL in a name": lambda e: ({**e, "event_name": "api\x00"}, "event_name: NUL"),
    "NUL in a key": lambda e: ({**e, "properties": {"q\x00": 1}}, "properties: key 'q\\x00': NUL"),
}


@st.composite
def batches_with_one_malformed_event(draw: st.DrawFn) -> tuple[list[Any], int, str]:
    """(events, the 1-based position of the malformed one, what its refusal says)."""
    size = draw(st.integers(1, 25))
    position = draw(st.integers(1, size))
    events: list[Any] = [_valid_event(n) for n in range(size)]
    events[position - 1], named = BREAKAGES[draw(st.sampled_from(sorted(BREAKAGES)))](
        events[position - 1]
    )
    return events, position, named


def _jsonl(events: list[Any]) -> str:
    """One event per line; Decimals as JSON numbers (Infinity, NaN: Python's json tokens)."""

    def number(value: Decimal) -> Any:
        return float(value) if not value.is_finite() else json.loads(str(value), parse_float=str)

    return "".join(json.dumps(event, default=number) + "\n" for event in events)


def _one_broken(breakage: str) -> tuple[list[Any], int, str]:
    event, named = BREAKAGES[breakage](_valid_event(1))
    return [_valid_event(0), event], 2, named


@settings(max_examples=examples(100))
@given(batch=batches_with_one_malformed_event(), as_jsonl=st.booleans())
# Found by this property: a lone surrogate passed the usage door and crashed the store with
# UnicodeEncodeError; a NUL in a customer id crashed PostgreSQL's (DataError).
@example(batch=_one_broken("surrogate"), as_jsonl=True)
@example(batch=_one_broken("NUL in a name"), as_jsonl=False)
def test_a_batch_with_a_malformed_event_is_refused_naming_it_and_nothing_is_stored(
    usage_store: Store, batch: tuple[list[Any], int, str], as_jsonl: bool
) -> None:
    events, position, named = batch
    before = snapshot(usage_store)
    with pytest.raises(InvalidUsage) as refused:
        if as_jsonl:
            ingest_usage_jsonl(usage_store, _jsonl(events))
        else:
            ingest_usage(usage_store, events)
    where = f"line {position}" if as_jsonl else f"event {position}"
    message = str(refused.value)
    assert message.startswith("1 malformed event; nothing was stored:")
    assert f"{where}: {named}" in message, message
    message.encode()  # printable
    assert snapshot(usage_store) == before
