"""Run the QuickBooks emulator in the foreground; prints its base URL, stops on Ctrl-C/SIGTERM.

python -m billbridge.emulators.quickbooks --host 127.0.0.1 --port 12112 [--requests-per-minute 0]
    [--country US|GB|CA|AU] [--multicurrency] [--no-automated-sales-tax]
"""

from __future__ import annotations

import argparse
import sys

from ..serving import serve_until_signalled
from . import QuickBooksEmulator
from .api import endpoints
from .company import COUNTRY_CURRENCY, CompanySettings
from .emulator import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_PRODUCTION_CLIENT_ID,
    DEFAULT_PRODUCTION_CLIENT_SECRET,
    DEFAULT_REALM_ID,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m billbridge.emulators.quickbooks")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=12112)
    parser.add_argument("--client-id", default=DEFAULT_CLIENT_ID)
    parser.add_argument("--client-secret", default=DEFAULT_CLIENT_SECRET)
    parser.add_argument("--production-client-id", default=DEFAULT_PRODUCTION_CLIENT_ID)
    parser.add_argument("--production-client-secret", default=DEFAULT_PRODUCTION_CLIENT_SECRET)
    parser.add_argument("--realm-id", default=DEFAULT_REALM_ID)
    parser.add_argument(
        "--requests-per-minute",
        type=int,
        default=500,
        help="per realm (0 disables throttling; default 500, Intuit's documented limit)",
    )
    parser.add_argument("--retry-after", type=float, default=None, help="Retry-After on 429s")
    parser.add_argument("--access-token-ttl", type=float, default=3600.0, help="seconds")
    parser.add_argument(
        "--no-rotate", action="store_true", help="keep the same refresh token on refresh"
    )
    parser.add_argument("--country", choices=sorted(COUNTRY_CURRENCY), default="US")
    parser.add_argument("--multicurrency", action="store_true", help="turn multicurrency on")
    parser.add_argument(
        "--no-automated-sales-tax",
        action="store_true",
        help="a US company taxing through its own tax codes (TxnTaxCodeRef)",
    )
    parser.add_argument("--list-endpoints", action="store_true")
    args = parser.parse_args(argv)
    if args.list_endpoints:
        print(
            "\n".join(
                [
                    "GET /connect/oauth2",
                    "POST /oauth2/v1/tokens/bearer",
                    "POST /oauth2/v1/tokens/revoke",
                    *endpoints(),
                ]
            )
        )
        return 0

    emulator = QuickBooksEmulator(
        host=args.host,
        port=args.port,
        client_id=args.client_id,
        client_secret=args.client_secret,
        production_client_id=args.production_client_id,
        production_client_secret=args.production_client_secret,
        realm_id=args.realm_id,
        access_token_ttl=args.access_token_ttl,
        rotate_refresh_tokens=not args.no_rotate,
        requests_per_minute=args.requests_per_minute or None,
        retry_after_seconds=args.retry_after,
        company=CompanySettings(
            country=args.country,
            multicurrency=args.multicurrency,
            automated_sales_tax=not args.no_automated_sales_tax,
        ),
    )
    return serve_until_signalled(emulator)


if __name__ == "__main__":
    sys.exit(main())
