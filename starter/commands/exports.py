"""billbridge exports list|show: the export audit trail."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from billbridge.core.messages import ExportStatus
from billbridge.starter.commands.common import Subparsers, command, print_json, store_from_env


def cmd_exports(args: argparse.Namespace) -> int:
    with store_from_env() as store:
        if args.action == "show":
            if not args.invoice_id:
                print("billbridge: exports show INVOICE_ID", file=sys.stderr)
                return 2
            record = store.get_export(args.invoice_id)
            if record is None:
                print(f"billbridge: no export of invoice {args.invoice_id}", file=sys.stderr)
                return 1
            attempts = [dataclasses.asdict(a) for a in store.list_attempts(args.invoice_id)]
            print_json({**dataclasses.asdict(record), "attempts": attempts})
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


def add_parser(sub: Subparsers) -> None:
    exports = command(sub, "exports", "the export audit trail", cmd_exports, ["list", "show"])
    exports.add_argument("invoice_id", nargs="?", help="with show: the billing invoice id")
    exports.add_argument(
        "--status",
        choices=[status.value for status in ExportStatus],
        help="with list: only exports with this status",
    )
