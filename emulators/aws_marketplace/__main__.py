"""Run the AWS Marketplace Metering emulator in the foreground; prints its base URL.

python -m billbridge.emulators.aws_marketplace --port 12121 [--requests-per-second N]
    [--key AKID:SECRET ...] [--product CODE:dim1,dim2 ...]
"""

from __future__ import annotations

import argparse
import sys

from ..serving import serve_until_signalled
from .emulator import DEFAULT_ACCESS_KEY_ID, DEFAULT_SECRET_ACCESS_KEY, AwsMarketplaceEmulator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m billbridge.emulators.aws_marketplace")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=12121)
    parser.add_argument("--requests-per-second", type=int, default=0, help="0: no throttling")
    parser.add_argument(
        "--key",
        action="append",
        default=[],
        help=f"ACCESS_KEY_ID:SECRET (repeatable; default {DEFAULT_ACCESS_KEY_ID}:<AWS example>)",
    )
    parser.add_argument(
        "--product", action="append", default=[], help="PRODUCT_CODE:dimension1,dimension2"
    )
    args = parser.parse_args(argv)
    keys = dict(k.split(":", 1) for k in args.key) or {
        DEFAULT_ACCESS_KEY_ID: DEFAULT_SECRET_ACCESS_KEY
    }
    emulator = AwsMarketplaceEmulator(
        host=args.host,
        port=args.port,
        keys=keys,
        requests_per_second=args.requests_per_second or None,
    )
    for spec in args.product:
        code, _, dims = spec.partition(":")
        emulator.add_product(code, [d for d in dims.split(",") if d])
    return serve_until_signalled(emulator)


if __name__ == "__main__":
    sys.exit(main())
