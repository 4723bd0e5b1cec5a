"""Run the Google Cloud Marketplace emulator in the foreground; prints its base URL, stops on
Ctrl-C/SIGTERM.

python -m billbridge.emulators.gcp_marketplace --port 12123 [--require-bearer]
    [--entitlement PROVIDER/ENTITLEMENT_ID/USAGE_REPORTING_ID/SERVICE_NAME/METRIC[,METRIC...]]
"""

from __future__ import annotations

import argparse
import sys

from ..serving import serve_until_signalled
from .emulator import GcpMarketplaceEmulator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m billbridge.emulators.gcp_marketplace")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=12123)
    parser.add_argument(
        "--require-bearer", action="store_true", help="refuse requests without a bearer token"
    )
    parser.add_argument(
        "--entitlement",
        action="append",
        default=[],
        metavar="PROVIDER/ID/USAGE_REPORTING_ID/SERVICE/METRICS",
        help="an active entitlement to start with (metrics comma-separated); repeatable",
    )
    args = parser.parse_args(argv)
    emulator = GcpMarketplaceEmulator(host=args.host, port=args.port,
                                      require_bearer=args.require_bearer)  # fmt: skip
    for spec in args.entitlement:
        parts = spec.split("/")
        if len(parts) != 5:
            parser.error(f"--entitlement {spec!r}: expected 5 parts separated by '/'")
        provider, entitlement_id, usage_id, service, metrics = parts
        emulator.add_entitlement(provider, entitlement_id, usage_id, service, metrics.split(","))
    return serve_until_signalled(emulator)


if __name__ == "__main__":
    sys.exit(main())
