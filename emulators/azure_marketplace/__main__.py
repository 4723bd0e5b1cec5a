"""Run the Azure Marketplace emulator in the foreground; prints its base URL, stops on
Ctrl-C/SIGTERM.

python -m billbridge.emulators.azure_marketplace --port 12122 [--ca-file PATH]
    [--subscription RESOURCE_ID:PLAN_ID:dim1,dim2 ...]

The metering API answers at http://HOST:PORT and https://HOST:PORT; Entra ID (the authority
for azure-identity) at https://HOST:PORT, its certificate signed by the CA written to
--ca-file (default: a temporary file, its path printed on stderr).
"""

from __future__ import annotations

import argparse
import sys

from ..serving import serve_until_signalled
from .emulator import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_TENANT_ID,
    AzureMarketplaceEmulator,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m billbridge.emulators.azure_marketplace")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=12122)
    parser.add_argument("--tenant-id", default=DEFAULT_TENANT_ID)
    parser.add_argument("--client-id", default=DEFAULT_CLIENT_ID)
    parser.add_argument("--client-secret", default=DEFAULT_CLIENT_SECRET)
    parser.add_argument("--ca-file", default=None, help="where to write the emulator's CA (PEM)")
    parser.add_argument(
        "--subscription",
        action="append",
        default=[],
        metavar="RESOURCE_ID:PLAN_ID:DIM[,DIM...]",
        help="a Subscribed SaaS subscription to start with (repeatable)",
    )
    args = parser.parse_args(argv)
    emulator = AzureMarketplaceEmulator(
        host=args.host,
        port=args.port,
        tenant_id=args.tenant_id,
        client_id=args.client_id,
        client_secret=args.client_secret,
    )
    for spec in args.subscription:
        resource_id, plan_id, dimensions = spec.split(":", 2)
        emulator.add_subscription(resource_id, plan_id, dimensions.split(","))
    path = emulator.certificates.write_ca_file(args.ca_file) if args.ca_file else emulator.ca_file
    print(f"CA certificate: {path}", file=sys.stderr, flush=True)
    return serve_until_signalled(emulator)


if __name__ == "__main__":
    sys.exit(main())
