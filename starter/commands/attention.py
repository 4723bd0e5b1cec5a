"""billbridge attention list|retry: the exports waiting for a fix."""

from __future__ import annotations

import argparse
import asyncio

from billbridge.core.config import Settings
from billbridge.starter.commands.common import (
    Subparsers,
    command,
    print_json,
    signal_waiting,
    store_from_env,
)


def cmd_attention(args: argparse.Namespace) -> int:
    if args.action == "retry":
        # Signalling is all this command does, so failing to is its failure: the error
        # (Temporal unreachable: exit 3) propagates to the CLI's one-line report.
        count = asyncio.run(signal_waiting(Settings.from_env()))
        print(f"signalled {count} export(s) waiting for attention")
        return 0
    with store_from_env() as store:
        rows = store.list_exports("needs_attention")
    print_json(
        [
            {
                "invoice_id": r.invoice_id,
                "provider": r.provider,
                "what_to_fix": r.error,
                "since": r.updated_at.isoformat(timespec="seconds"),
            }
            for r in rows
        ]
    )
    return 0


def add_parser(sub: Subparsers) -> None:
    command(sub, "attention", "exports waiting for a fix", cmd_attention, ["list", "retry"])
