"""Marketplace links, dimension mappings, marketplace connections' configs, and the ledger.

The ledger is the source of truth of what was reported: one row per customer + dimension +
hour (its quantity, the saved request that carries it, the marketplace's answer), and every
request exactly as sent, saved before the call. A record once answered accepted or duplicate is
never saved again, and a record saved with one quantity is never saved with another unless the
marketplace refused it (needs attention: it holds nothing for that hour). Records are saved
(queued) and put into requests by metering_queue.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlmodel import col, select

from billbridge.activities.marketplaces.base import (
    MarketplaceConfig,
    PreparedReport,
    RecordResult,
)
from billbridge.activities.secrets import SecretBox
from billbridge.activities.store.base import StoreBase
from billbridge.activities.store.errors import StoreError
from billbridge.activities.store.helpers import _aware, _dumps, _utcnow
from billbridge.activities.store.tables import (
    ConnectionTable,
    DimensionMappingTable,
    LedgerTable,
    MarketplaceLinkTable,
    MarketplaceRequestTable,
)
from billbridge.activities.store.usage import exact_arithmetic
from billbridge.core.usage import (
    MARKETPLACES,
    DimensionMapping,
    LedgerRecord,
    MarketplaceLink,
)

DELIVERED = ("accepted", "duplicate")
"""Answered: never saved (so never sent) again."""
OUTCOMES = ("pending", "accepted", "duplicate", "needs_attention", "retry")


class MarketplaceSetupError(StoreError):
    """A link or connection that cannot be used as given (the message says which field)."""


class LedgerConflict(StoreError):
    """A record that must not be saved (sent) as asked: another quantity for an hour already
    saved, or an hour the marketplace already took."""

    def __init__(self, record_id: str, message: str) -> None:
        self.record_id = record_id
        super().__init__(f"{record_id}: {message}")


@dataclass(frozen=True)
class SavedRequest:
    """A request as saved before it was sent: send `payload`, never a recomputed one."""

    id: int
    connection_id: str
    marketplace: str
    record_ids: tuple[str, ...]
    payload: dict[str, Any]
    """As saved: numbers with a fraction come back as Decimal, whole ones as int."""
    saved_at: datetime
    answered_at: datetime | None

    def report(self) -> PreparedReport:
        return PreparedReport(self.marketplace, self.record_ids, self.payload)


def dump_payload(value: object) -> str:
    """Exact JSON of a request: Decimals as their decimal text; floats are refused (an amount
    that went through float is not the amount)."""

    def encode(item: object) -> str:
        if item is None or isinstance(item, bool | str):
            return json.dumps(item, ensure_ascii=False)
        if isinstance(item, int):
            return str(item)
        if isinstance(item, Decimal):
            if not item.is_finite():
                raise ValueError(f"payload: {item} is not a finite number")
            return str(item)
        if isinstance(item, dict):
            parts = []
            for key in sorted(item):
                if not isinstance(key, str):
                    raise ValueError(f"payload: key {key!r} is not a string")
                parts.append(f"{json.dumps(key, ensure_ascii=False)}:{encode(item[key])}")
            return "{" + ",".join(parts) + "}"
        if isinstance(item, list | tuple):
            return "[" + ",".join(encode(x) for x in item) + "]"
        raise ValueError(
            f"payload: {type(item).__name__} is not JSON (use str, int, Decimal, bool, None, "
            "list, dict; never float)"
        )

    return encode(value)


def load_payload(text: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(text, parse_float=Decimal)
    return loaded


class MarketplaceMixin(StoreBase):
    """Links, dimension mappings, marketplace connection configs, the ledger."""

    # ---- connections

    def marketplace_config(self, connection_id: str, box: SecretBox | None) -> MarketplaceConfig:
        """A marketplace connection with its credentials opened (in an activity only; never
        return it to a workflow)."""
        with self._read() as session:
            row = session.get(ConnectionTable, connection_id)
        if row is None or row.provider not in MARKETPLACES:
            raise MarketplaceSetupError(
                f"connection: {connection_id!r} is not a marketplace connection; add it with "
                "`billbridge connections add aws|azure|gcp --id NAME ...`"
            )
        credentials: dict[str, str] = {}
        if row.credentials_ref:
            if box is None:
                raise MarketplaceSetupError(
                    f"connection {connection_id}: its credentials are sealed; a key is needed"
                )
            credentials = json.loads(box.open(row.credentials_ref, connection_id))
        settings = {k: str(v) for k, v in json.loads(row.settings_json).items() if v is not None}
        return MarketplaceConfig(connection_id, row.provider, credentials, settings)

    # ---- links

    def link_marketplace(self, link: MarketplaceLink) -> None:
        """Create or replace the customer's link to that marketplace (one per marketplace).
        The connection must exist and belong to the same marketplace."""
        with self._write() as session:
            connection = session.get(ConnectionTable, link.connection_id)
            if connection is None:
                raise MarketplaceSetupError(
                    f"connection: {link.connection_id!r} does not exist; add it with "
                    f"`billbridge connections add {link.marketplace} --id {link.connection_id}`"
                )
            if connection.provider != link.marketplace:
                raise MarketplaceSetupError(
                    f"connection: {link.connection_id} is a {connection.provider} connection, "
                    f"not {link.marketplace}"
                )
            self._upsert(
                session,
                MarketplaceLinkTable,
                ["customer_id", "marketplace"],
                {
                    "customer_id": link.customer_id,
                    "marketplace": link.marketplace,
                    "connection_id": link.connection_id,
                    "account_json": _dumps(link.account),
                    "mode": link.mode,
                    "billing_amount_dimension": link.billing_amount_dimension,
                    "updated_at": _utcnow(),
                },
                ["connection_id", "account_json", "mode", "billing_amount_dimension", "updated_at"],
            )

    def unlink_marketplace(self, customer_id: str, marketplace: str) -> bool:
        """Remove the link; False if there was none. The ledger keeps what was reported."""
        with self._write() as session:
            row = session.get(MarketplaceLinkTable, (customer_id, marketplace))
            if row is None:
                return False
            session.delete(row)
            return True

    def get_marketplace_link(self, customer_id: str, marketplace: str) -> MarketplaceLink | None:
        with self._read() as session:
            row = session.get(MarketplaceLinkTable, (customer_id, marketplace))
            return None if row is None else _link(row)

    def marketplace_links(
        self,
        customer_id: str | None = None,
        marketplace: str | None = None,
        connection_id: str | None = None,
    ) -> list[MarketplaceLink]:
        query = select(MarketplaceLinkTable)
        if customer_id is not None:
            query = query.where(MarketplaceLinkTable.customer_id == customer_id)
        if marketplace is not None:
            query = query.where(MarketplaceLinkTable.marketplace == marketplace)
        if connection_id is not None:
            query = query.where(MarketplaceLinkTable.connection_id == connection_id)
        with self._read() as session:
            rows = session.exec(
                query.order_by(
                    col(MarketplaceLinkTable.customer_id), col(MarketplaceLinkTable.marketplace)
                )
            ).all()
            return [_link(row) for row in rows]

    # ---- dimension mappings

    def set_dimension_mapping(self, connection_id: str, mapping: DimensionMapping) -> None:
        """Create or replace the mapping of (event name, dimension) on a connection."""
        with self._write() as session:
            self._upsert(
                session,
                DimensionMappingTable,
                ["connection_id", "event_name", "dimension"],
                {
                    "connection_id": connection_id,
                    "event_name": mapping.event_name,
                    "dimension": mapping.dimension,
                    "property": mapping.property,
                    "factor": str(mapping.factor),
                    "updated_at": _utcnow(),
                },
                ["property", "factor", "updated_at"],
            )

    def delete_dimension_mapping(self, connection_id: str, event_name: str, dimension: str) -> bool:
        with self._write() as session:
            row = session.get(DimensionMappingTable, (connection_id, event_name, dimension))
            if row is None:
                return False
            session.delete(row)
            return True

    def dimension_mappings(self, connection_id: str) -> list[DimensionMapping]:
        with self._read() as session:
            rows = session.exec(
                select(DimensionMappingTable)
                .where(DimensionMappingTable.connection_id == connection_id)
                .order_by(
                    col(DimensionMappingTable.dimension), col(DimensionMappingTable.event_name)
                )
            ).all()
            return [
                DimensionMapping(
                    event_name=row.event_name,
                    property=row.property,
                    dimension=row.dimension,
                    factor=Decimal(row.factor),
                )
                for row in rows
            ]

    # ---- ledger

    def record_answer(
        self,
        record_id: str,
        outcome: str,
        marketplace_ref: str = "",
        detail: str = "",
        accepted_quantity: Decimal | None = None,
        *,
        request_id: int | None = None,
    ) -> bool:
        """The marketplace's answer for one record. With `request_id`, only if the record is
        still carried by that request (an answer to an older request never overwrites a newer
        one). Returns whether a row was updated."""
        with self._write() as session:
            return self._answer(
                session,
                [(record_id, outcome, marketplace_ref, detail, accepted_quantity)],
                request_id,
            )[0]

    def record_answers(self, request_id: int, results: Sequence[RecordResult]) -> int:
        """Every record's answer to one saved request, in one transaction; the answers are
        also kept on the request. Returns how many ledger rows were updated."""
        answers = [
            (r.record_id, str(r.outcome), r.marketplace_ref, r.detail, r.accepted_quantity)
            for r in results
        ]
        with self._write() as session:
            updated = self._answer(session, answers, request_id)
            request = session.get(MarketplaceRequestTable, request_id)
            if request is not None:
                request.answered_at = _utcnow()
                request.answer_json = dump_payload(
                    [
                        {
                            "record_id": r.record_id,
                            "outcome": str(r.outcome),
                            "marketplace_ref": r.marketplace_ref,
                            "detail": r.detail,
                            "accepted_quantity": r.accepted_quantity,
                        }
                        for r in results
                    ]
                )
                session.add(request)
        return sum(updated)

    @staticmethod
    def _answer(
        session: Any,
        answers: Iterable[tuple[str, str, str, str, Decimal | None]],
        request_id: int | None,
    ) -> list[bool]:
        done = []
        now = _utcnow()
        for rid, outcome, ref, detail, accepted in answers:
            if outcome not in OUTCOMES or outcome == "pending":
                raise ValueError(f"outcome: {outcome!r} is not one of {OUTCOMES[1:]}")
            row = session.get(LedgerTable, rid)
            if row is None or (request_id is not None and row.request_id != request_id):
                done.append(False)
                continue
            if row.outcome in DELIVERED and outcome not in DELIVERED:
                # A delivered hour stays delivered (a late answer to a resend says less).
                done.append(False)
                continue
            row.outcome = outcome
            row.marketplace_ref = ref
            row.detail = detail
            row.accepted_quantity = None if accepted is None else str(accepted)
            row.answered_at = now
            session.add(row)
            done.append(True)
        return done

    def saved_request(self, request_id: int) -> SavedRequest | None:
        with self._read() as session:
            row = session.get(MarketplaceRequestTable, request_id)
            return None if row is None else _request(row)

    def unanswered_requests(self, connection_id: str | None = None) -> list[SavedRequest]:
        """Saved requests that still carry a record with no answer (pending), oldest first:
        after a crash, these are sent again as saved."""
        with self._read() as session:
            query = select(LedgerTable.request_id).where(LedgerTable.outcome == "pending")
            if connection_id is not None:
                query = query.where(LedgerTable.connection_id == connection_id)
            ids = sorted(set(session.exec(query).all()))
            return [
                _request(row)
                for row in (session.get(MarketplaceRequestTable, i) for i in ids)
                if row is not None
            ]

    def ledger(
        self,
        customer_id: str | None = None,
        since: datetime | None = None,
        *,
        dimension: str | None = None,
        until: datetime | None = None,
    ) -> list[LedgerRecord]:
        """The ledger's records (hours >= since, < until), by hour then dimension."""
        query = select(LedgerTable)
        if customer_id is not None:
            query = query.where(LedgerTable.customer_id == customer_id)
        if dimension is not None:
            query = query.where(LedgerTable.dimension == dimension)
        if since is not None:
            query = query.where(col(LedgerTable.hour_start) >= since.astimezone(UTC))
        if until is not None:
            query = query.where(col(LedgerTable.hour_start) < until.astimezone(UTC))
        with self._read() as session:
            rows = session.exec(
                query.order_by(
                    col(LedgerTable.hour_start),
                    col(LedgerTable.customer_id),
                    col(LedgerTable.dimension),
                )
            ).all()
            return [_ledger_record(row) for row in rows]

    def ledger_record(self, record_id: str) -> LedgerRecord | None:
        with self._read() as session:
            row = session.get(LedgerTable, record_id)
            return None if row is None else _ledger_record(row)

    def reported_total(
        self, customer_id: str, dimension: str, start: datetime, end: datetime
    ) -> Decimal:
        """What the marketplace holds for the customer's dimension over hours in [start, end):
        the delivered records' quantities (accepted, or duplicate of the same quantity)."""
        total = Decimal(0)
        with exact_arithmetic():
            for record in self.ledger(customer_id, start, dimension=dimension, until=end):
                if record.delivered:
                    total += record.quantity
        return total


