"""billbridge's persistent store (sqlmodel; SQLite file or PostgreSQL via psycopg 3).

Synchronous API, safe to share between threads (one short transaction per call). The
same SQLite file can be used by a worker and a CLI at the same time: the database runs in
WAL mode with a busy timeout, and write transactions start with ``BEGIN IMMEDIATE`` so two
writers queue up instead of failing with "database is locked" on lock upgrade.

Invoices are stored split: one ``invoices`` row with the invoice header (the Orb invoice
without ``line_items``) and one ``invoice_lines`` row per line, so an invoice with 10,000
lines is written with one bulk insert and read back page by page. JSON is stored in text
columns (portable across both databases); amounts are stored as their decimal strings.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Boolean, DateTime, Text, delete, event, update
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import registry
from sqlalchemy.pool import StaticPool
from sqlmodel import Field, Session, SQLModel, col, create_engine, select

from billbridge.core.models import Customer, Invoice, LineItem

__all__ = [
    "VOLATILE_INVOICE_FIELDS",
    "AttemptRow",
    "ConnectionRow",
    "ConnectionTable",
    "CustomerLinkTable",
    "CustomerTable",
    "ExportAttemptTable",
    "ExportRecordTable",
    "ExportRow",
    "InvoiceConflictError",
    "InvoiceLineTable",
    "InvoiceTable",
    "ItemMappingTable",
    "Store",
    "StoreError",
    "normalize_database_url",
]


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


# --------------------------------------------------------------------------- tables


class _StoreModel(SQLModel, registry=registry()):
    """Own registry/metadata: billbridge's tables never collide with other SQLModel users."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _ts() -> Any:
    return Field(default_factory=_utcnow, sa_type=DateTime(timezone=True))


class InvoiceTable(_StoreModel, table=True):
    __tablename__ = "invoices"

    id: str = Field(primary_key=True)
    customer_id: str = Field(index=True)
    currency: str
    total: str
    amount_due: str
    line_count: int
    header_json: str = Field(sa_type=Text)
    content_sha256: str
    received_at: datetime = _ts()


class InvoiceLineTable(_StoreModel, table=True):
    __tablename__ = "invoice_lines"

    invoice_id: str = Field(primary_key=True, foreign_key="invoices.id")
    position: int = Field(primary_key=True)
    line_id: str
    payload_json: str = Field(sa_type=Text)


class CustomerTable(_StoreModel, table=True):
    __tablename__ = "customers"

    id: str = Field(primary_key=True)
    external_customer_id: str | None = Field(default=None, index=True)
    payment_provider: str | None = None
    payment_provider_id: str | None = None
    payload_json: str = Field(sa_type=Text)
    updated_at: datetime = _ts()


class ConnectionTable(_StoreModel, table=True):
    __tablename__ = "connections"

    id: str = Field(primary_key=True)
    provider: str
    enabled: bool = Field(default=True, sa_type=Boolean)
    credentials_ref: str | None = None
    settings_json: str = Field(default="{}", sa_type=Text)
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class ItemMappingTable(_StoreModel, table=True):
    __tablename__ = "item_mappings"

    connection_id: str = Field(primary_key=True)
    billing_item_id: str = Field(primary_key=True)
    """An Orb item id, or an adjustment key such as ``adjustment:discount``."""
    provider_item_id: str
    updated_at: datetime = _ts()


class CustomerLinkTable(_StoreModel, table=True):
    __tablename__ = "customer_links"

    connection_id: str = Field(primary_key=True)
    customer_id: str = Field(primary_key=True)
    provider_customer_id: str
    verified_at: datetime = _ts()


class ExportRecordTable(_StoreModel, table=True):
    __tablename__ = "export_records"

    invoice_id: str = Field(primary_key=True)
    provider: str = Field(primary_key=True)
    status: str = "pending"
    external_id: str | None = None
    external_url: str | None = None
    billing_total: str | None = None
    provider_total: str | None = None
    provider_amount_due: str | None = None
    line_count: int | None = None
    request_count: int = 0
    error: str | None = Field(default=None, sa_type=Text)
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class ExportAttemptTable(_StoreModel, table=True):
    __tablename__ = "export_attempts"

    id: int | None = Field(default=None, primary_key=True)
    invoice_id: str = Field(index=True)
    provider: str
    step: str
    error: str = Field(sa_type=Text)
    at: datetime = _ts()


class AccountSettingTable(_StoreModel, table=True):
    """Account-wide export settings (default provider, which customers export), as JSON."""

    __tablename__ = "account_settings"

    key: str = Field(primary_key=True)
    value_json: str = Field(sa_type=Text)
    updated_at: datetime = _ts()


_TABLES = [
    AccountSettingTable,
    InvoiceTable,
    InvoiceLineTable,
    CustomerTable,
    ConnectionTable,
    ItemMappingTable,
    CustomerLinkTable,
    ExportRecordTable,
    ExportAttemptTable,
]


# --------------------------------------------------------------------------- row views


