"""Run the BILL emulator in the foreground; prints its base URL, stops on Ctrl-C/SIGTERM.

python -m billbridge.emulators.billcom --host 127.0.0.1 --port 12113 [--requests-per-hour 0]
    [--invoice-currency EUR ...] [--unique-invoice-numbers] [--limit-status 429]
"""

from __future__ import annotations

import argparse
import sys

from ..serving import serve_until_signalled
from . import BillcomEmulator
from .api import endpoints
from .emulator import (
    DEFAULT_DEV_KEY,
    DEFAULT_ORGANIZATION_ID,
    DEFAULT_PASSWORD,
    DEFAULT_USERNAME,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m billbridge.emulators.billcom")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=12113)
    parser.add_argument("--dev-key", default=DEFAULT_DEV_KEY)
    parser.add_argument("--organization-id", default=DEFAULT_ORGANIZATION_ID)
    parser.add_argument("--username", default=DEFAULT_USERNAME)
    parser.add_argument("--password", default=DEFAULT_PASSWORD)
    parser.add_argument(
        "--requests-per-hour", type=int, default=20_000, help="per devKey (0: no limit)"
    )
    parser.add_argument("--logins-per-hour", type=int, default=200, help="per devKey (0: none)")
    parser.add_argument(
        "--concurrent-requests", type=int, default=3, help="per devKey and organization (0: none)"
    )
    parser.add_argument(
        "--limit-status", type=int, default=400, help="HTTP status of BDC_1144 and BDC_1322"
    )
    parser.add_argument(
        "--invoice-currency",
        action="append",
        default=[],
        help="a currency beyond USD the organization invoices in (repeat for more)",
    )
    parser.add_argument("--unique-invoice-numbers", action="store_true")
    parser.add_argument("--list-endpoints", action="store_true")
    args = parser.parse_args(argv)
    if args.list_endpoints:
        print("\n".join(endpoints()))
        return 0
    emulator = BillcomEmulator(
        host=args.host,
        port=args.port,
        dev_key=args.dev_key,
        organization_id=args.organization_id,
        username=args.username,
        password=args.password,
        requests_per_hour=args.requests_per_hour or None,
        logins_per_hour=args.logins_per_hour or None,
        concurrent_requests=args.concurrent_requests or None,
        limit_status=args.limit_status,
        invoice_currencies=["USD", *args.invoice_currency],
        unique_invoice_numbers=args.unique_invoice_numbers,
    )
    return serve_until_signalled(emulator)


if __name__ == "__main__":
    sys.exit(main())
