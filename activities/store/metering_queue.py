"""The metering send queue: records saved before anything is sent, batched across customers.

Every linked customer's hour closes at the same moment, and each customer's report activity
computes only its own records (a few dimensions). Sent one customer at a time, that is one
marketplace call per customer and hour, while AWS and Azure take 25 records a call. So a report
activity saves its records as `queued` ledger rows (quantities fixed from then on, as before),
waits a moment for the other customers' activities of the same hour, and then whichever activity
gets there first batches every queued row of the connection into saved requests of up to the
marketplace's maximum, in one transaction (rows locked, so two activities never batch a row
twice), and sends them. The other activities find their rows answered, or resend the saved
request itself if its sender vanished (a resend of a saved request is what every retry does:
the marketplaces answer it as a duplicate of itself).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import and_, or_
from sqlmodel import col, select

from billbridge.activities.marketplaces.base import MarketplaceAccount, PreparedReport, UsageRecord
from billbridge.activities.store.base import StoreBase
from billbridge.activities.store.helpers import _aware, _utcnow
from billbridge.activities.store.marketplace import (
    DELIVERED,
    LedgerConflict,
    SavedRequest,
    _request,
    dump_payload,
)
from billbridge.activities.store.tables import (
    LedgerTable,
    MarketplaceLinkTable,
    MarketplaceRequestTable,
)
from billbridge.core.usage import canonical_number, record_id

QUEUED = "queued"
"""Saved with its quantity, in no request yet: certainly not at the marketplace."""
RESENDABLE = ("retry", QUEUED)
"""Not at the marketplace: may be queued again, with the same quantity only."""


@dataclass(frozen=True)
class QueuedRecord:
    record: UsageRecord
    first_send: bool
    """No request carried it before."""
    queued_at: datetime


# The requests ready to go for the queued records (grouped, at most `max_batch` each; records
# it leaves out stay queued): pure.
RequestBuilder = Callable[[list[QueuedRecord]], list[PreparedReport]]


class MeteringQueueMixin(StoreBase):
    def queue_records(self, connection_id: str, records: Sequence[UsageRecord]) -> None:
        """Save records to be sent, before anything is sent.

        A record already carried by a saved request without an answer (it may be at the
        marketplace) stays in that request; a throttled one is queued again with its quantity;
        one the marketplace refused (needs attention: it holds nothing) is queued with the
        quantity given. Raises LedgerConflict, saving nothing, for an hour already delivered or
        saved with another quantity.
        """
        now = _utcnow()
        table = LedgerTable.__table__  # type: ignore[attr-defined]
        with self._write() as session:
            for rec in records:
                if rec.record_id != record_id(rec.customer_id, rec.dimension, rec.hour_start):
                    raise ValueError(
                        f"{rec.record_id}: a record id is <customer id>/<dimension>/<hour start>"
                    )
                if not rec.quantity.is_finite() or rec.quantity < 0:
                    raise ValueError(f"{rec.record_id}: quantity {rec.quantity} is not >= 0")
                row = session.get(LedgerTable, rec.record_id)
                key = canonical_number(rec.quantity)
                if row is not None:
                    if row.outcome in DELIVERED:
                        raise LedgerConflict(
                            rec.record_id,
                            f"already answered {row.outcome} for quantity {row.quantity}; it is "
                            "never sent again",
                        )
                    if row.outcome == "pending" and row.quantity_key == key:
                        continue  # in a saved request: that request is resent, as saved
                    if row.outcome != "needs_attention" and row.quantity_key != key:
                        raise LedgerConflict(
                            rec.record_id,
                            f"saved with quantity {row.quantity} ({row.outcome}), which the "
                            f"marketplace may hold; never another quantity ({rec.quantity})",
                        )
                values = {
                    "record_id": rec.record_id,
                    "customer_id": rec.customer_id,
                    "marketplace": rec.account.marketplace,
                    "connection_id": connection_id,
                    "dimension": rec.dimension,
                    "hour_start": rec.hour_start.astimezone(UTC),
                    "quantity": str(rec.quantity),
                    "quantity_key": key,
                    "request_id": 0,
                    "outcome": QUEUED,
                    "marketplace_ref": "",
                    "detail": "",
                    "accepted_quantity": None,
                    "attempts": 0,
                    "saved_at": now,
                    "answered_at": None,
                }
                # request_id 0: a late answer to the request that carried it before never
                # answers the queued record. Checked above and again in the write, so two
                # writers racing on one hour (PostgreSQL, read committed) cannot both win with
                # different quantities.
                stmt = self._insert(LedgerTable).values(**values)
                update = {
                    k: getattr(stmt.excluded, k)
                    for k in values
                    if k not in ("record_id", "attempts")
                }
                stmt = stmt.on_conflict_do_update(
                    index_elements=["record_id"],
                    set_=update,
                    where=or_(
                        table.c.outcome == "needs_attention",
                        and_(table.c.outcome.in_(RESENDABLE), table.c.quantity_key == key),
                    ),
                ).returning(table.c.record_id)
                if session.connection().execute(stmt).first() is None:
                    raise LedgerConflict(
                        rec.record_id,
                        "saved meanwhile by another writer with another quantity or answered; "
                        "nothing queued",
                    )

    def batch_queued(self, connection_id: str, build: RequestBuilder) -> list[SavedRequest]:
        """Every queued record of the connection (any customer), put into saved requests by
        `build`, in one transaction: the rows become `pending` in their request. Rows another
        transaction is batching are skipped (PostgreSQL: SKIP LOCKED; SQLite writes one at a
        time). Rows whose link is gone stay queued."""
        now = _utcnow()
        with self._write() as session:
            query = (
                select(LedgerTable)
                .where(LedgerTable.connection_id == connection_id, LedgerTable.outcome == QUEUED)
                .order_by(
                    col(LedgerTable.hour_start),
                    col(LedgerTable.customer_id),
                    col(LedgerTable.dimension),
                )
            )
            if self.dialect == "postgresql":
                query = query.with_for_update(skip_locked=True)
            rows = {row.record_id: row for row in session.exec(query).all()}
            if not rows:
                return []
            accounts: dict[tuple[str, str], MarketplaceAccount | None] = {}
            records: list[QueuedRecord] = []
            for row in rows.values():
                key = (row.customer_id, row.marketplace)
                if key not in accounts:
                    link = session.get(MarketplaceLinkTable, key)
                    accounts[key] = (
                        None
                        if link is None
                        else MarketplaceAccount(row.marketplace, json.loads(link.account_json))
                    )
                account = accounts[key]
                if account is None:
                    continue
                usage = UsageRecord(
                    record_id=row.record_id,
                    customer_id=row.customer_id,
                    account=account,
                    dimension=row.dimension,
                    hour_start=_aware(row.hour_start),
                    quantity=Decimal(row.quantity),
                )
                records.append(QueuedRecord(usage, row.attempts == 0, _aware(row.saved_at)))
            saved: list[SavedRequest] = []
            for report in build(records) if records else []:
                request = MarketplaceRequestTable(
                    connection_id=connection_id,
                    marketplace=report.marketplace,
                    record_ids_json=json.dumps(list(report.record_ids)),
                    payload_json=dump_payload(report.payload),
                    saved_at=now,
                )
                session.add(request)
                session.flush()
                assert request.id is not None
                for rid in report.record_ids:
                    row = rows[rid]
                    row.request_id = request.id
                    row.outcome = "pending"
                    row.attempts += 1
                    row.saved_at = now
                    session.add(row)
                saved.append(_request(request))
            return saved

    def requests_carrying(self, record_ids: Sequence[str]) -> dict[str, SavedRequest]:
        """record id -> the saved request that carries it now, for records still unanswered
        in one (pending)."""
        out: dict[str, SavedRequest] = {}
        with self._read() as session:
            cache: dict[int, SavedRequest | None] = {}
            for rid in record_ids:
                row = session.get(LedgerTable, rid)
                if row is None or row.outcome != "pending":
                    continue
                if row.request_id not in cache:
                    found = session.get(MarketplaceRequestTable, row.request_id)
                    cache[row.request_id] = None if found is None else _request(found)
                request = cache[row.request_id]
                if request is not None:
                    out[rid] = request
        return out


def request_age(request: SavedRequest, now: datetime) -> float:
    return (now - request.saved_at).total_seconds()


__all__ = ["QUEUED", "MeteringQueueMixin", "QueuedRecord", "RequestBuilder", "request_age"]