@dataclass(frozen=True)
class ConnectionRow:
    id: str
    provider: str
    enabled: bool
    credentials_ref: str | None
    settings: dict[str, Any]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class ExportRow:
    invoice_id: str
    provider: str
    status: str
    external_id: str | None
    external_url: str | None
    billing_total: str | None
    provider_total: str | None
    provider_amount_due: str | None
    line_count: int | None
    request_count: int
    error: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class AttemptRow:
    id: int
    invoice_id: str
    provider: str
    step: str
    error: str
    at: datetime


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


# --------------------------------------------------------------------------- helpers


def normalize_database_url(url: str) -> str:
    """``postgres://`` / ``postgresql://`` -> ``postgresql+psycopg://`` (psycopg 3)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _aware(moment: datetime) -> datetime:
    """SQLite gives naive datetimes back: everything is stored in UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _dumps(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _chunks(items: Sequence[str], size: int = 500) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _content_digest(header: dict[str, Any], line_payloads: Sequence[str]) -> str:
    stable = {k: v for k, v in header.items() if k not in VOLATILE_INVOICE_FIELDS}
    digest = hashlib.sha256(_dumps(stable).encode())
    for payload in line_payloads:
        digest.update(b"\n")
        digest.update(payload.encode())
    return digest.hexdigest()


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


# --------------------------------------------------------------------------- store


class Store:
    """All of billbridge's persistent state. One instance per process is enough."""

    def __init__(self, database_url: str) -> None:
        self._engine: Engine
        url = make_url(normalize_database_url(database_url))
        self.dialect = url.get_backend_name()
        if self.dialect not in {"sqlite", "postgresql"}:
            raise ValueError(f"unsupported database {self.dialect!r}: use sqlite or postgresql")
        if self.dialect == "sqlite":
            database = url.database
            in_memory = database in (None, "", ":memory:") or (url.query.get("mode") == "memory")
            if not in_memory:
                assert database is not None
                Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
                self._engine = create_engine(
                    url, connect_args={"check_same_thread": False, "timeout": 30}
                )
            else:
                self._engine = create_engine(
                    url, connect_args={"check_same_thread": False}, poolclass=StaticPool
                )
            self._install_sqlite_pragmas(self._engine)
            self._write_engine: Engine = self._engine.execution_options(billbridge_write=True)
        else:
            self._engine = create_engine(url, pool_pre_ping=True)
            self._write_engine = self._engine
        self._create_tables()

    def _create_tables(self) -> None:
        """``CREATE TABLE IF NOT EXISTS`` for every table; tolerates a concurrent creator."""
        tables = [t.__table__ for t in _TABLES]  # type: ignore[attr-defined]
        try:
            _StoreModel.metadata.create_all(self._write_engine, tables=tables)
        except DBAPIError:  # another process created them between our check and CREATE
            _StoreModel.metadata.create_all(self._write_engine, tables=tables)

    # ---- engine plumbing

    @staticmethod
    def _install_sqlite_pragmas(engine: Engine) -> None:
        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            # Let SQLAlchemy's "begin" event below emit BEGIN (pysqlite's own deferred
            # BEGIN handling would prevent BEGIN IMMEDIATE).
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(connection: Connection) -> None:
            write = connection.get_execution_options().get("billbridge_write", False)
            connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    @contextmanager
    def _read(self) -> Iterator[Session]:
        with Session(self._engine, expire_on_commit=False) as session:
            yield session

    @contextmanager
    def _write(self) -> Iterator[Session]:
        with Session(self._write_engine, expire_on_commit=False) as session, session.begin():
            yield session

    def _insert(self, table: type[SQLModel]) -> Any:
        """The dialect's INSERT (both support ON CONFLICT ... DO UPDATE / DO NOTHING)."""
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            return pg_insert(table)
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table)

    def _upsert(
        self,
        session: Session,
        table: type[SQLModel],
        keys: Sequence[str],
        values: dict[str, Any],
        update: Iterable[str],
    ) -> None:
        stmt = self._insert(table).values(**values)
        stmt = stmt.on_conflict_do_update(
            index_elements=list(keys),
            set_={name: getattr(stmt.excluded, name) for name in update},
        )
        session.connection().execute(stmt)

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # ---- invoices

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

    # ---- customers

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

    # ---- connections, item mappings, customer links

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
            if rec is None:
                return None
            return ConnectionRow(
                id=rec.id,
                provider=rec.provider,
                enabled=bool(rec.enabled),
                credentials_ref=rec.credentials_ref,
                settings=json.loads(rec.settings_json),
                created_at=_aware(rec.created_at),
                updated_at=_aware(rec.updated_at),
            )

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
        with self._read() as session:
            ids = session.exec(select(ConnectionTable.id).order_by(col(ConnectionTable.id))).all()
        return [row for row in (self.get_connection(i) for i in ids) if row is not None]

    def set_mapping(self, connection_id: str, billing_item_id: str, provider_item_id: str) -> None:
        """Map an Orb item id (or an adjustment key such as ``adjustment:discount``, or
        ``*`` for the connection's default item) to the provider's item/product/price id."""
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

    # ---- exports

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
