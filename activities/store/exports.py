"""Export records (one per invoice and connection) and the audit trail of failed attempts."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from sqlalchemy import delete
from sqlmodel import col, select

from billbridge.activities.store.base import StoreBase
from billbridge.activities.store.helpers import _aware, _chunks, _utcnow
from billbridge.activities.store.tables import (
    AttemptRow,
    ExportAttemptTable,
    ExportRecordTable,
    ExportRow,
    InvoiceTable,
)

_EXPORT_FIELDS: dict[str, type] = {
    "status": str,
    "external_id": str,
    "external_url": str,
    "billing_total": str,
    "provider_total": str,
    "provider_amount_due": str,
    "line_count": int,
    "request_count": int,
    "error": str,
}


def _export_row(rec: ExportRecordTable) -> ExportRow:
    return ExportRow(
        invoice_id=rec.invoice_id,
        provider=rec.provider,
        status=rec.status,
        external_id=rec.external_id,
        external_url=rec.external_url,
        billing_total=rec.billing_total,
        provider_total=rec.provider_total,
        provider_amount_due=rec.provider_amount_due,
        line_count=rec.line_count,
        request_count=rec.request_count,
        error=rec.error,
        created_at=_aware(rec.created_at),
        updated_at=_aware(rec.updated_at),
    )


def _coerce_export_value(name: str, value: object) -> object:
    kind = _EXPORT_FIELDS.get(name)
    if kind is None:
        raise TypeError(
            f"upsert_export() got an unknown field {name!r}; allowed: {sorted(_EXPORT_FIELDS)}"
        )
    if value is None:
        if name in {"status", "request_count"}:
            raise TypeError(f"export field {name!r} cannot be None")
        return None
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"export field {name!r} must be an int, got {value!r}")
        return value
    if isinstance(value, Decimal):
        return format(value, "f")
    if not isinstance(value, str):
        raise TypeError(f"export field {name!r} must be a str or Decimal, got {value!r}")
    return value


class ExportMixin(StoreBase):
    """Export records, the invoices waiting for a fix, and failed-attempt entries."""

    def upsert_export(self, invoice_id: str, provider: str, **fields: object) -> None:
        """Create or update the export record of ``(invoice_id, provider)``.

        ``fields`` are columns of :class:`ExportRow` (``status``, ``external_id``,
        ``external_url``, ``billing_total``, ``provider_total``, ``provider_amount_due``,
        ``line_count``, ``request_count``, ``error``); money may be given as Decimal. Only the
        given fields change on update; ``updated_at`` is always bumped. A new record starts
        as ``status="pending"``, ``request_count=0``.
        """
        values = {name: _coerce_export_value(name, value) for name, value in fields.items()}
        now = _utcnow()
        with self._write() as session:
            if "status" in values:
                # An invoice has one current export. A wait recorded earlier under another
                # connection (or under "none", when the failing step had not yet routed the
                # invoice) is over once the export moves on: it must not linger in the
                # attention list. Rows that hold a provider object are kept for the audit.
                session.execute(
                    delete(ExportRecordTable)
                    .where(col(ExportRecordTable.invoice_id) == invoice_id)
                    .where(col(ExportRecordTable.provider) != provider)
                    .where(col(ExportRecordTable.status) == "needs_attention")
                    .where(col(ExportRecordTable.external_id).is_(None))
                )
            self._upsert(
                session,
                ExportRecordTable,
                ["invoice_id", "provider"],
                {
                    "status": "pending",
                    "request_count": 0,
                    **values,
                    "invoice_id": invoice_id,
                    "provider": provider,
                    "created_at": now,
                    "updated_at": now,
                },
                [*values, "updated_at"],
            )

    def get_export(self, invoice_id: str, provider: str | None = None) -> ExportRow | None:
        """The export record; with ``provider=None`` the most recently updated one of the
        invoice (any provider)."""
        with self._read() as session:
            query = select(ExportRecordTable).where(ExportRecordTable.invoice_id == invoice_id)
            if provider is not None:
                query = query.where(ExportRecordTable.provider == provider)
            rec = session.exec(
                query.order_by(
                    col(ExportRecordTable.updated_at).desc(), col(ExportRecordTable.provider)
                )
            ).first()
            return None if rec is None else _export_row(rec)

    def list_exports(self, status: str | None = None) -> list[ExportRow]:
        """All export records (optionally only those with ``status``), oldest first."""
        with self._read() as session:
            query = select(ExportRecordTable)
            if status is not None:
                query = query.where(ExportRecordTable.status == status)
            recs = session.exec(
                query.order_by(
                    col(ExportRecordTable.created_at),
                    col(ExportRecordTable.invoice_id),
                    col(ExportRecordTable.provider),
                )
            ).all()
            return [_export_row(rec) for rec in recs]

    def waiting_invoice_ids(
        self, *, connection_id: str | None = None, customer_ids: Iterable[str] | None = None
    ) -> list[str]:
        """Invoices whose export needs attention, on one connection or of some customers.

        What a fix can concern: a mapping or credential fix, the exports waiting on that
        connection; a customer fix, that customer's exports (whatever they wait on, including
        those that failed before being routed to a connection).
        """
        query = select(ExportRecordTable.invoice_id).where(
            ExportRecordTable.status == "needs_attention"
        )
        if connection_id is not None:
            query = query.where(ExportRecordTable.provider == connection_id)
        with self._read() as session:
            if customer_ids is None:
                return sorted(set(session.exec(query).all()))
            query = query.join(
                InvoiceTable, col(InvoiceTable.id) == col(ExportRecordTable.invoice_id)
            )
            found: set[str] = set()
            for chunk in _chunks(sorted(set(customer_ids))):
                found.update(
                    session.exec(query.where(col(InvoiceTable.customer_id).in_(chunk))).all()
                )
            return sorted(found)

    def add_attempt(self, invoice_id: str, provider: str, step: str, error: str) -> None:
        """Append a failed-attempt entry (audit trail of retries)."""
        with self._write() as session:
            session.add(
                ExportAttemptTable(
                    invoice_id=invoice_id, provider=provider, step=step, error=error, at=_utcnow()
                )
            )

    def list_attempts(self, invoice_id: str) -> list[AttemptRow]:
        with self._read() as session:
            recs = session.exec(
                select(ExportAttemptTable)
                .where(ExportAttemptTable.invoice_id == invoice_id)
                .order_by(col(ExportAttemptTable.id))
            ).all()
            return [
                AttemptRow(
                    id=rec.id or 0,
                    invoice_id=rec.invoice_id,
                    provider=rec.provider,
                    step=rec.step,
                    error=rec.error,
                    at=_aware(rec.at),
                )
                for rec in recs
            ]
