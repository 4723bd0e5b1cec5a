"""What several command groups share: the store, signalling the exports a fix concerns,
printing, and the shape of a command's parser."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeAlias

from billbridge.activities.providers import PROVIDERS
from billbridge.activities.store import ConnectionRow, Store
from billbridge.core.config import Settings
from billbridge.starter.door import retry_exports_concerned, retry_waiting_exports
from billbridge.workers.client import connect
from billbridge.workers.codec import load_codec
from billbridge.workers.operator_errors import explain, store_unavailable

if TYPE_CHECKING:  # subscriptable for the type checker only
    Subparsers: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]
else:
    Subparsers = argparse._SubParsersAction


def command(
    sub: Subparsers,
    name: str,
    help_text: str,
    func: Callable[[argparse.Namespace], int],
    actions: list[str],
) -> argparse.ArgumentParser:
    """A command group: `billbridge NAME ACTION ...`, run by `func`."""
    parser = sub.add_parser(name, help=help_text)
    parser.add_argument("action", choices=actions)
    parser.set_defaults(func=func)
    return parser


def print_json(value: object) -> None:
    print(json.dumps(value, indent=2, default=str))


def open_store(settings: Settings) -> Store:
    """The store DATABASE_URL names; StoreUnavailable (one line, the URL without password)
    when it cannot be opened. A database that refuses connections raises sqlalchemy's
    OperationalError, which the CLI reports the same way."""
    try:
        return Store(settings.database_url)
    except OSError as err:  # e.g. the SQLite file's folder cannot be created
        raise store_unavailable(settings, str(err)) from err


def store_from_env() -> Store:
    return open_store(Settings.from_env())


async def signal_waiting(
    settings: Settings,
    *,
    connection_id: str | None = None,
    customer_ids: Sequence[str] | None = None,
) -> int:
    """Signal the exports that need attention to check again; how many were signalled.

    With a connection or customers, only the waiting exports that fix concerns (read from the
    store); without, every waiting export (`attention retry`). Raises TemporalUnreachable when
    Temporal cannot be reached.
    """
    address = settings.temporal_address or "127.0.0.1:7233"
    client = await connect(address, settings.temporal_namespace, codec=load_codec(settings))
    if connection_id is None and customer_ids is None:
        return await retry_waiting_exports(client)
    with open_store(settings) as store:
        return await retry_exports_concerned(
            client, store, connection_id=connection_id, customer_ids=customer_ids
        )


def signal_waiting_exports(
    settings: Settings | None = None,
    *,
    connection_id: str | None = None,
    customer_ids: Sequence[str] | None = None,
) -> None:
    """After a fix, let the exports it concerns try again (prints what it did).

    A connection's fix (mapping, credentials, settings): those waiting on it; a customer's:
    that customer's exports.
    """
    settings = settings or Settings.from_env()
    try:
        count = asyncio.run(
            signal_waiting(settings, connection_id=connection_id, customer_ids=customer_ids)
        )
    except Exception as err:  # the fix is stored either way; say how to apply it later
        explained = explain(err, settings)
        print(
            f"note: could not signal waiting exports "
            f"({explained.message if explained else err}); run `billbridge attention retry` "
            "once Temporal is reachable",
            file=sys.stderr,
        )
        return
    if count:
        print(f"signalled {count} export(s) waiting for attention")


def connection_ids(store: Store) -> list[str]:
    """Every connection: each provider's default one (named after it, usable without a stored
    row on the environment's credentials) and every stored one."""
    return sorted(set(PROVIDERS) | {row.id for row in store.list_connections()})


def resolve_connection(
    store: Store, connection_id: str | None
) -> tuple[str, ConnectionRow | None] | None:
    """The provider of a connection and its stored row; None when there is no such connection.

    A stored connection's provider is its row's; a provider's name without a row is that
    provider's default connection."""
    if connection_id is None:
        return None
    row = store.get_connection(connection_id)
    if row is not None:
        return row.provider, row
    return (connection_id, None) if connection_id in PROVIDERS else None


def unknown_connection(connection: str | None, known: Sequence[str] | None = None) -> int:
    """known: what the argument may be (default: the providers)."""
    print(
        f"billbridge: connection: {connection!r} is not one of {sorted(known or PROVIDERS)}",
        file=sys.stderr,
    )
    return 2
