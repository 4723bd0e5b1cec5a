"""`billbridge` command line: the door for humans and scripts.

billbridge worker                      run the export worker (starts embedded services if unset)
billbridge server                      run only the embedded Temporal server and emulators
billbridge export invoice.json         validate, store, export, wait and print the result (JSON)
billbridge customers upsert c.json     store Orb customer objects (payment_provider[_id])
billbridge mappings set|list ...       item mappings (billing item -> provider product/price)
billbridge usage ingest events.jsonl   store usage events (Orb's ingestion shape)
billbridge marketplace link|list ...   marketplace links, dimensions, the metering ledger
billbridge provider pause|resume|status  a connection's pause switch, and what it holds
billbridge schema invoice|customer     print the JSON Schema of an input
billbridge demo [--json]               the whole job on embedded defaults, with sample invoices
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from billbridge.core.config import Settings
from billbridge.core.providers import PROVIDER_ENTRIES
from billbridge.starter.commands import (
    attention,
    common,
    connections,
    exports,
    mappings,
    marketplace,
    provider,
    reconcile,
    usage,
)
from billbridge.starter.commands import settings as settings_commands

if TYPE_CHECKING:
    from billbridge.starter.local_services import LocalServices

# `billbridge exports list | head`: the reader left; exit as a process killed by SIGPIPE would.
EXIT_STDOUT_CLOSED = 128 + signal.SIGPIPE


def _read(path: str) -> bytes:
    """The file's bytes, as they are: the door decodes them (UTF-8 JSON), and refuses other
    encodings with a message rather than a traceback."""
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise SystemExit(f"billbridge: cannot read {path}: {err.strerror}") from err


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


def cmd_schema(args: argparse.Namespace) -> int:
    from billbridge.core.models import Customer, invoice_json_schema

    schema = invoice_json_schema() if args.what == "invoice" else Customer.model_json_schema()
    _print_json(schema)
    return 0


def cmd_customers(args: argparse.Namespace) -> int:
    from billbridge.starter.door import InvalidPayload, upsert_customers

    store = common.open_store(Settings.from_env())
    try:
        customers = upsert_customers(store, _read(args.file))
    except InvalidPayload as err:
        print(f"billbridge: {err}", file=sys.stderr)
        return 2
    finally:
        store.close()
    print(f"upserted {len(customers)} customer(s)")
    common.signal_waiting_exports(customer_ids=[customer.id for customer in customers])
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    return asyncio.run(_export(args))


async def _export(args: argparse.Namespace) -> int:
    from billbridge.activities.store import Store
    from billbridge.starter.door import (
        InvalidPayload,
        export_result,
        parse_invoice,
        start_export,
        store_invoice,
    )
    from billbridge.workers.client import connect
    from billbridge.workers.codec import load_codec

    settings = Settings.from_env()
    try:
        invoice = parse_invoice(_read(args.file))
    except InvalidPayload as err:
        print(f"billbridge: {err}", file=sys.stderr)
        return 2
    store = Store(settings.database_url)
    try:
        if args.dry_run:  # the submitted invoice, planned as the export would: nothing stored
            return _dry_run(store, settings, invoice)
        try:
            store_invoice(store, invoice)
        except InvalidPayload as err:
            print(f"billbridge: {err}", file=sys.stderr)
            return 2
        address = settings.temporal_address or "127.0.0.1:7233"
        try:
            client = await connect(address, settings.temporal_namespace, codec=load_codec(settings))
        except RuntimeError as err:
            print(
                f"billbridge: cannot reach Temporal at {address} ({err}); start one with "
                "`billbridge worker` (embedded server) or set TEMPORAL_ADDRESS. The invoice is "
                "stored; run the same command again to export it.",
                file=sys.stderr,
            )
            return 3
        handle = await start_export(client, invoice.id, settings.task_queue)
        if args.no_wait:
            _print_json({"invoice_id": invoice.id, "workflow_id": handle.id, "status": "started"})
            return 0
        result = await export_result(handle, invoice.id)
        _print_json(result.model_dump(mode="json"))
        # 5: held by a paused connection; it goes on by itself once the connection is resumed.
        return {"failed": 1, "needs_attention": 4, "paused": 5}.get(result.status.value, 0)
    finally:
        store.close()


def _dry_run(store: Any, settings: Settings, invoice: Any) -> int:
    """Print the exact provider requests the export would send, writing nothing.

    The same path as the export's prepare step (decide, map, link, plan, check), with the
    customer the push would use: the stored link, or what create_missing_customers would do.
    """
    from billbridge.activities.export import ExportActivities
    from billbridge.core.errors import ExportError

    activities = ExportActivities(store, settings)
    try:
        prepared = activities.prepare(invoice, invoice.line_items, time.time(), write=False)
    except ExportError as err:
        print(f"billbridge: {err.type_name}: {err}", file=sys.stderr)
        return 1
    if prepared.plan is None:
        _print_json(prepared.decision.model_dump(mode="json"))
        return 0
    _print_json(
        {
            "invoice_id": invoice.id,
            "provider": prepared.plan.provider,
            "customer": {
                "id": prepared.provider_customer_id,
                "source": prepared.customer_source,
            },
            "requests": prepared.plan.requests(),
        }
    )
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from billbridge.starter.local_services import local_services
    from billbridge.workers.export_worker import run_worker

    settings = Settings.from_env()
    with local_services(settings) as services:
        if services.temporal_ui_url:
            logging.getLogger("billbridge").info("Temporal UI: %s", services.temporal_ui_url)
        assert services.settings.temporal_address is not None
        asyncio.run(run_worker(services.settings, services.settings.temporal_address))
    return 0


def cmd_server(args: argparse.Namespace) -> int:
    import threading

    from billbridge.starter.local_services import local_services

    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    # The server is where emulators belong, whatever TEMPORAL_ADDRESS says (core/config.py).
    settings = Settings.from_env(emulators=True)
    ports = {entry.name: getattr(args, f"{entry.slug}_port") for entry in PROVIDER_ENTRIES}
    with local_services(settings, ports=ports) as services:
        for line in server_report(settings, services):
            print(line, flush=True)  # flushed: scripts wait for these lines on a pipe
        stop.wait()
    return 0


def server_report(configured: Settings, services: LocalServices) -> list[str]:
    """What `billbridge server` runs, and only what it runs: each line says whether this process
    started the thing or found it already there."""
    address = services.settings.temporal_address
    if configured.temporal_address is not None:
        lines = [f"Temporal: {address} (TEMPORAL_ADDRESS; not started here)"]
    elif services.temporal_started:
        lines = [
            f"Temporal: {address} (started here)  UI: {services.temporal_ui_url}  "
            f"codec endpoint: {services.codec_endpoint}"
        ]
    else:
        lines = [
            f"Temporal: {address} (already served by another process; not started here)  "
            f"UI: {services.temporal_ui_url}"
        ]
    emulated = {e.connection: e for e in services.emulators}
    hints: list[str] = []
    moved = False  # an emulator on another port than the one other processes assume
    for entry in PROVIDER_ENTRIES:
        label, variable = entry.label, entry.api_base_env
        emulator = emulated.get(entry.name)
        if emulator is None:
            base = configured.api_base(entry.name)
            lines.append(f"{label}: {base} ({variable} is set; no emulator started)")
            continue
        if emulator.started:
            lines.append(f"{label} emulator: {emulator.url} (started here)")
        else:
            lines.append(
                f"{label}: {emulator.url} is already served by another process; no emulator "
                "started here (that one is used)"
            )
        hints.append(f"{variable}={emulator.url}")
        moved = moved or not emulator.url.endswith(f":{entry.emulator_port}")
    if hints and configured.temporal_address is not None:
        # Workers on a cluster talk to the real providers unless told otherwise.
        opt_in = "" if moved else "BILLBRIDGE_EMULATORS=1 or "
        lines.append(
            f"Workers with TEMPORAL_ADDRESS set use these only with {opt_in}{' '.join(hints)}"
        )
    elif moved:
        lines.append(f"Other billbridge processes reach them with {' '.join(hints)}")
    return lines


def cmd_demo(args: argparse.Namespace) -> int:
    from billbridge.starter.demo import run_demo

    return run_demo(as_json=args.json)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="billbridge", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("worker", help="run the export worker").set_defaults(func=cmd_worker)
    server = sub.add_parser(
        "server", help="run the embedded Temporal server and the provider emulators"
    )
    for entry in PROVIDER_ENTRIES:
        server.add_argument(
            f"--{entry.slug}-port",
            type=int,
            default=entry.emulator_port,
            help=f"{entry.label} emulator port (default {entry.emulator_port}; 0: any free port)",
        )
    server.set_defaults(func=cmd_server)

    export = sub.add_parser("export", help="export an issued invoice (Orb Invoice JSON)")
    export.add_argument("file", help="invoice JSON file, or - for stdin")
    export.add_argument("--no-wait", action="store_true", help="start the export and return")
    export.add_argument(
        "--dry-run",
        action="store_true",
        help="print the provider requests the export would send; nothing is stored or sent",
    )
    export.set_defaults(func=cmd_export)

    customers = sub.add_parser("customers", help="manage billing customers")
    customers.add_argument("action", choices=["upsert"])
    customers.add_argument("file", help="Orb Customer JSON (object, list, or {data: [...]})")
    customers.set_defaults(func=cmd_customers)

    # The operator commands on the store, in the order `billbridge --help` lists them.
    for group in (
        mappings,
        connections,
        settings_commands,
        attention,
        exports,
        usage,
        marketplace,
        provider,
        reconcile,
    ):
        group.add_parser(sub)

    schema = sub.add_parser("schema", help="print an input's JSON Schema")
    schema.add_argument("what", choices=["invoice", "customer"])
    schema.set_defaults(func=cmd_schema)

    demo = sub.add_parser("demo", help="run sample invoices end to end on embedded defaults")
    demo.add_argument("--json", action="store_true", help="print the results as JSON")
    demo.set_defaults(func=cmd_demo)
    return parser


def _stdout_closed() -> int:
    """The reader of our stdout went away (`billbridge exports list | head`): end quietly.

    Only this command's printing ends; servers never see SIGPIPE (Python ignores it, so a
    client that drops a connection raises in that request's thread alone). Later writes and
    the final flush go to /dev/null instead of raising again.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return EXIT_STDOUT_CLOSED


def main(argv: list[str] | None = None) -> None:
    from billbridge.workers.operator_errors import explain

    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except ValueError as err:
        raise SystemExit(f"billbridge: {err}") from err
    level = settings.log_level
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # The SDKs log every request at INFO; billbridge's own logs say what matters.
    for sdk in ("stripe", "httpx"):
        logging.getLogger(sdk).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    try:
        code = args.func(args)
        sys.stdout.flush()
    except BrokenPipeError:
        code = _stdout_closed()
    except Exception as err:
        # A database, key or Temporal that is not there: one line naming the variable and the
        # address. Anything else is a bug and keeps its traceback.
        explained = explain(err, settings)
        if explained is None:
            raise
        print(f"billbridge: {explained.message}", file=sys.stderr)
        code = explained.exit_code
    # Leave without interpreter finalization: the Temporal SDK's Rust runtime can crash there
    # (`Fatal Python error: PyGILState_Release`, sdk-python #300) and turn a success into a
    # failure. Everything the command started was stopped by its own context managers.
    logging.shutdown()
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        code = _stdout_closed()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
