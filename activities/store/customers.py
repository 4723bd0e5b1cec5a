"""Customers (as Orb sent them) and their links to each connection's provider customer."""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import col, select

from billbridge.activities.store.base import StoreBase
from billbridge.activities.store.helpers import _chunks, _dumps, _utcnow
from billbridge.activities.store.tables import CustomerLinkTable, CustomerTable
from billbridge.core.models import Customer


class CustomerMixin(StoreBase):
    """Orb customers, and which provider customer each maps to on a connection."""

    def upsert_customers(self, customers: Sequence[Customer]) -> int:
        """Insert or update customers; returns how many were new or changed."""
        latest: dict[str, Customer] = {c.id: c for c in customers}
        if not latest:
            return 0
        payloads = {cid: _dumps(c.model_dump(mode="json")) for cid, c in latest.items()}
        written = 0
        with self._write() as session:
            existing: dict[str, str] = {}
            for chunk in _chunks(list(latest)):
                for cid, payload in session.exec(
                    select(CustomerTable.id, CustomerTable.payload_json).where(
                        col(CustomerTable.id).in_(chunk)
                    )
                ).all():
                    existing[cid] = payload
            now = _utcnow()
            for cid, customer in latest.items():
                if existing.get(cid) == payloads[cid]:
                    continue
                self._upsert(
                    session,
                    CustomerTable,
                    ["id"],
                    {
                        "id": cid,
                        "external_customer_id": customer.external_customer_id,
                        "payment_provider": customer.payment_provider,
                        "payment_provider_id": customer.payment_provider_id,
                        "payload_json": payloads[cid],
                        "updated_at": now,
                    },
                    [
                        "external_customer_id",
                        "payment_provider",
                        "payment_provider_id",
                        "payload_json",
                        "updated_at",
                    ],
                )
                written += 1
        return written

    def get_customer(self, customer_id: str) -> Customer | None:
        with self._read() as session:
            payload = session.exec(
                select(CustomerTable.payload_json).where(CustomerTable.id == customer_id)
            ).first()
        return None if payload is None else Customer.model_validate_json(payload)

    # ---- customer links

    def link_customer(
        self, connection_id: str, customer_id: str, provider_customer_id: str
    ) -> None:
        """Record (or re-verify) the provider customer an Orb customer maps to."""
        with self._write() as session:
            self._upsert(
                session,
                CustomerLinkTable,
                ["connection_id", "customer_id"],
                {
                    "connection_id": connection_id,
                    "customer_id": customer_id,
                    "provider_customer_id": provider_customer_id,
                    "verified_at": _utcnow(),
                },
                ["provider_customer_id", "verified_at"],
            )

    def get_customer_link(self, connection_id: str, customer_id: str) -> str | None:
        with self._read() as session:
            return session.exec(
                select(CustomerLinkTable.provider_customer_id)
                .where(CustomerLinkTable.connection_id == connection_id)
                .where(CustomerLinkTable.customer_id == customer_id)
            ).first()
