"""Run the NetSuite emulator in the foreground; prints its base URL, stops on Ctrl-C/SIGTERM.

python -m billbridge.emulators.netsuite --port 12114 [--account-id 1234567]
    [--concurrency-limit 5] [--over-limit-status 429|401] [--no-one-world]
"""

from __future__ import annotations

import argparse
import sys

from ..serving import serve_until_signalled
from .emulator import DEFAULT_ACCOUNT_ID, NetSuiteEmulator
from .records import AccountSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m billbridge.emulators.netsuite")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=12114)
    parser.add_argument("--account-id", default=DEFAULT_ACCOUNT_ID)
    parser.add_argument(
        "--concurrency-limit", type=int, default=5, help="requests in flight at once (0: none)"
    )
    parser.add_argument("--over-limit-status", type=int, choices=(429, 401), default=429)
    parser.add_argument("--no-one-world", action="store_true", help="customers need no subsidiary")
    args = parser.parse_args(argv)
    emulator = NetSuiteEmulator(
        host=args.host,
        port=args.port,
        account_id=args.account_id,
        concurrency_limit=args.concurrency_limit or None,
        over_limit_status=args.over_limit_status,
        settings=AccountSettings(one_world=not args.no_one_world),
    )
    return serve_until_signalled(emulator)


if __name__ == "__main__":
    sys.exit(main())
