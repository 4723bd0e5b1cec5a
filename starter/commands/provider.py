"""billbridge provider pause|resume|status: a connection's pause switch.

`pause CONNECTION --reason "..."` and `resume CONNECTION` send the `pause` / `resume` signal to
the connection's ProviderConnectionWorkflow (`provider/<connection>`, started by the first
signal), which writes the switch every worker's provider requests read, and wait until it is in
place. `status [CONNECTION]` shows, per connection, whether it is paused, since when and why,
how many exports and metering runs are held for it, and for a marketplace when a pause starts
to lose an hour's own report.

The billing system can send the same signals with its own Temporal client: signal-with-start
`ProviderConnectionWorkflow` with id `provider/<connection>`, input {"connection_id": ...,
"provider": ...}, signal `pause` ({"reason": "..."}) or `resume`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import UTC, datetime
from typing import Any

from temporalio.client import Client, WorkflowHandle
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
)

from billbridge.activities.connection_control import held_query
from billbridge.activities.store import GateRow, Store
from billbridge.core.config import Settings
from billbridge.core.connection_control import (
    ConnectionControlInput,
    ConnectionControlState,
    PauseRequest,
    window_outlook,
    window_warning,
    workflow_id,
)
from billbridge.core.marketplaces import MARKETPLACE_ENTRIES
from billbridge.starter.commands.common import (
    Subparsers,
    connection_ids,
    open_store,
    print_json,
)
from billbridge.workers.client import connect
from billbridge.workers.codec import load_codec
from billbridge.workflows.provider_connection import ProviderConnectionWorkflow
from billbridge.workflows.search_attributes import CONNECTION_ID, PROVIDER

MARKETPLACES = frozenset(entry.name for entry in MARKETPLACE_ENTRIES)
# How long `pause` / `resume` wait for a worker to put the switch in place.
APPLY_WAIT_SECONDS = 20.0


def cmd_provider(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    with open_store(settings) as store:
        if args.action == "status":
            return _status(args, settings, store)
        if args.connection is None:
            print("billbridge: connection: which connection to " + args.action, file=sys.stderr)
            return 2
        provider = _provider_of(store, args.connection)
        if provider is None:
            known = sorted(set(connection_ids(store)) | MARKETPLACES)
            print(
                f"billbridge: connection: {args.connection!r} is not one of {known}",
                file=sys.stderr,
            )
            return 2
        pause = args.action == "pause"
        if pause and not (args.reason or "").strip():
            print(
                'billbridge: --reason: say why the connection is paused, e.g. --reason "Stripe '
                'incident 1234"',
                file=sys.stderr,
            )
            return 2
        return asyncio.run(_switch(settings, store, args.connection, provider, pause, args.reason))


def _provider_of(store: Store, connection_id: str) -> str | None:
    row = store.get_connection(connection_id)
    if row is not None:
        return row.provider
    if connection_id in connection_ids(store) or connection_id in MARKETPLACES:
        return connection_id  # a provider's (or marketplace's) default connection
    return None


async def _client(settings: Settings) -> Client:
    address = settings.temporal_address or "127.0.0.1:7233"
    return await connect(address, settings.temporal_namespace, codec=load_codec(settings))


async def switch_connection(
    client: Client,
    task_queue: str,
    store: Store,
    connection_id: str,
    provider: str,
    *,
    pause: bool,
    reason: str = "",
) -> WorkflowHandle[Any, Any]:
    """Signal-with-start the connection's control workflow with `pause` or `resume`."""
    gate = store.gate(connection_id)
    # A new control workflow starts from the switch as the store has it.
    start = ConnectionControlInput(
        connection_id=connection_id,
        provider=provider,
        paused=gate.paused if gate else False,
        pause_reason=gate.pause_reason if gate else "",
        paused_since=gate.paused_since if gate else None,
    )
    return await client.start_workflow(
        ProviderConnectionWorkflow.run,
        start,
        id=workflow_id(connection_id),
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        start_signal="pause" if pause else "resume",
        start_signal_args=[PauseRequest(reason=reason)] if pause else [],
        search_attributes=TypedSearchAttributes(
            [
                SearchAttributePair(CONNECTION_ID, connection_id),
                SearchAttributePair(PROVIDER, provider),
            ]
        ),
    )


async def _switch(
    settings: Settings,
    store: Store,
    connection_id: str,
    provider: str,
    pause: bool,
    reason: str | None,
) -> int:
    client = await _client(settings)
    reason = (reason or "").strip()
    applied = await switch_and_wait(
        client, settings.task_queue, store, connection_id, provider, pause=pause, reason=reason
    )
    control = workflow_id(connection_id)
    if not applied:
        print(
            f"{connection_id}: the {'pause' if pause else 'resume'} signal was sent to workflow "
            f"{control}, but no worker applied it within {APPLY_WAIT_SECONDS:g} s: it takes "
            "effect as soon as a worker runs (`billbridge worker`)",
            file=sys.stderr,
        )
        return 1
    print(f"{connection_id}: {'paused' if pause else 'resumed'} (workflow {control})")
    found = store.gate(connection_id)
    if pause and found is not None:
        closes = window_outlook(provider, found.paused_since or datetime.now(UTC))
        if closes is not None:
            print(
                f"  metering held by this pause must reach {provider} before "
                f"{closes:%Y-%m-%d %H:%M} UTC (the oldest hour's window)"
            )
    return 0


