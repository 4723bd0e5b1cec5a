"""Invoices: the header and the lines of issued invoices.

Invoices are stored split: one ``invoices`` row with the invoice header (the Orb invoice
without ``line_items``) and one ``invoice_lines`` row per line, so an invoice with 10,000
lines is written with one bulk insert and read back page by page.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from billbridge.activities.store.base import StoreBase
from billbridge.activities.store.errors import InvoiceConflictError, StoreError
from billbridge.activities.store.helpers import _dumps, _utcnow
from billbridge.activities.store.tables import InvoiceLineTable, InvoiceTable
from billbridge.core.models import Invoice, LineItem

VOLATILE_INVOICE_FIELDS: frozenset[str] = frozenset(
    {
        "status",
        "paid_at",
        "payment_attempts",
        "payment_failed_at",
        "payment_received_at",
        "payment_started_at",
        "sync_failed_at",
        "voided_at",
        "issue_failed_at",
        "hosted_invoice_url",
        "invoice_pdf",
        "auto_collection",
        "credit_notes",
        "eligible_to_issue_at",
        "scheduled_issue_at",
        "will_auto_issue",
    }
)
"""Lifecycle fields Orb changes after issuing; ignored when deciding whether a re-received
invoice has the same content as the stored one."""


def _content_digest(header: dict[str, Any], line_payloads: Sequence[str]) -> str:
    stable = {k: v for k, v in header.items() if k not in VOLATILE_INVOICE_FIELDS}
    digest = hashlib.sha256(_dumps(stable).encode())
    for payload in line_payloads:
        digest.update(b"\n")
        digest.update(payload.encode())
    return digest.hexdigest()


class InvoiceMixin(StoreBase):
    """Save an issued invoice once; read its header, its line count and pages of its lines."""

    def save_invoice(self, invoice: Invoice) -> bool:
        """Store an issued invoice. True if newly stored; False if the same invoice (same
        content, ignoring :data:`VOLATILE_INVOICE_FIELDS`) is already there; raises
        :class:`InvoiceConflictError` if the id is stored with different content."""
        header = invoice.model_dump(mode="json")
        lines = header.pop("line_items")
        line_payloads = [_dumps(line) for line in lines]
        digest = _content_digest(header, line_payloads)
        row = {
            "id": invoice.id,
            "customer_id": invoice.customer.id,
            "currency": invoice.currency,
            "total": format(invoice.total, "f"),
            "amount_due": format(invoice.amount_due, "f"),
            "line_count": len(line_payloads),
            "header_json": _dumps(header),
            "content_sha256": digest,
            "received_at": _utcnow(),
        }
        line_rows = [
            {
                "invoice_id": invoice.id,
                "position": position,
                "line_id": line["id"],
                "payload_json": payload,
            }
            for position, (line, payload) in enumerate(zip(lines, line_payloads, strict=True))
        ]
        for attempt in range(2):
            try:
                with self._write() as session:
                    conn = session.connection()
                    stmt = self._insert(InvoiceTable).values(**row)
                    inserted = conn.execute(
                        stmt.on_conflict_do_nothing(index_elements=["id"]).returning(
                            InvoiceTable.__table__.c.id  # type: ignore[attr-defined]
                        )
                    ).first()
                    if inserted is not None:
                        if line_rows:
                            line_table = InvoiceLineTable.__table__  # type: ignore[attr-defined]
                            conn.execute(line_table.insert(), line_rows)
                        return True
                break
            except IntegrityError:  # lost a race with a concurrent writer: look again
                if attempt:
                    raise
        with self._read() as session:
            stored = session.exec(
                select(InvoiceTable.content_sha256).where(InvoiceTable.id == invoice.id)
            ).first()
        if stored is None:  # pragma: no cover - deleted concurrently
            raise StoreError(f"invoice {invoice.id!r} vanished while being saved")
        if stored == digest:
            return False
        raise InvoiceConflictError(invoice.id)

    def get_invoice_header(self, invoice_id: str) -> Invoice | None:
        """The stored invoice without its lines (``line_items == []``)."""
        with self._read() as session:
            header_json = session.exec(
                select(InvoiceTable.header_json).where(InvoiceTable.id == invoice_id)
            ).first()
        if header_json is None:
            return None
        header = json.loads(header_json)
        header["line_items"] = []
        return Invoice.model_validate(header)

    def get_invoice_line_count(self, invoice_id: str) -> int | None:
        """Number of stored lines of the invoice (``None`` if the invoice is unknown)."""
        with self._read() as session:
            return session.exec(
                select(InvoiceTable.line_count).where(InvoiceTable.id == invoice_id)
            ).first()

    def get_invoice_lines(self, invoice_id: str, offset: int, limit: int) -> list[LineItem]:
        """A page of the invoice's lines, in the invoice's order."""
        if offset < 0 or limit < 0:
            raise ValueError("offset and limit must be >= 0")
        if limit == 0:
            return []
        with self._read() as session:
            payloads = session.exec(
                select(InvoiceLineTable.payload_json)
                .where(InvoiceLineTable.invoice_id == invoice_id)
                .order_by(col(InvoiceLineTable.position))
                .offset(offset)
                .limit(limit)
            ).all()
        return [LineItem.model_validate_json(payload) for payload in payloads]
