"""The store's exceptions."""

from __future__ import annotations


class StoreError(Exception):
    """Base class of store errors."""


class InvoiceConflictError(StoreError):
    """The invoice id is already stored with different content (issued invoices are
    immutable)."""

    def __init__(self, invoice_id: str) -> None:
        self.invoice_id = invoice_id
        super().__init__(
            f"invoice {invoice_id!r} is already stored with different content; an issued "
            "invoice is immutable"
        )
