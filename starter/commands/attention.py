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
from billbridge.starter.metering_door import retry_waiting_metering
from billbridge.workers.client import connect
from billbridge.workers.codec import load_codec


def cmd_attention(args: argparse.Namespace) -> int:
    if args.action == "retry":
        # Signalling is all this command does, so failing to is its failure: the error
        # (Temporal unreachable: exit 3) propagates to the CLI's one-line report.
        settings = Settings.from_env()
        count = asyncio.run(signal_waiting(settings))
        metering = asyncio.run(_retry_metering(settings))
        print(
            f"signalled {count} export(s) and {metering} marketplace metering run(s) waiting "
            "for attention"
        )
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


async def _retry_metering(settings: Settings) -> int:
    """The metering runs that wait for a fix (MarketplaceMeteringWorkflow's `retry`)."""
    address = settings.temporal_address or "127.0.0.1:7233"
    client = await connect(address, settings.temporal_namespace, codec=load_codec(settings))
    return await retry_waiting_metering(client)


def add_parser(sub: Subparsers) -> None:
    command(sub, "attention", "exports waiting for a fix", cmd_attention, ["list", "retry"])