def _link(row: MarketplaceLinkTable) -> MarketplaceLink:
    return MarketplaceLink(
        customer_id=row.customer_id,
        marketplace=row.marketplace,  # type: ignore[arg-type]
        connection_id=row.connection_id,
        account=json.loads(row.account_json),
        mode=row.mode,  # type: ignore[arg-type]
        billing_amount_dimension=row.billing_amount_dimension,
    )


def _request(row: MarketplaceRequestTable) -> SavedRequest:
    assert row.id is not None
    return SavedRequest(
        id=row.id,
        connection_id=row.connection_id,
        marketplace=row.marketplace,
        record_ids=tuple(json.loads(row.record_ids_json)),
        payload=load_payload(row.payload_json),
        saved_at=_aware(row.saved_at),
        answered_at=None if row.answered_at is None else _aware(row.answered_at),
    )


def _ledger_record(row: LedgerTable) -> LedgerRecord:
    return LedgerRecord(
        record_id=row.record_id,
        customer_id=row.customer_id,
        marketplace=row.marketplace,
        connection_id=row.connection_id,
        dimension=row.dimension,
        hour_start=_aware(row.hour_start),
        quantity=Decimal(row.quantity),
        request_id=row.request_id,
        outcome=row.outcome,  # type: ignore[arg-type]
        marketplace_ref=row.marketplace_ref,
        detail=row.detail,
        accepted_quantity=None if row.accepted_quantity is None else Decimal(row.accepted_quantity),
        attempts=row.attempts,
        saved_at=_aware(row.saved_at),
        answered_at=None if row.answered_at is None else _aware(row.answered_at),
    )


__all__ = [
    "LedgerConflict",
    "MarketplaceMixin",
    "MarketplaceSetupError",
    "SavedRequest",
    "dump_payload",
    "load_payload",
]
