"""The store's engine plumbing, shared by every concern's mixin.

The same SQLite file can be used by a worker and a CLI at the same time: the database runs in
WAL mode with a busy timeout, and write transactions start with ``BEGIN IMMEDIATE`` so two
writers queue up instead of failing with "database is locked" on lock upgrade.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import StaticPool
from sqlmodel import Session, SQLModel, create_engine

from billbridge.activities.store.tables import _TABLES, _StoreModel


def normalize_database_url(url: str) -> str:
    """``postgres://`` / ``postgresql://`` -> ``postgresql+psycopg://`` (psycopg 3)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


class StoreBase:
    """Engine, sessions and dialect-aware inserts: what every concern's mixin builds on.

    Opening creates the tables if they are missing; each call runs one short transaction.
    """

    dialect: str
    """``"sqlite"`` or ``"postgresql"``."""

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

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
