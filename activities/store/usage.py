"""Usage events: ingested once per idempotency key, aggregated into marketplace quantities.

Events live here, never in workflow history: the metering workflow passes hours and customer
ids, and its activities read the quantities from the store. Quantities are summed as Decimal in
a context that raises on any rounding (decimal.Inexact), so a total is exact or an error.
"""

from __future__ import annotations

import decimal
import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, or_
from sqlmodel import Session, col, select

from billbridge.activities.store.base import StoreBase
from billbridge.activities.store.helpers import _aware, _chunks, _dumps, _utcnow
from billbridge.activities.store.tables import CustomerTable, UsageEventTable
from billbridge.core.usage import (
    BILLING_AMOUNT_EVENT,
    BILLING_AMOUNT_PROPERTY,
    DimensionMapping,
    IngestResult,
    PropertyValue,
    UsageEvent,
    numeric_property,
)

HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class StoredUsageEvent:
    """An ingested event, the customer it counts for (None: not known yet), when it arrived."""

    event: UsageEvent
    customer_id: str | None
    received_at: datetime


@dataclass(frozen=True)
class SkippedEvent:
    idempotency_key: str
    dimension: str
    reason: str


@dataclass(frozen=True)
class UsageAggregate:
    """Quantities per dimension (after the factor), and what could not be counted."""

    totals: dict[str, Decimal]
    event_count: int
    skipped: tuple[SkippedEvent, ...] = ()


@contextmanager
def exact_arithmetic() -> Iterator[decimal.Context]:
    """Decimal sums and products that raise instead of rounding."""
    with decimal.localcontext() as ctx:
        ctx.prec = 200
        ctx.traps[decimal.Inexact] = True
        ctx.traps[decimal.Rounded] = True
        yield ctx


def dump_properties(properties: dict[str, PropertyValue]) -> str:
    """Flat JSON (Orb allows no nesting) with numbers as their exact decimal text."""
    parts = []
    for key in sorted(properties):
        value = properties[key]
        if isinstance(value, bool) or value is None or isinstance(value, str):
            text = json.dumps(value, ensure_ascii=False)
        elif isinstance(value, int | Decimal):
            text = str(value)  # Decimal's str is valid JSON for finite values ("1E+2" too)
        else:  # pragma: no cover - UsageEvent refuses anything else
            raise TypeError(f"property {key}: {type(value).__name__}")
        parts.append(f"{json.dumps(key, ensure_ascii=False)}:{text}")
    return "{" + ",".join(parts) + "}"


def load_properties(text: str) -> dict[str, PropertyValue]:
    loaded: dict[str, PropertyValue] = json.loads(text, parse_float=Decimal)
    return loaded


def content_sha256(event: UsageEvent) -> str:
    return hashlib.sha256(_dumps(event.content_key()).encode()).hexdigest()


