"""billbridge reconcile --provider P [--connection ID] [--since YYYY-MM-DD] [--json]: what
billbridge exported to a provider against the provider's own list API, for an audit.

Expected: the store's export records of the provider with status `exported`, each billing
invoice's total and currency from the stored invoice. Found: the provider invoices its module
lists (`list_exported`: Stripe's invoice list, QuickBooks' query, BILL's invoice list, NetSuite's
SuiteQL). The comparison is core/reconcile.py's. No worker or Temporal is needed.

--since is an export-time window (not the invoices' issue dates): exports billbridge began on or
after that day (UTC), and provider invoices created on or after it. Providers are asked for the
invoices created from a day earlier (their clocks and time zones are not ours); the comparison
then keeps exactly the window.

Export records name the provider, not the connection: with several connections of one provider
(`connection.<provider>` chooses the one in use), records made through another connection before
a switch are expected of the chosen one too.

Exit status: 0 clean, 1 something duplicated, missing or mismatched, 2 a usage error (the
option is named), 3 the provider could not be read (its error is printed).
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from billbridge.activities.export import CONNECTION_SETTING, ExportActivities
from billbridge.activities.providers.base import InvoiceProvider
from billbridge.activities.store import Store
from billbridge.core.config import Settings
from billbridge.core.errors import ExportError
from billbridge.core.messages import ExportStatus
from billbridge.core.providers import PROVIDER_ENTRIES, ProviderEntry
from billbridge.core.reconcile import ExpectedInvoice, Finding, Reconciliation, reconcile
from billbridge.starter.commands.common import Subparsers, open_store, print_json

# How much earlier than --since the provider is asked for invoices: clock skew and the
# provider's own time zone (NetSuite filters by day in the account's).
PROVIDER_SLACK = timedelta(days=1)
EXIT_PROBLEMS, EXIT_USAGE, EXIT_PROVIDER = 1, 2, 3


def _usage(option: str, message: str) -> int:
    print(f"billbridge: {option}: {message}", file=sys.stderr)
    return EXIT_USAGE


def provider_entry(name: str) -> ProviderEntry | None:
    """The registry entry a --provider value names: its name (`stripe_invoice`, `bill.com`)
    or its slug (`stripe`, `billcom`)."""
    wanted = name.strip().lower()
    for entry in PROVIDER_ENTRIES:
        if wanted in (entry.name, entry.slug):
            return entry
    return None


def default_connection(store: Store, provider: str) -> str | None:
    """The connection exports to `provider` go through (activities/export.py decides the same
    way): its one stored connection; of several, the one `connection.<provider>` names; with
    none, the provider's default connection. None: several, and none chosen."""
    ids = [row.id for row in store.list_connections() if row.provider == provider]
    if not ids:
        return provider
    if len(ids) == 1:
        return ids[0]
    chosen = store.account_settings().get(f"{CONNECTION_SETTING}{provider}")
    return str(chosen) if chosen in ids else None


def expected_exports(
    store: Store, provider: InvoiceProvider, name: str
) -> tuple[list[ExpectedInvoice], set[str]]:
    """The invoices exported to provider `name`, and the refs of every invoice with an export
    record there (any status: those a provider invoice may belong to while its export is in
    progress or waits for attention)."""
    expected: list[ExpectedInvoice] = []
    known: set[str] = set()
    for record in store.list_exports():
        if record.provider != name:
            continue
        invoice = store.get_invoice_header(record.invoice_id)
        if invoice is None:
            continue
        ref = provider.export_ref(invoice)
        known.add(ref)
        if record.status != ExportStatus.EXPORTED:
            continue
        expected.append(
            ExpectedInvoice(
                invoice_id=invoice.id,
                ref=ref,
                total=invoice.total,
                currency=invoice.currency.upper(),
                exported_at=record.created_at,
                external_id=record.external_id,
                recorded_total=Decimal(record.provider_total) if record.provider_total else None,
            )
        )
    return expected, known


