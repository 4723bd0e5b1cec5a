"""Operator commands on the store: item mappings and the export audit trail.

billbridge mappings set CONNECTION BILLING_ITEM PROVIDER_ITEM   (BILLING_ITEM `*`: default item)
billbridge mappings list|export CONNECTION                      (export: CSV on stdout)
billbridge mappings delete CONNECTION BILLING_ITEM
billbridge mappings import CONNECTION mappings.csv               (all rows or none)
billbridge exports list [--status S]
billbridge exports show INVOICE_ID                               (record + every attempt)

A command that cannot do what it was asked says so and exits non-zero: an unknown connection, a
provider item the provider does not have, an empty API key, a status that does not exist.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import dataclasses
import io
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pydantic

from billbridge.activities.export import ExportActivities
from billbridge.activities.oauth import OAuthGrant, revoke_grant
from billbridge.activities.providers import OAUTH_APPS, PROVIDERS
from billbridge.activities.providers.base import ConnectionConfig
from billbridge.activities.secrets import SecretBox, SecretError
from billbridge.activities.store import ConnectionRow, Store
from billbridge.core.config import Settings, is_local_url
from billbridge.core.connections import ConnectionSettings
from billbridge.core.errors import ExportError, ProviderItemMissing
from billbridge.core.messages import ExportStatus
from billbridge.core.models import EXPORTABLE_PROVIDERS, format_validation_error
from billbridge.starter.door import retry_exports_concerned, retry_waiting_exports
from billbridge.workers.client import connect
from billbridge.workers.codec import CodecKeyError, load_codec
from billbridge.workers.operator_errors import explain, store_unavailable

CSV_COLUMNS = ("billing_item_id", "provider_item_id")


class BadMappingsFile(ValueError):
    """A mappings CSV that cannot be imported; names the row and column."""


def parse_mappings_csv(text: str) -> dict[str, str]:
    """Rows of `billing_item_id,provider_item_id` (header required); every problem named."""
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None or not set(CSV_COLUMNS) <= set(reader.fieldnames):
        raise BadMappingsFile(
            f"header: expected columns {', '.join(CSV_COLUMNS)}, got {reader.fieldnames or []}"
        )
    mappings: dict[str, str] = {}
    problems = []
    for row_number, row in enumerate(reader, start=2):  # line 1 is the header
        item = (row.get("billing_item_id") or "").strip()
        target = (row.get("provider_item_id") or "").strip()
        if not item:
            problems.append(f"row {row_number}, billing_item_id: empty")
        if not target:
            problems.append(f"row {row_number}, provider_item_id: empty")
        if item and item in mappings and mappings[item] != target:
            problems.append(f"row {row_number}, billing_item_id: {item} is mapped twice")
        if item and target:
            mappings[item] = target
    if problems:
        raise BadMappingsFile("; ".join(problems))
    return mappings


async def _signal_waiting(
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
            _signal_waiting(settings, connection_id=connection_id, customer_ids=customer_ids)
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


def cmd_attention(args: argparse.Namespace) -> int:
    if args.action == "retry":
        # Signalling is all this command does, so failing to is its failure: the error
        # (Temporal unreachable: exit 3) propagates to the CLI's one-line report.
        count = asyncio.run(_signal_waiting(Settings.from_env()))
        print(f"signalled {count} export(s) waiting for attention")
        return 0
    with _store() as store:
        rows = store.list_exports("needs_attention")
    print(
        json.dumps(
            [
                {
                    "invoice_id": r.invoice_id,
                    "provider": r.provider,
                    "what_to_fix": r.error,
                    "since": r.updated_at.isoformat(timespec="seconds"),
                }
                for r in rows
            ],
            indent=2,
        )
    )
    return 0


def open_store(settings: Settings) -> Store:
    """The store DATABASE_URL names; StoreUnavailable (one line, the URL without password)
    when it cannot be opened. A database that refuses connections raises sqlalchemy's
    OperationalError, which the CLI reports the same way."""
    try:
        return Store(settings.database_url)
    except OSError as err:  # e.g. the SQLite file's folder cannot be created
        raise store_unavailable(settings, str(err)) from err


def _store() -> Store:
    return open_store(Settings.from_env())


def _unknown_connection(connection: str) -> int:
    print(
        f"billbridge: connection: {connection!r} is not one of {sorted(PROVIDERS)}",
        file=sys.stderr,
    )
    return 2


def _check_provider_item(
    store: Store, settings: Settings, connection: str, provider_item: str
) -> bool:
    """Whether the provider has `provider_item` (or cannot say): False only when the provider
    answered that it does not. Unreachable or not yet authorized: a warning, and True, so a
    mapping can be prepared before the connection works."""
    try:
        provider = ExportActivities(store, settings).provider(connection, connection)
        provider.resolve_items([provider_item])
    except ProviderItemMissing as err:
        print(f"billbridge: {connection}: {err}; nothing stored", file=sys.stderr)
        return False
    except (ExportError, SecretError, CodecKeyError) as err:
        print(
            f"warning: {connection}: could not check that {provider_item} exists "
            f"({type(err).__name__}: {err}); stored anyway",
            file=sys.stderr,
        )
    return True


def cmd_mappings(args: argparse.Namespace) -> int:
    if args.connection not in PROVIDERS:
        return _unknown_connection(args.connection)
    settings = Settings.from_env()
    with open_store(settings) as store:
        if args.action == "set":
            if not args.billing_item or not args.provider_item:
                print(
                    "billbridge: mappings set CONNECTION BILLING_ITEM PROVIDER_ITEM",
                    file=sys.stderr,
                )
                return 2
            if not _check_provider_item(store, settings, args.connection, args.provider_item):
                return 1
            store.set_mapping(args.connection, args.billing_item, args.provider_item)
            print(f"{args.connection}: {args.billing_item} -> {args.provider_item}")
            signal_waiting_exports(settings, connection_id=args.connection)
        elif args.action == "delete":
            if not args.billing_item:
                print("billbridge: mappings delete CONNECTION BILLING_ITEM", file=sys.stderr)
                return 2
            if not store.delete_mapping(args.connection, args.billing_item):
                print(
                    f"billbridge: {args.billing_item} is not mapped on {args.connection}",
                    file=sys.stderr,
                )
                return 1
            print(f"{args.connection}: {args.billing_item} unmapped")
        elif args.action == "import":
            if not args.billing_item:
                print("billbridge: mappings import CONNECTION FILE.csv", file=sys.stderr)
                return 2
            path = args.billing_item
            try:
                text = sys.stdin.read() if path == "-" else Path(path).read_text()
                mappings = parse_mappings_csv(text)
            except (OSError, BadMappingsFile) as err:
                print(f"billbridge: {path}: {err}", file=sys.stderr)
                return 2
            store.set_mappings(args.connection, mappings)
            print(f"{args.connection}: imported {len(mappings)} mapping(s)")
            signal_waiting_exports(settings, connection_id=args.connection)
        elif args.action == "export":
            writer = csv.writer(sys.stdout, lineterminator="\n")
            writer.writerow(CSV_COLUMNS)
            writer.writerows(store.list_mappings(args.connection).items())
        else:
            print(json.dumps(store.list_mappings(args.connection), indent=2))
    return 0


def cmd_exports(args: argparse.Namespace) -> int:
    with _store() as store:
        if args.action == "show":
            if not args.invoice_id:
                print("billbridge: exports show INVOICE_ID", file=sys.stderr)
                return 2
            record = store.get_export(args.invoice_id)
            if record is None:
                print(f"billbridge: no export of invoice {args.invoice_id}", file=sys.stderr)
                return 1
            attempts = [dataclasses.asdict(a) for a in store.list_attempts(args.invoice_id)]
            print(
                json.dumps(
                    {**dataclasses.asdict(record), "attempts": attempts}, indent=2, default=str
                )
            )
            return 0
        rows = store.list_exports(args.status)
    headers = (
        "invoice",
        "provider",
        "status",
        "external id",
        "billing total",
        "provider total",
        "updated",
        "error",
    )
    table = [
        (
            r.invoice_id,
            r.provider,
            r.status,
            r.external_id or "-",
            r.billing_total or "-",
            r.provider_total or "-",
            r.updated_at.isoformat(timespec="seconds"),
            (r.error or "")[:60],
        )
        for r in rows
    ]
    widths = [
        max(len(str(cell)) for cell in column) for column in zip(headers, *table, strict=False)
    ]
    for line in (headers, *table):
        print("  ".join(str(cell).ljust(width) for cell, width in zip(line, widths, strict=True)))
    return 0


def _connection_settings(
    name: str, row: ConnectionRow | None, updates: list[str]
) -> ConnectionSettings:
    """Current settings with `key=value` updates applied; errors name the setting."""
    current = dict(row.settings) if row is not None else {}
    for update in updates:
        key, sep, value = update.partition("=")
        if not sep:
            raise ValueError(f"{update}: expected key=value")
        if not ConnectionSettings.applies_to(key.strip(), name):
            raise ValueError(f"{key.strip()}: not a setting of {name} connections")
        current[key.strip()] = None if value.strip() in ("", "none") else value.strip()
    try:
        return ConnectionSettings.model_validate(current)
    except pydantic.ValidationError as err:
        raise ValueError(format_validation_error(err)) from err


def _read_api_key(args: argparse.Namespace) -> str:
    """The key `connections add` was given, exactly one way; never empty (an empty key would
    silently keep the old one)."""
    given = [
        flag
        for flag, value in (
            ("--api-key-env", args.api_key_env),
            ("--api-key-file", args.api_key_file),
            ("--api-key", args.api_key),  # lands in shell history: prefer the others
        )
        if value is not None
    ]
    if not given:
        raise ValueError(
            f"connections add {args.connection} needs the key: --api-key-env VAR, "
            "--api-key-file FILE or --api-key KEY"
        )
    if len(given) > 1:
        raise ValueError(f"give the key one way, not {' and '.join(given)}")
    if args.api_key_env is not None:
        value = (os.environ.get(args.api_key_env) or "").strip()
        source = f"--api-key-env: {args.api_key_env} is not set or empty"
    elif args.api_key_file is not None:
        value = Path(args.api_key_file).read_text().strip()
        source = f"--api-key-file: {args.api_key_file} is empty"
    else:
        value = args.api_key.strip()
        source = "--api-key: the key is empty"
    if not value:
        raise ValueError(f"{source}; the stored key is unchanged")
    return value


def cmd_connections(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    with open_store(settings) as store:
        if args.action == "list":
            return _list_connections(store, settings, check=not args.no_verify)
        if args.connection not in PROVIDERS:
            return _unknown_connection(args.connection)
        row = store.get_connection(args.connection)
        if args.action == "revoke":
            return _revoke(args.connection, store, settings, row)
        oauth = args.connection in OAUTH_APPS
        if args.action == "authorize" and not oauth:
            print(
                f"billbridge: {args.connection} takes an API key: "
                f"`billbridge connections add {args.connection} --api-key-env VAR`",
                file=sys.stderr,
            )
            return 2
        if args.action == "add" and oauth:
            print(
                f"billbridge: {args.connection} is authorized with OAuth: "
                f"`billbridge connections authorize {args.connection}`",
                file=sys.stderr,
            )
            return 2
        if args.action == "authorize":
            code = _authorize(args, store, settings)
            if code:
                return code
            # authorize proved the new grant with an API call (companyinfo) before storing it.
            code = _list_connections(
                store, settings, only=args.connection, health="credentials accepted (just now)"
            )
            signal_waiting_exports(settings, connection_id=args.connection)
            return code
        try:
            new_settings = _connection_settings(
                args.connection, row, args.settings if args.action == "set" else []
            )
            api_key = _read_api_key(args) if args.action == "add" else None
            sealed = row.credentials_ref if row is not None else None
            if api_key:
                sealed = SecretBox.from_settings(settings).seal(api_key, args.connection)
        except (ValueError, OSError, CodecKeyError) as err:
            print(f"billbridge: {err}", file=sys.stderr)
            return 2
        enabled = {"enable": True, "disable": False}.get(
            args.action, row.enabled if row is not None else True
        )
        health = "not checked (`billbridge connections list` checks it)"
        if api_key and args.no_verify:
            health = "not checked (--no-verify)"
        elif api_key:
            config = ConnectionConfig(args.connection, api_key, new_settings, enabled)
            try:
                PROVIDERS[args.connection](settings, config).check_credentials()
            except ExportError as err:
                print(f"billbridge: {args.connection}: credentials refused: {err}", file=sys.stderr)
                return 1
            health = "credentials accepted (just now)"
        store.upsert_connection(
            args.connection,
            args.connection,
            enabled=enabled,
            credentials_ref=sealed,
            settings=new_settings.model_dump(mode="json"),
        )
        code = _list_connections(store, settings, only=args.connection, health=health)
    if args.action != "disable":
        signal_waiting_exports(settings, connection_id=args.connection)
    return code


def _authorize(args: argparse.Namespace, store: Store, settings: Settings) -> int:
    from billbridge.starter.authorize import AuthorizationFailed, authorize, store_grant

    try:
        SecretBox.from_settings(settings)  # a missing key fails before the browser step
        grant = authorize(
            settings,
            args.connection,
            port=args.port,
            timeout=args.timeout,
            open_browser=args.open_browser,
        )
    except (AuthorizationFailed, CodecKeyError) as err:
        print(f"billbridge: {args.connection}: {err}", file=sys.stderr)
        return 1
    except ExportError as err:
        print(f"billbridge: {args.connection}: {err.type_name}: {err}", file=sys.stderr)
        return 1
    store_grant(store, settings, args.connection, grant)
    print(f"{args.connection}: authorized (company {grant.company_id or '-'})")
    return 0


def _revoke(name: str, store: Store, settings: Settings, row: ConnectionRow | None) -> int:
    """Disconnect: revoke the OAuth grant at the provider and forget the stored credential."""
    if row is None or not row.credentials_ref:
        print(f"billbridge: {name} holds no stored credential", file=sys.stderr)
        return 1
    code = 0
    if name in OAUTH_APPS:
        try:
            box = SecretBox.from_settings(settings)
            grant = OAuthGrant.from_json(box.open(row.credentials_ref, name))
            revoke_grant(OAUTH_APPS[name](settings).endpoints, grant)
        except (ExportError, SecretError, CodecKeyError) as err:
            # Forgotten here all the same; the provider's own console can revoke it too.
            print(f"billbridge: {name}: could not revoke at the provider: {err}", file=sys.stderr)
            code = 1
    store.upsert_connection(
        name, name, enabled=row.enabled, credentials_ref=None, settings=row.settings
    )
    print(f"{name}: credential removed from the store")
    return code


def _credentials_report(
    name: str, row: ConnectionRow | None, activities: ExportActivities
) -> dict[str, object]:
    """How a connection is authenticated, without any secret."""
    if row is None or not row.credentials_ref:
        if name in OAUTH_APPS:
            return {"credentials": f"not authorized: `billbridge connections authorize {name}`"}
        return {"credentials": "environment default"}
    if name not in OAUTH_APPS:
        return {"credentials": "sealed in the store"}
    try:
        grant = OAuthGrant.from_json(activities.secrets().open(row.credentials_ref, name))
    except (ExportError, SecretError, CodecKeyError) as err:
        return {"credentials": f"error: {err}"}
    return {"credentials": "OAuth grant sealed in the store", **grant.summary()}


def _list_connections(
    store: Store,
    settings: Settings,
    *,
    only: str | None = None,
    check: bool = True,
    health: str | None = None,
) -> int:
    """Print every connection (or `only`): where it exports to, its credentials and health.

    health: what the caller just found out (e.g. the key it verified); else the connection is
    checked live when `check`, or reported "not checked".
    """
    activities = ExportActivities(store, settings)
    exports = store.list_exports()
    endpoints = settings.endpoints()
    report = []
    for name in sorted(PROVIDERS):
        if only is not None and name != only:
            continue
        status = health or "not checked (--no-verify)"
        if health is None and check:
            try:
                activities.provider(name, name).check_credentials()
                status = "credentials accepted"
            except (ExportError, SecretError, CodecKeyError) as err:
                status = f"error: {err}"
        row = store.get_connection(name)  # read after the check, which may rotate a token
        ours = [e for e in exports if e.provider == name]
        succeeded = [e.updated_at for e in ours if e.status == "exported"]
        failed = [e for e in ours if e.status == "failed"]
        last_error = max(failed, key=lambda e: e.updated_at) if failed else None
        report.append(
            {
                "connection": name,
                # Where exports go (core/config.py decides); a local address is an emulator.
                "endpoint": endpoints.get(name),
                "local_emulator": is_local_url(endpoints[name]) if name in endpoints else None,
                "enabled": row.enabled if row is not None else True,
                # Connected: it has credentials to use (stored, or the environment's default).
                "connected": bool(row is not None and row.credentials_ref)
                or name not in OAUTH_APPS,
                **_credentials_report(name, row, activities),
                "health": status,
                "settings": row.settings
                if row is not None
                else ConnectionSettings().model_dump(mode="json"),
                "last_success": max(succeeded).isoformat() if succeeded else None,
                "last_error": f"{last_error.invoice_id}: {last_error.error}"
                if last_error
                else None,
            }
        )
    print(json.dumps(report, indent=2, default=str))
    return 0


SETTINGS = ("default_provider", "export_customers")


def parse_setting(key: str, value: str) -> object:
    """The stored value of an account setting given on the command line; errors name the key."""
    if key == "default_provider":
        if value == "none":
            return None
        if value not in EXPORTABLE_PROVIDERS:
            raise ValueError(
                f"default_provider: {value!r} is not one of {sorted(EXPORTABLE_PROVIDERS)} "
                "(or none)"
            )
        return value
    if key == "export_customers":
        if value == "all":
            return "all"
        customers = [c.strip() for c in value.split(",") if c.strip()]
        if not customers:
            raise ValueError("export_customers: give `all` or a comma-separated list of ids")
        return customers
    raise ValueError(f"{key}: unknown setting; known: {', '.join(SETTINGS)}")


def cmd_settings(args: argparse.Namespace) -> int:
    with _store() as store:
        if args.action == "set":
            if not args.key or args.value is None:
                print("billbridge: settings set KEY VALUE", file=sys.stderr)
                return 2
            try:
                value = parse_setting(args.key, args.value)
            except ValueError as err:
                print(f"billbridge: {err}", file=sys.stderr)
                return 2
            store.set_account_setting(args.key, value)
        settings: dict[str, object] = {"default_provider": None, "export_customers": "all"}
        settings.update(store.account_settings())
        print(json.dumps(settings, indent=2))
    return 0


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    def command(
        name: str, help_text: str, func: Callable[[argparse.Namespace], int], actions: list[str]
    ) -> argparse.ArgumentParser:
        parser = sub.add_parser(name, help=help_text)
        parser.add_argument("action", choices=actions)
        parser.set_defaults(func=func)
        return parser

    mappings = command(
        "mappings",
        "map billing items to provider items",
        cmd_mappings,
        ["set", "list", "delete", "import", "export"],
    )
    mappings.add_argument("connection", help="connection id, e.g. stripe_invoice")
    mappings.add_argument(
        "billing_item",
        nargs="?",
        help="billing item id, adjustment:<kind>, or * for the default item (import: the CSV file)",
    )
    mappings.add_argument("provider_item", nargs="?", help="provider product/price id")

    connections = command(
        "connections",
        "providers: credentials, settings, health",
        cmd_connections,
        ["list", "add", "authorize", "revoke", "set", "enable", "disable"],
    )
    connections.add_argument("connection", nargs="?", help="e.g. stripe_invoice")
    connections.add_argument("settings", nargs="*", help="with set: key=value ...")
    connections.add_argument("--api-key-env", help="with add: read the API key from this variable")
    connections.add_argument("--api-key-file", help="with add: read the API key from this file")
    connections.add_argument("--api-key", help="with add: the API key (visible in shell history)")
    connections.add_argument(
        "--no-verify",
        action="store_true",
        help="with add: skip the key check; with list: skip the live health checks",
    )
    connections.add_argument(
        "--port",
        type=int,
        default=8765,
        help="with authorize: local callback port (redirect URI http://localhost:PORT/callback)",
    )
    connections.add_argument(
        "--timeout", type=float, default=300.0, help="with authorize: seconds to wait"
    )
    connections.add_argument(
        "--open-browser", action="store_true", help="with authorize: open the URL in a browser"
    )

    settings = command("settings", "account-wide export settings", cmd_settings, ["show", "set"])
    settings.add_argument("key", nargs="?", choices=SETTINGS)
    settings.add_argument("value", nargs="?")

    attention = command("attention", "exports waiting for a fix", cmd_attention, ["list", "retry"])
    del attention

    exports = command("exports", "the export audit trail", cmd_exports, ["list", "show"])
    exports.add_argument("invoice_id", nargs="?", help="with show: the billing invoice id")
    exports.add_argument(
        "--status",
        choices=[status.value for status in ExportStatus],
        help="with list: only exports with this status",
    )
