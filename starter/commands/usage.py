"""billbridge usage ingest FILE.jsonl|-: usage events (Orb's ingestion shape) into the store."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from temporalio.service import RPCError

from billbridge.activities.store import Store
from billbridge.core.config import Settings
from billbridge.core.usage import UsageEvent
from billbridge.starter.commands.common import Subparsers, open_store, print_json
from billbridge.starter.metering_door import notify_usage
from billbridge.starter.usage_door import InvalidUsage, parse_usage_jsonl
from billbridge.workers.client import TemporalUnreachable, connect
from billbridge.workers.codec import load_codec


def cmd_usage(args: argparse.Namespace) -> int:
    try:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text()
    except OSError as err:
        print(f"billbridge: cannot read {args.file}: {err.strerror}", file=sys.stderr)
        return 2
    try:
        events = parse_usage_jsonl(text)
    except InvalidUsage as err:
        print(f"billbridge: {args.file}: {err}", file=sys.stderr)
        return 1
    settings = Settings.from_env()
    with open_store(settings) as store:
        result = store.ingest_usage(events)
        told = _tell_metering(settings, store, events)
    print_json(result.model_dump(mode="json"))
    if told is not None:
        print(told, file=sys.stderr)
    for key in result.conflicts:
        print(
            f"warning: idempotency_key {key!r} was sent before with other content; the first "
            "event is kept (as Orb does)",
            file=sys.stderr,
        )
    if result.unknown_customers:
        print(
            "note: no stored customer has these ids yet (their events are kept and count once "
            f"the customer is upserted): {', '.join(result.unknown_customers)}",
            file=sys.stderr,
        )
    return 0


def _tell_metering(settings: Settings, store: Store, events: list[UsageEvent]) -> str | None:
    """Give the linked customers' metering runs their running totals (their `state` query).
    Best effort: the events are stored either way, and reports read the store."""
    if not events or not store.marketplace_links():
        return None
    try:
        told = asyncio.run(_notify(settings, store, events))
    except (TemporalUnreachable, RPCError) as err:
        return f"note: metering runs not told of this usage (Temporal: {err}); reports count it"
    return f"told {told} metering run(s) their running totals" if told else None


async def _notify(settings: Settings, store: Store, events: list[UsageEvent]) -> int:
    address = settings.temporal_address or "127.0.0.1:7233"
    client = await connect(address, settings.temporal_namespace, codec=load_codec(settings))
    return await notify_usage(client, store, events)


def add_parser(sub: Subparsers) -> None:
    usage = sub.add_parser("usage", help="usage events (Orb's ingestion shape)")
    usage.add_argument("action", choices=["ingest"])
    usage.add_argument("file", help="JSON Lines, one event per line; - for stdin")
    usage.set_defaults(func=cmd_usage)
