"""billbridge usage ingest FILE.jsonl|-: usage events (Orb's ingestion shape) into the store."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from billbridge.core.config import Settings
from billbridge.starter.commands.common import Subparsers, open_store, print_json
from billbridge.starter.usage_door import InvalidUsage, parse_usage_jsonl


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
    with open_store(Settings.from_env()) as store:
        result = store.ingest_usage(events)
    print_json(result.model_dump(mode="json"))
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


def add_parser(sub: Subparsers) -> None:
    usage = sub.add_parser("usage", help="usage events (Orb's ingestion shape)")
    usage.add_argument("action", choices=["ingest"])
    usage.add_argument("file", help="JSON Lines, one event per line; - for stdin")
    usage.set_defaults(func=cmd_usage)