class UsageMixin(StoreBase):
    """Usage ingestion, totals per dimension and hour, and late arrivals."""

    def ingest_usage(self, events: Sequence[UsageEvent]) -> IngestResult:
        """Store events once per idempotency key, all of them in one transaction.

        A key already stored (or earlier in `events`) is a duplicate: the first event stays, as
        Orb does. One with other content is also listed in `conflicts`. The counts are returned
        after the commit: what is reported accepted is stored.
        """
        first: dict[str, UsageEvent] = {}
        hashes: dict[str, str] = {}
        duplicates = 0
        conflicts: list[str] = []
        for event in events:
            key = event.idempotency_key
            digest = content_sha256(event)
            if key in first:
                duplicates += 1
                if hashes[key] != digest and key not in conflicts:
                    conflicts.append(key)
                continue
            first[key] = event
            hashes[key] = digest
        if not first:
            return IngestResult(duplicates=duplicates, conflicts=tuple(conflicts))
        accepted = 0
        now = _utcnow()
        with self._write() as session:
            known = self._known_customers(session, first.values())
            unknown: set[str] = set()
            keys = list(first)
            for chunk in _chunks(keys, 200):
                rows = []
                for key in chunk:
                    event = first[key]
                    customer_id = event.customer_id
                    if event.external_customer_id is not None:
                        customer_id = known.get(("external", event.external_customer_id))
                        if customer_id is None:
                            unknown.add(event.external_customer_id)
                    elif customer_id is not None and ("id", customer_id) not in known:
                        unknown.add(customer_id)
                    rows.append(
                        {
                            "idempotency_key": key,
                            "customer_id": customer_id,
                            "external_customer_id": event.external_customer_id,
                            "event_name": event.event_name,
                            "timestamp": event.timestamp,
                            "properties_json": dump_properties(event.properties),
                            "content_sha256": hashes[key],
                            "received_at": now,
                        }
                    )
                stmt = (
                    self._insert(UsageEventTable)
                    .values(rows)
                    .on_conflict_do_nothing(index_elements=["idempotency_key"])
                    .returning(UsageEventTable.__table__.c.idempotency_key)  # type: ignore[attr-defined]
                )
                inserted = {row[0] for row in session.connection().execute(stmt)}
                accepted += len(inserted)
                stored_before = [key for key in chunk if key not in inserted]
                duplicates += len(stored_before)
                if stored_before:
                    for key, digest in session.exec(
                        select(
                            UsageEventTable.idempotency_key, UsageEventTable.content_sha256
                        ).where(col(UsageEventTable.idempotency_key).in_(stored_before))
                    ).all():
                        if digest != hashes[key] and key not in conflicts:
                            conflicts.append(key)
        return IngestResult(
            accepted=accepted,
            duplicates=duplicates,
            conflicts=tuple(conflicts),
            unknown_customers=tuple(sorted(unknown)),
        )

    @staticmethod
    def _known_customers(
        session: Session, events: Iterable[UsageEvent]
    ) -> dict[tuple[str, str], str]:
        """("external", ext id) -> customer id and ("id", id) -> id, for the stored ones."""
        external = sorted({e.external_customer_id for e in events if e.external_customer_id})
        ids = sorted({e.customer_id for e in events if e.customer_id})
        known: dict[tuple[str, str], str] = {}
        for chunk in _chunks(external):
            for cid, ext in session.exec(
                select(CustomerTable.id, CustomerTable.external_customer_id).where(
                    col(CustomerTable.external_customer_id).in_(chunk)
                )
            ).all():
                if ext is not None:
                    known[("external", ext)] = cid
        for chunk in _chunks(ids):
            for cid in session.exec(
                select(CustomerTable.id).where(col(CustomerTable.id).in_(chunk))
            ).all():
                known[("id", cid)] = cid
        return known

    def _customer_clause(self, session: Session, customer_id: str) -> Any:
        """The customer's events: resolved to it, or sent with its external id before it was
        known (attributed now, at read time)."""
        external = session.exec(
            select(CustomerTable.external_customer_id).where(CustomerTable.id == customer_id)
        ).first()
        mine = col(UsageEventTable.customer_id) == customer_id
        if external is None:
            return mine
        return or_(
            mine,
            and_(
                col(UsageEventTable.customer_id).is_(None),
                col(UsageEventTable.external_customer_id) == external,
            ),
        )

    def _events(
        self,
        customer_id: str,
        start: datetime,
        end: datetime,
        event_names: Iterable[str] | None = None,
    ) -> list[tuple[str, str, datetime, str]]:
        """(idempotency key, event name, timestamp, properties JSON) in [start, end)."""
        with self._read() as session:
            query = (
                select(
                    UsageEventTable.idempotency_key,
                    UsageEventTable.event_name,
                    UsageEventTable.timestamp,
                    UsageEventTable.properties_json,
                )
                .where(self._customer_clause(session, customer_id))
                .where(col(UsageEventTable.timestamp) >= start.astimezone(UTC))
                .where(col(UsageEventTable.timestamp) < end.astimezone(UTC))
            )
            if event_names is not None:
                query = query.where(col(UsageEventTable.event_name).in_(sorted(set(event_names))))
            return [
                (key, name, _aware(ts), props)
                for key, name, ts, props in session.exec(
                    query.order_by(col(UsageEventTable.timestamp))
                ).all()
            ]

    def usage_aggregate(
        self,
        customer_id: str,
        start: datetime,
        end: datetime,
        mappings: Sequence[DimensionMapping],
    ) -> UsageAggregate:
        """The customer's usage in [start, end) per dimension: sum of the property (or the
        number of events) times the factor, exactly. Every mapped dimension is present (0 when
        nothing happened). An event whose summed property is missing adds nothing (as a SQL
        SUM over it would); one whose value is not a number is listed in `skipped`."""
        hourly = self._aggregate(customer_id, start, end, mappings, hourly=False)
        return hourly[start.astimezone(UTC)]

    def usage_totals(
        self,
        customer_id: str,
        start: datetime,
        end: datetime,
        mappings: Sequence[DimensionMapping],
    ) -> dict[str, Decimal]:
        """usage_aggregate's totals: {dimension: quantity}."""
        return self.usage_aggregate(customer_id, start, end, mappings).totals

    def hourly_usage_totals(
        self,
        customer_id: str,
        start: datetime,
        end: datetime,
        mappings: Sequence[DimensionMapping],
    ) -> dict[datetime, UsageAggregate]:
        """usage_aggregate for every hour in [start, end) (both on the hour), in one read."""
        return self._aggregate(customer_id, start, end, mappings, hourly=True)

    def _aggregate(
        self,
        customer_id: str,
        start: datetime,
        end: datetime,
        mappings: Sequence[DimensionMapping],
        *,
        hourly: bool,
    ) -> dict[datetime, UsageAggregate]:
        start, end = start.astimezone(UTC), end.astimezone(UTC)
        by_event: dict[str, list[DimensionMapping]] = defaultdict(list)
        for mapping in mappings:
            by_event[mapping.event_name].append(mapping)
        dimensions = sorted({m.dimension for m in mappings})
        buckets: list[datetime] = [start]
        if hourly:
            buckets, moment = [], start
            while moment < end:
                buckets.append(moment)
                moment += HOUR
        totals = {b: dict.fromkeys(dimensions, Decimal(0)) for b in buckets}
        counts = dict.fromkeys(buckets, 0)
        skipped: dict[datetime, list[SkippedEvent]] = defaultdict(list)
        rows = self._events(customer_id, start, end, by_event) if by_event else []
        with exact_arithmetic():
            for key, name, timestamp, props_json in rows:
                bucket = timestamp.replace(minute=0, second=0, microsecond=0) if hourly else start
                if bucket not in totals:  # start not on the hour: the first partial hour
                    bucket = start
                counts[bucket] += 1
                properties = load_properties(props_json)
                for mapping in by_event[name]:
                    if mapping.property is None:
                        amount = Decimal(1)
                    elif mapping.property not in properties:
                        continue
                    else:
                        value = numeric_property(properties[mapping.property])
                        if value is None:
                            skipped[bucket].append(
                                SkippedEvent(
                                    key,
                                    mapping.dimension,
                                    f"{mapping.property}: {properties[mapping.property]!r} is "
                                    "not a number",
                                )
                            )
                            continue
                        amount = value
                    totals[bucket][mapping.dimension] += amount * mapping.factor
        return {b: UsageAggregate(totals[b], counts[b], tuple(skipped.get(b, ()))) for b in buckets}

    def charges_to_date(
        self,
        customer_id: str,
        before: datetime,
        *,
        event_name: str = BILLING_AMOUNT_EVENT,
        property: str = BILLING_AMOUNT_PROPERTY,
    ) -> Decimal:
        """Billing-amount mode: the customer's charges to date as of `before` (exclusive): the
        numeric `property` of its latest `event_name` event before then (0 if none). Events
        with the same timestamp: the last by idempotency key."""
        with self._read() as session:
            rows = session.exec(
                select(UsageEventTable.properties_json)
                .where(self._customer_clause(session, customer_id))
                .where(UsageEventTable.event_name == event_name)
                .where(col(UsageEventTable.timestamp) < before.astimezone(UTC))
                .order_by(
                    col(UsageEventTable.timestamp).desc(),
                    col(UsageEventTable.idempotency_key).desc(),
                )
            ).all()
        for props_json in rows:  # the newest snapshot that carries a number
            value = numeric_property(load_properties(props_json).get(property))
            if value is not None:
                return value
        return Decimal(0)

    def billing_amount_cents(
        self,
        customer_id: str,
        start: datetime,
        end: datetime,
        *,
        event_name: str = BILLING_AMOUNT_EVENT,
        property: str = BILLING_AMOUNT_PROPERTY,
    ) -> Decimal:
        """Billing-amount mode's quantity for [start, end): the increase of the charges to
        date, in cents (x 100), exactly. Negative when the charges went down (a credit, or a
        new billing period that restarts the count): never report it as is; the caller carries
        it."""
        with exact_arithmetic():
            after = self.charges_to_date(customer_id, end, event_name=event_name, property=property)
            before = self.charges_to_date(
                customer_id, start, event_name=event_name, property=property
            )
            return (after - before) * 100

    def usage_received_between(
        self, customer_id: str, since: datetime, until: datetime | None = None
    ) -> list[StoredUsageEvent]:
        """The customer's events that arrived in [since, until): late events are those whose
        hour was reported before they arrived."""
        with self._read() as session:
            query = (
                select(UsageEventTable)
                .where(self._customer_clause(session, customer_id))
                .where(col(UsageEventTable.received_at) >= since.astimezone(UTC))
            )
            if until is not None:
                query = query.where(col(UsageEventTable.received_at) < until.astimezone(UTC))
            rows = session.exec(
                query.order_by(col(UsageEventTable.timestamp), col(UsageEventTable.idempotency_key))
            ).all()
            return [_stored_event(row) for row in rows]

    def usage_hours_received_between(
        self, customer_id: str, since: datetime, until: datetime | None = None
    ) -> list[datetime]:
        """The hours (UTC starts) that received events in [since, until), oldest first."""
        hours = {
            stored.event.timestamp.replace(minute=0, second=0, microsecond=0)
            for stored in self.usage_received_between(customer_id, since, until)
        }
        return sorted(hours)

    def usage_events(
        self, customer_id: str, start: datetime, end: datetime
    ) -> list[StoredUsageEvent]:
        """The customer's events with timestamps in [start, end)."""
        with self._read() as session:
            rows = session.exec(
                select(UsageEventTable)
                .where(self._customer_clause(session, customer_id))
                .where(col(UsageEventTable.timestamp) >= start.astimezone(UTC))
                .where(col(UsageEventTable.timestamp) < end.astimezone(UTC))
                .order_by(col(UsageEventTable.timestamp), col(UsageEventTable.idempotency_key))
            ).all()
            return [_stored_event(row) for row in rows]


def _stored_event(row: UsageEventTable) -> StoredUsageEvent:
    event = UsageEvent(
        idempotency_key=row.idempotency_key,
        customer_id=None if row.external_customer_id is not None else row.customer_id,
        external_customer_id=row.external_customer_id,
        event_name=row.event_name,
        timestamp=_aware(row.timestamp),
        properties=load_properties(row.properties_json),
    )
    return StoredUsageEvent(event, row.customer_id, _aware(row.received_at))
