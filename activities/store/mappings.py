"""Item mappings: which provider item an Orb item (or adjustment key) becomes, per connection."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sqlmodel import col, select

from billbridge.activities.store.base import StoreBase
from billbridge.activities.store.helpers import _chunks, _utcnow
from billbridge.activities.store.tables import ItemMappingTable


class MappingMixin(StoreBase):
    """Per-connection item mappings: set (one or many at once), read, list, delete."""

    def set_mapping(self, connection_id: str, billing_item_id: str, provider_item_id: str) -> None:
        """Map an Orb item id (or an adjustment key such as ``adjustment:discount``, or
        ``*`` for the connection's default item, or ``tax:<rate>`` / ``tax:none`` / ``tax:*``
        for a QuickBooks tax code) to the provider's item/product/price (or tax code) id."""
        self.set_mappings(connection_id, {billing_item_id: provider_item_id})

    def set_mappings(self, connection_id: str, mappings: Mapping[str, str]) -> None:
        """Set many mappings in one transaction: all of them or none."""
        now = _utcnow()
        with self._write() as session:
            for billing_item_id, provider_item_id in mappings.items():
                self._upsert(
                    session,
                    ItemMappingTable,
                    ["connection_id", "billing_item_id"],
                    {
                        "connection_id": connection_id,
                        "billing_item_id": billing_item_id,
                        "provider_item_id": provider_item_id,
                        "updated_at": now,
                    },
                    ["provider_item_id", "updated_at"],
                )

    def delete_mapping(self, connection_id: str, billing_item_id: str) -> bool:
        """Remove a mapping; False if there was none."""
        with self._write() as session:
            row = session.exec(
                select(ItemMappingTable)
                .where(ItemMappingTable.connection_id == connection_id)
                .where(ItemMappingTable.billing_item_id == billing_item_id)
            ).first()
            if row is None:
                return False
            session.delete(row)
            return True

    def get_mappings(self, connection_id: str, billing_item_ids: Iterable[str]) -> dict[str, str]:
        """The mapped ones among ``billing_item_ids`` (unmapped ids are simply absent)."""
        wanted = list(dict.fromkeys(billing_item_ids))
        found: dict[str, str] = {}
        if not wanted:
            return found
        with self._read() as session:
            for chunk in _chunks(wanted):
                rows = session.exec(
                    select(ItemMappingTable.billing_item_id, ItemMappingTable.provider_item_id)
                    .where(ItemMappingTable.connection_id == connection_id)
                    .where(col(ItemMappingTable.billing_item_id).in_(chunk))
                ).all()
                found.update(dict(rows))
        return found

    def list_mappings(self, connection_id: str) -> dict[str, str]:
        with self._read() as session:
            rows = session.exec(
                select(ItemMappingTable.billing_item_id, ItemMappingTable.provider_item_id)
                .where(ItemMappingTable.connection_id == connection_id)
                .order_by(col(ItemMappingTable.billing_item_id))
            ).all()
        return dict(rows)