async def switch_and_wait(
    client: Client,
    task_queue: str,
    store: Store,
    connection_id: str,
    provider: str,
    *,
    pause: bool,
    reason: str = "",
    within: float = APPLY_WAIT_SECONDS,
) -> bool:
    """switch_connection, then wait until a worker has put the switch in place in the store
    (a pause with this reason); False when none did within `within` seconds."""
    await switch_connection(
        client, task_queue, store, connection_id, provider, pause=pause, reason=reason
    )
    deadline = time.monotonic() + within
    while True:
        found = store.gate(connection_id)
        paused_now = found is not None and found.paused
        if paused_now == pause and (found is None or not pause or found.pause_reason == reason):
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.2)


def _status(args: argparse.Namespace, settings: Settings, store: Store) -> int:
    gates = {gate.connection_id: gate for gate in store.gates()}
    if args.connection is not None:
        if _provider_of(store, args.connection) is None and args.connection not in gates:
            print(f"billbridge: connection: {args.connection!r} is unknown", file=sys.stderr)
            return 2
        wanted = [args.connection]
    else:
        wanted = sorted(set(connection_ids(store)) | set(gates))
    try:
        held = asyncio.run(_held_counts(settings, wanted))
        note = ""
    except Exception as err:  # Temporal down: the switch itself is in the store
        held, note = {}, f"held workflows unknown: Temporal unreachable ({err})"
    now = datetime.now(UTC)
    rows = [
        _status_row(cid, _provider_of(store, cid) or "", gates.get(cid), held.get(cid), now)
        for cid in wanted
    ]
    if args.json:
        print_json({"connections": rows, "note": note} if note else {"connections": rows})
        return 0
    for row in rows:
        state = "PAUSED" if row["paused"] else "active"
        line = f"{row['connection']:<20} {state:<7}"
        if row["paused"]:
            line += f" since {row['paused_since']}  reason: {row['reason']}"
        if row["held_exports"] is not None:
            line += f"  held: {row['held_exports']} export(s), {row['held_metering']} metering"
        if row["rate_share"] < 1:
            line += f"  slowed to {row['rate_share']:.0%} of its rate after a 429"
        print(line)
        if row["warning"]:
            print(f"{'':<20} WARNING: {row['warning']}")
    if note:
        print(note, file=sys.stderr)
    return 0


def _status_row(
    connection_id: str,
    provider: str,
    gate: GateRow | None,
    held: tuple[int, int] | None,
    now: datetime,
) -> dict[str, Any]:
    paused = gate is not None and gate.paused
    since = gate.paused_since if gate is not None else None
    return {
        "connection": connection_id,
        "provider": provider,
        "paused": paused,
        "paused_since": since.isoformat(timespec="seconds") if paused and since else None,
        "reason": gate.pause_reason if paused and gate is not None else "",
        "held_exports": held[0] if held else None,
        "held_metering": held[1] if held else None,
        "rate_share": gate.factor if gate is not None else 1.0,
        "throttled": gate.throttled_count if gate is not None else 0,
        "warning": window_warning(provider, since, now) if paused and since else "",
    }


async def _held_counts(settings: Settings, connections: list[str]) -> dict[str, tuple[int, int]]:
    """Per connection: the exports and the metering runs held for it."""
    client = await _client(settings)
    counts: dict[str, tuple[int, int]] = {}
    for connection_id in connections:
        query = held_query(connection_id)
        exports = await client.count_workflows(
            f'{query} AND WorkflowType = "ExportInvoiceWorkflow"'
        )
        metering = await client.count_workflows(
            f'{query} AND WorkflowType = "MarketplaceMeteringWorkflow"'
        )
        counts[connection_id] = (exports.count, metering.count)
    return counts


async def connection_status(client: Client, connection_id: str) -> ConnectionControlState:
    """The control workflow's own view (tests, tools): its `status` query."""
    handle = client.get_workflow_handle(workflow_id(connection_id))
    return await handle.query(ProviderConnectionWorkflow.status)


def add_parser(sub: Subparsers) -> None:
    parser = sub.add_parser(
        "provider",
        help="pause or resume a provider connection, or show what is paused and held",
    )
    parser.add_argument("action", choices=["pause", "resume", "status"])
    parser.add_argument("connection", nargs="?", help="the connection (default id: the provider)")
    parser.add_argument("--reason", help="pause: why (shown wherever the pause is)")
    parser.add_argument("--json", action="store_true", help="status: as JSON")
    parser.set_defaults(func=cmd_provider)
