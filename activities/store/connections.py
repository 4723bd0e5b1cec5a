"""Connections (a provider, its sealed credential, its settings) and account-wide settings."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import update
from sqlmodel import col, select

from billbridge.activities.store.base import StoreBase
from billbridge.activities.store.helpers import _aware, _dumps, _utcnow
from billbridge.activities.store.tables import AccountSettingTable, ConnectionRow, ConnectionTable


class ConnectionMixin(StoreBase):
    """Connections, compare-and-swap of their credentials, and the account's settings."""

    def upsert_connection(
        self,
        connection_id: str,
        provider: str,
        *,
        enabled: bool = True,
        credentials_ref: str | None = None,
        settings: dict[str, Any] | None = None,
    ) -> None:
        """Create or replace a connection (every attribute is set to the given values)."""
        now = _utcnow()
        with self._write() as session:
            self._upsert(
                session,
                ConnectionTable,
                ["id"],
                {
                    "id": connection_id,
                    "provider": provider,
                    "enabled": enabled,
                    "credentials_ref": credentials_ref,
                    "settings_json": _dumps(settings or {}),
                    "created_at": now,
                    "updated_at": now,
                },
                ["provider", "enabled", "credentials_ref", "settings_json", "updated_at"],
            )

    def get_connection(self, connection_id: str) -> ConnectionRow | None:
        with self._read() as session:
            rec = session.get(ConnectionTable, connection_id)
            return None if rec is None else _connection_row(rec)

    def replace_credentials(
        self, connection_id: str, expected_ref: str | None, credentials_ref: str
    ) -> bool:
        """Replace a connection's sealed credential only if it is still `expected_ref`.

        Workers that refresh an OAuth grant at the same time race here: one wins, the others
        see False and adopt the winner's grant instead of overwriting it with an older one.
        """
        table = ConnectionTable.__table__  # type: ignore[attr-defined]
        current = table.c.credentials_ref
        stmt = (
            update(table)
            .where(table.c.id == connection_id)
            .where(current.is_(None) if expected_ref is None else current == expected_ref)
            .values(credentials_ref=credentials_ref, updated_at=_utcnow())
        )
        with self._write() as session:
            return bool(session.connection().execute(stmt).rowcount)

    def list_connections(self) -> list[ConnectionRow]:
        """Every connection, by id, in one query (routing reads them for every export)."""
        with self._read() as session:
            recs = session.exec(select(ConnectionTable).order_by(col(ConnectionTable.id))).all()
            return [_connection_row(rec) for rec in recs]

    # ---- account settings

    def set_account_setting(self, key: str, value: object) -> None:
        with self._write() as session:
            self._upsert(
                session,
                AccountSettingTable,
                ["key"],
                {"key": key, "value_json": _dumps(value), "updated_at": _utcnow()},
                ["value_json", "updated_at"],
            )

    def account_settings(self) -> dict[str, object]:
        with self._read() as session:
            rows = session.exec(select(AccountSettingTable.key, AccountSettingTable.value_json))
            return {key: json.loads(value) for key, value in rows.all()}


def _connection_row(rec: ConnectionTable) -> ConnectionRow:
    return ConnectionRow(
        id=rec.id,
        provider=rec.provider,
        enabled=bool(rec.enabled),
        credentials_ref=rec.credentials_ref,
        settings=json.loads(rec.settings_json),
        created_at=_aware(rec.created_at),
        updated_at=_aware(rec.updated_at),
    )
