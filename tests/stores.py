"""The store on both databases: the fixtures of the tests that must hold on SQLite and on
PostgreSQL (a throwaway database per test module). A test module imports them:

    from stores import both_database_urls, both_databases_store, throwaway_postgres  # noqa: F401

and its tests ask for `store`, `database_url` or `postgres_url` (the fixtures' names).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from billbridge.activities.store import Store, _StoreModel
from conftest import require_postgres

PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture(scope="module", name="postgres_url")
def throwaway_postgres() -> Iterator[str]:
    """A throwaway PostgreSQL database for the module, dropped at its end. Without PostgreSQL
    the tests skip with a message, or fail where BILLBRIDGE_REQUIRE_POSTGRES=1 (CI)."""
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        if require_postgres():
            pytest.fail(f"PostgreSQL not reachable at 127.0.0.1:5432: {exc}")
        pytest.skip(f"PostgreSQL not reachable at 127.0.0.1:5432: {exc}")
    name = f"billbridge_test_{secrets.token_hex(6)}"
    with admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield f"postgresql://postgres@127.0.0.1:5432/{name}"
        finally:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture(params=["sqlite", "postgresql"], name="database_url")
def both_database_urls(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        # A folder that does not exist yet: the store creates it.
        return f"sqlite:///{tmp_path}/nested/dir/billbridge.db"
    url: str = request.getfixturevalue("postgres_url")
    return url


def drop_all(store: Store) -> None:
    """Drop every table: a PostgreSQL database is shared by its module's tests."""
    _StoreModel.metadata.drop_all(store._engine)


@pytest.fixture(name="store")
def both_databases_store(database_url: str) -> Iterator[Store]:
    s = Store(database_url)
    try:
        yield s
    finally:
        if s.dialect == "postgresql":
            drop_all(s)
        s.close()
