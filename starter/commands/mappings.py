"""billbridge mappings set|list|delete|import|export: billing items -> provider items."""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

from billbridge.activities.export import ExportActivities
from billbridge.activities.secrets import SecretError
from billbridge.activities.store import Store
from billbridge.core.breakdown import TAX_KEY_PREFIX
from billbridge.core.config import Settings
from billbridge.core.errors import ExportError, ProviderItemMissing
from billbridge.starter.commands.common import (
    Subparsers,
    command,
    connection_ids,
    open_store,
    print_json,
    resolve_connection,
    signal_waiting_exports,
    unknown_connection,
)
from billbridge.workers.codec import CodecKeyError

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


def _check_provider_item(
    store: Store,
    settings: Settings,
    provider_name: str,
    connection: str,
    provider_item: str,
    billing_item: str = "",
) -> bool:
    """Whether the provider has `provider_item` (or cannot say): False only when the provider
    answered that it does not. Unreachable or not yet authorized: a warning, and True, so a
    mapping can be prepared before the connection works."""
    try:
        provider = ExportActivities(store, settings).provider(provider_name, connection)
        # A tax: key names a tax code (QuickBooks), checked as one where the provider has them.
        check_tax_code = getattr(provider, "resolve_tax_codes", None)
        if billing_item.startswith(TAX_KEY_PREFIX) and check_tax_code is not None:
            check_tax_code([provider_item])
        else:
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
    settings = Settings.from_env()
    with open_store(settings) as store:
        found = resolve_connection(store, args.connection)
        if found is None:
            return unknown_connection(args.connection, connection_ids(store))
        # Export records (what waiting exports are found by) carry the provider, so a fix on
        # any of its connections signals those waiting on the provider: a re-check is harmless.
        provider = found[0]
        if args.action == "set":
            if not args.billing_item or not args.provider_item:
                print(
                    "billbridge: mappings set CONNECTION BILLING_ITEM PROVIDER_ITEM",
                    file=sys.stderr,
                )
                return 2
            if not _check_provider_item(
                store, settings, provider, args.connection, args.provider_item, args.billing_item
            ):
                return 1
            store.set_mapping(args.connection, args.billing_item, args.provider_item)
            print(f"{args.connection}: {args.billing_item} -> {args.provider_item}")
            signal_waiting_exports(settings, connection_id=provider)
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
            signal_waiting_exports(settings, connection_id=provider)
        elif args.action == "export":
            writer = csv.writer(sys.stdout, lineterminator="\n")
            writer.writerow(CSV_COLUMNS)
            writer.writerows(store.list_mappings(args.connection).items())
        else:
            print_json(store.list_mappings(args.connection))
    return 0


def add_parser(sub: Subparsers) -> None:
    mappings = command(
        sub,
        "mappings",
        "map billing items to provider items",
        cmd_mappings,
        ["set", "list", "delete", "import", "export"],
    )
    mappings.add_argument("connection", help="connection id, e.g. stripe_invoice")
    mappings.add_argument(
        "billing_item",
        nargs="?",
        help="billing item id, adjustment:<kind>, tax:<rate>|tax:none|tax:* (a QuickBooks tax "
        "code), or * for the default item (import: the CSV file)",
    )
    mappings.add_argument("provider_item", nargs="?", help="provider product/price id")