def cmd_reconcile(args: argparse.Namespace) -> int:
    entry = provider_entry(args.provider)
    if entry is None:
        names = ", ".join(f"{e.name} ({e.slug})" for e in PROVIDER_ENTRIES)
        return _usage("--provider", f"{args.provider!r} is not one of {names}")
    since: datetime | None = None
    if args.since is not None:
        try:
            since = datetime.combine(date.fromisoformat(args.since), time.min, UTC)
        except ValueError:
            return _usage("--since", f"{args.since!r} is not a date (YYYY-MM-DD)")
    settings = Settings.from_env()
    with open_store(settings) as store:
        connection_id = args.connection or default_connection(store, entry.name)
        if connection_id is None:
            ids = sorted(r.id for r in store.list_connections() if r.provider == entry.name)
            return _usage(
                "--connection",
                f"{len(ids)} connections export to {entry.name} ({', '.join(ids)}) and "
                f"{CONNECTION_SETTING}{entry.name} chooses none: name one",
            )
        row = store.get_connection(connection_id)
        owner = row.provider if row is not None else connection_id
        if owner != entry.name:
            return _usage("--connection", f"{connection_id!r} is not a connection of {entry.name}")
        try:
            provider = ExportActivities(store, settings).provider(entry.name, connection_id)
            expected, known = expected_exports(store, provider, entry.name)
            found = list(provider.list_exported(since - PROVIDER_SLACK if since else None))
        except ExportError as err:
            print(
                f"billbridge: {entry.label} (connection {connection_id}): {err.type_name}: {err}",
                file=sys.stderr,
            )
            return EXIT_PROVIDER
    report = reconcile(entry.name, connection_id, expected, found, since=since, known_refs=known)
    if args.json:
        print_json(report.model_dump(mode="json"))
    else:
        print_report(report, entry.label)
    return 0 if report.clean else EXIT_PROBLEMS


def print_report(report: Reconciliation, label: str) -> None:
    window = f", exports since {report.since.date()} (UTC)" if report.since else ""
    print(f"{label} (connection {report.connection_id}){window}")
    counts = (
        ("expected", report.expected),
        ("exported once", report.exported_once),
        ("duplicated", len(report.duplicated)),
        ("missing", len(report.missing)),
        ("mismatched", len(report.mismatched)),
        ("extra", len(report.extra)),
    )
    for name, count in counts:
        print(f"  {name:<15}{count}")
    problems: list[tuple[str, Finding]] = [
        (kind, finding)
        for kind, findings in (
            ("duplicated", report.duplicated),
            ("missing", report.missing),
            ("mismatched", report.mismatched),
            ("extra", report.extra),
        )
        for finding in findings
    ]
    if not problems:
        return
    headers = (
        "problem",
        "invoice",
        "provider invoice",
        "currency",
        "billing total",
        "provider total",
        "note",
    )
    table = [
        (
            kind,
            f.invoice_id or f"- ({f.ref})",
            ", ".join(f.provider_invoice_ids) or "-",
            f.currency or "-",
            f.billing_total or "-",
            ", ".join(f.provider_totals) or "-",
            f.note,
        )
        for kind, f in problems
    ]
    widths = [
        max(len(str(cell)) for cell in column) for column in zip(headers, *table, strict=True)
    ]
    print()
    for line in (headers, *table):
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        )


def add_parser(sub: Subparsers) -> None:
    parser = sub.add_parser(
        "reconcile",
        help="compare the invoices exported to a provider with the provider's own list",
    )
    parser.add_argument(
        "--provider",
        required=True,
        help="stripe_invoice (stripe), quickbooks, bill.com (billcom) or netsuite",
    )
    parser.add_argument(
        "--connection", help="which connection of the provider (default: the one exports use)"
    )
    parser.add_argument(
        "--since",
        metavar="YYYY-MM-DD",
        help="only exports begun on or after this day (UTC) and provider invoices created since",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(func=cmd_reconcile)
