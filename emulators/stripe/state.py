"""The in-memory Stripe store: one object combining every resource's operations.

Split by resource: ``base`` (tables, lookups, helpers), ``customers``, ``catalog`` (products,
prices), ``items`` (invoice items), ``invoicing`` (invoices) and ``views`` (rendering, search).
"""

from __future__ import annotations

from .base import InvoiceRec, Obj, apply_metadata, new_id, now, paginate
from .invoicing import InvoicingMixin

__all__ = ["InvoiceRec", "Obj", "Store", "apply_metadata", "new_id", "now", "paginate"]


class Store(InvoicingMixin):
    """All Stripe objects held by one emulator. Call methods with ``lock`` held."""
