"""Run the Stripe emulator in the foreground.

python -m billbridge.emulators.stripe --host 127.0.0.1 --port 12111 [--rate-limit 25|0]
"""

from __future__ import annotations

import argparse
import sys

from ..serving import serve_until_signalled
from . import StripeEmulator
from .api import endpoints


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m billbridge.emulators.stripe")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=12111)
    parser.add_argument(
        "--rate-limit",
        type=float,
        default=25.0,
        help="requests/second per API key (0 disables the limit; default 25, Stripe test mode)",
    )
    parser.add_argument("--max-invoice-items", type=int, default=250)
    parser.add_argument("--max-lines-per-add-lines", type=int, default=100)
    parser.add_argument("--idempotency-ttl", type=float, default=86400.0, help="seconds")
    parser.add_argument("--api-key", action="append", help="accept only these keys (repeatable)")
    parser.add_argument("--list-endpoints", action="store_true")
    args = parser.parse_args(argv)
    if args.list_endpoints:
        print("\n".join(endpoints()))
        return 0

    emulator = StripeEmulator(
        host=args.host,
        port=args.port,
        rate_limit_per_second=args.rate_limit or None,
        max_invoice_items=args.max_invoice_items,
        max_lines_per_add_lines=args.max_lines_per_add_lines,
        idempotency_ttl_seconds=args.idempotency_ttl,
        api_keys=args.api_key,
    )
    return serve_until_signalled(emulator)


if __name__ == "__main__":
    sys.exit(main())
