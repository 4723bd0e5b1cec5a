"""billbridge marketplace link|unlink|start|pause|resume|retry|status|list|dimensions|ledger,
and the marketplace side of `billbridge connections` (add aws|azure|gcp, list, revoke, enable,
disable).

billbridge marketplace link CUSTOMER aws|azure|gcp [--connection ID] --field k=v ...
                            [--mode dimensions|billing_amount] [--billing-amount-dimension D]
                            [--grace-seconds N] [--no-start]
billbridge marketplace unlink CUSTOMER MARKETPLACE [--force] [--wait SECONDS]
billbridge marketplace start CUSTOMER [--grace-seconds N] [--from ISO]
billbridge marketplace pause CUSTOMER --reason TEXT
billbridge marketplace resume|retry CUSTOMER
billbridge marketplace status [CUSTOMER] [--json]
billbridge marketplace list [--customer C] [--marketplace M] [--json]
billbridge marketplace dimensions set CONNECTION EVENT_NAME DIMENSION [--property P] [--factor F]
billbridge marketplace dimensions list|delete CONNECTION [EVENT_NAME DIMENSION]
billbridge marketplace ledger CUSTOMER [--since ISO] [--json]

Secrets are read from variables or files, never from argv, and sealed in the store bound to the
connection id (activities/secrets.py), like the invoicing providers' keys.

A link starts the customer's MarketplaceMeteringWorkflow (starter/metering_door.py) after the
link is stored; unlink stops it (its final report of every closed hour) before the link goes.
When Temporal cannot be reached, a link is kept and the command says how to start the metering
later (exit 3, as every command that cannot reach Temporal).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pydantic
from temporalio.client import Client
from temporalio.service import RPCError

from billbridge.activities.marketplaces.base import MarketplaceConfig
from billbridge.activities.secrets import SecretBox, SecretError
from billbridge.activities.store import (
    ConnectionRow,
    MarketplaceSetupError,
    Store,
)
from billbridge.core.config import Settings
from billbridge.core.errors import ExportError
from billbridge.core.marketplaces import load_client, marketplace_entry
from billbridge.core.metering_messages import DEFAULT_GRACE_SECONDS, MeteringState
from billbridge.core.models import format_validation_error
from billbridge.core.usage import MARKETPLACES, DimensionMapping, MarketplaceLink
from billbridge.starter import metering_door
from billbridge.starter.commands.common import Subparsers, open_store, print_json
from billbridge.starter.usage_door import check_one_marketplace
from billbridge.workers.client import connect
from billbridge.workers.codec import CodecKeyError, load_codec
from billbridge.workers.operator_errors import EXIT_ENVIRONMENT, explain

T = TypeVar("T")

# --------------------------------------------------------------------------- connections


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `connections add aws|azure|gcp` (secrets: variables or files only)."""
    parser.add_argument("--region", help="with add aws: the AWS region (e.g. us-east-1)")
    parser.add_argument(
        "--access-key-id-env",
        help="with add aws: read the access key id from this variable (omit both key flags "
        "for boto3's default credential chain)",
    )
    parser.add_argument(
        "--secret-access-key-env",
        help="with add aws: read the secret access key from this variable",
    )
    parser.add_argument("--tenant-id", help="with add azure: the Entra ID tenant")
    parser.add_argument("--client-id", help="with add azure: the app registration's client id")
    parser.add_argument(
        "--client-secret-env", help="with add azure: read the client secret from this variable"
    )
    parser.add_argument(
        "--client-secret-file", help="with add azure: read the client secret from this file"
    )
    parser.add_argument(
        "--service-account-file",
        help="with add gcp: a service-account key JSON (omit for application default credentials)",
    )
    parser.add_argument(
        "--provider-id", help="with add gcp: the Partner Procurement provider (providers/{id})"
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        help="with add aws|azure|gcp: records per marketplace call, shared by the customers of "
        "one hour (default and most: the marketplace's maximum, 25 for AWS and Azure)",
    )


def _env(flag: str, variable: str) -> str:
    value = (os.environ.get(variable) or "").strip()
    if not value:
        raise ValueError(f"{flag}: {variable} is not set or empty")
    return value


def _marketplace_credentials(
    marketplace: str, args: argparse.Namespace
) -> tuple[dict[str, str], dict[str, str]]:
    """(credentials to seal, settings to store) from the flags; errors name the flag."""
    credentials: dict[str, str] = {}
    settings: dict[str, str] = {}
    if marketplace == "aws":
        if not args.region:
            raise ValueError("connections add aws needs --region (e.g. us-east-1)")
        settings["region"] = args.region
        key_flags = (args.access_key_id_env, args.secret_access_key_env)
        if any(key_flags) and not all(key_flags):
            raise ValueError(
                "give both --access-key-id-env and --secret-access-key-env, or neither "
                "(boto3's default credential chain)"
            )
        if all(key_flags):
            credentials["access_key_id"] = _env("--access-key-id-env", args.access_key_id_env)
            credentials["secret_access_key"] = _env(
                "--secret-access-key-env", args.secret_access_key_env
            )
    elif marketplace == "azure":
        if not args.tenant_id or not args.client_id:
            raise ValueError("connections add azure needs --tenant-id and --client-id")
        if bool(args.client_secret_env) == bool(args.client_secret_file):
            raise ValueError(
                "connections add azure needs the client secret one way: --client-secret-env VAR "
                "or --client-secret-file FILE"
            )
        if args.client_secret_env:
            secret = _env("--client-secret-env", args.client_secret_env)
        else:
            secret = Path(args.client_secret_file).read_text().strip()
            if not secret:
                raise ValueError(f"--client-secret-file: {args.client_secret_file} is empty")
        credentials = {
            "tenant_id": args.tenant_id,
            "client_id": args.client_id,
            "client_secret": secret,
        }
    else:
        if not args.provider_id:
            raise ValueError("connections add gcp needs --provider-id (Partner Procurement)")
        settings["provider_id"] = args.provider_id
        if args.service_account_file:
            text = Path(args.service_account_file).read_text()
            try:
                key = json.loads(text)
            except json.JSONDecodeError as err:
                raise ValueError(f"--service-account-file: not JSON: {err}") from err
            if not isinstance(key, dict) or key.get("type") != "service_account":
                raise ValueError(
                    '--service-account-file: not a service-account key ("type": "service_account")'
                )
            credentials["service_account_json"] = text
    batch_size = getattr(args, "batch_size", None)
    if batch_size is not None:
        most = load_client(marketplace).max_batch
        if not 1 <= batch_size <= most:
            raise ValueError(f"--batch-size: {batch_size} is not 1 to {most} ({marketplace})")
        settings["batch_size"] = str(batch_size)
    return credentials, settings


def verify_marketplace_connection(settings: Settings, config: MarketplaceConfig) -> str:
    """The hook `connections add` and `connections list` check credentials through: the
    marketplace's client (core/marketplaces.py) makes one cheap authenticated call. Raises
    ExportError when refused; a build without that client yet says so instead."""
    entry = marketplace_entry(config.marketplace)
    module_name, _, attribute = entry.client.partition(":")
    try:
        factory: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            factory = getattr(factory, part)
    except (ImportError, AttributeError):
        return f"not checked (no {entry.label} client in this build)"
    factory(settings, config).check_credentials()
    return "credentials accepted (just now)"


def marketplace_connection_command(
    args: argparse.Namespace, store: Store, settings: Settings
) -> int | None:
    """`connections ACTION` when it concerns a marketplace connection; None otherwise."""
    if args.action == "add" and args.connection in MARKETPLACES:
        return _add_connection(args, store, settings)
    if args.action in ("add", "list") or args.connection is None:
        return None
    row = store.get_connection(args.connection)
    if row is None or row.provider not in MARKETPLACES:
        return None
    if args.action in ("enable", "disable"):
        store.upsert_connection(
            row.id,
            row.provider,
            enabled=args.action == "enable",
            credentials_ref=row.credentials_ref,
            settings=row.settings,
        )
    elif args.action == "revoke":
        if not row.credentials_ref:
            print(f"billbridge: {row.id} holds no stored credential", file=sys.stderr)
            return 1
        store.upsert_connection(
            row.id, row.provider, enabled=row.enabled, credentials_ref=None, settings=row.settings
        )
        print(f"{row.id}: credential removed from the store")
        return 0
    else:
        print(
            f"billbridge: {row.id} is a {row.provider} marketplace connection: change it with "
            f"`billbridge connections add {row.provider} --id {row.id} ...`",
            file=sys.stderr,
        )
        return 2
    print_json([marketplace_connection_report(store.get_connection(row.id) or row)])
    return 0


def _add_connection(args: argparse.Namespace, store: Store, settings: Settings) -> int:
    marketplace = args.connection
    connection_id = args.id or marketplace
    row = store.get_connection(connection_id)
    if row is not None and row.provider != marketplace:
        print(
            f"billbridge: connection {connection_id} is a {row.provider} connection, not "
            f"{marketplace}; choose another --id",
            file=sys.stderr,
        )
        return 2
    try:
        credentials, stored_settings = _marketplace_credentials(marketplace, args)
        sealed = (
            SecretBox.from_settings(settings).seal(json.dumps(credentials), connection_id)
            if credentials
            else None
        )
    except (ValueError, OSError, CodecKeyError) as err:
        print(f"billbridge: {err}", file=sys.stderr)
        return 2
    health = "not checked (--no-verify)"
    if not args.no_verify:
        config = MarketplaceConfig(connection_id, marketplace, credentials, stored_settings)
        try:
            health = verify_marketplace_connection(settings, config)
        except ExportError as err:
            print(f"billbridge: {connection_id}: credentials refused: {err}", file=sys.stderr)
            return 1
    store.upsert_connection(
        connection_id,
        marketplace,
        enabled=row.enabled if row is not None else True,
        credentials_ref=sealed,
        settings=stored_settings,
    )
    stored = store.get_connection(connection_id)
    assert stored is not None
    print_json([marketplace_connection_report(stored, health=health)])
    return 0


def check_marketplace_connection(store: Store, settings: Settings, connection_id: str) -> str:
    """`connections list`'s live health of a marketplace connection (never raises)."""
    try:
        box = SecretBox.from_settings(settings)
        return verify_marketplace_connection(settings, store.marketplace_config(connection_id, box))
    except (ExportError, SecretError, CodecKeyError, MarketplaceSetupError) as err:
        return f"error: {err}"


def marketplace_connection_report(
    row: ConnectionRow, *, health: str | None = None
) -> dict[str, object]:
    """How `connections list` shows a marketplace connection: never a secret."""
    entry = marketplace_entry(row.provider)
    if row.credentials_ref:
        credentials = "sealed in the store"
    else:
        credentials = {
            "aws": "boto3 default credential chain",
            "gcp": "application default credentials",
        }.get(row.provider, "none: `billbridge connections add azure ...`")
    return {
        "connection": row.id,
        "provider": row.provider,
        "marketplace": entry.label,
        # Where reports go is the marketplace client's decision (its emulator or the real
        # API); only an explicit override is shown here.
        "endpoint": os.environ.get(entry.endpoint_env)
        or f"{entry.endpoint_env} not set: the client's default",
        "enabled": row.enabled,
        "connected": bool(row.credentials_ref) or row.provider != "azure",
        "credentials": credentials,
        "health": health or "not checked",
        "settings": row.settings,
    }


# --------------------------------------------------------------------------- marketplace


def _fields(pairs: list[str]) -> dict[str, str]:
    fields: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--field {pair}: expected key=value")
        fields[key.strip()] = value.strip()
    return fields


def _link(args: argparse.Namespace, store: Store) -> int:
    try:
        link = MarketplaceLink(
            customer_id=args.customer,
            marketplace=args.marketplace,
            connection_id=args.connection or args.marketplace,
            account=_fields(args.field or []),
            mode=args.mode,
            billing_amount_dimension=args.billing_amount_dimension,
        )
        check_one_marketplace(store, link)
        store.link_marketplace(link)
    except pydantic.ValidationError as err:
        print(
            "billbridge: "
            + format_validation_error(err).replace("Value error, ", "").replace("<root>: ", ""),
            file=sys.stderr,
        )
        return 2
    except (ValueError, MarketplaceSetupError) as err:
        print(f"billbridge: {err}", file=sys.stderr)
        return 2
    if store.get_customer(link.customer_id) is None:
        print(
            f"note: no stored customer {link.customer_id} yet (`billbridge customers upsert`)",
            file=sys.stderr,
        )
    print_json(link.model_dump(mode="json"))
    if args.no_start:
        return 0
    settings = Settings.from_env()
    try:
        begun = _with_client(
            settings,
            lambda client: metering_door.start_metering(
                client,
                store,
                link.customer_id,
                link.marketplace,
                settings.task_queue,
                grace_seconds=args.grace_seconds,
            ),
        )
    except Exception as err:  # the link is stored either way: say how to start it later
        explained = explain(err, settings)
        # RPCError: Temporal refused the start (e.g. a cluster without billbridge's search
        # attributes: docker/temporal-setup.sh registers them).
        if explained is None and not isinstance(err, metering_door.MeteringError | RPCError):
            raise
        print(
            f"billbridge: the link is stored, but its metering did not start: "
            f"{explained.message if explained else err}\n"
            f"start it once that is fixed: `billbridge marketplace start {link.customer_id}`",
            file=sys.stderr,
        )
        return explained.exit_code if explained else EXIT_ENVIRONMENT
    _print_start(link.customer_id, begun)
    return 0


# --------------------------------------------------------------------------- metering


def _with_client(settings: Settings, work: Callable[[Client], Awaitable[T]]) -> T:
    """Run `work` with a Temporal client connected as every billbridge process is (the CLI's
    default address when TEMPORAL_ADDRESS is unset, as `attention retry` uses)."""

    async def run() -> T:
        address = settings.temporal_address or "127.0.0.1:7233"
        client = await connect(address, settings.temporal_namespace, codec=load_codec(settings))
        return await work(client)

    return asyncio.run(run())


def _print_start(customer_id: str, begun: metering_door.MeteringStart) -> None:
    wf = begun.handle.id
    if begun.started:
        hour = begun.next_hour.isoformat() if begun.next_hour else "the current hour"
        print(f"{customer_id}: metering started ({wf}), from the hour {hour}", file=sys.stderr)
    else:
        print(f"{customer_id}: metering already running ({wf})", file=sys.stderr)


def _only_link(store: Store, customer_id: str) -> MarketplaceLink | None:
    links = store.marketplace_links(customer_id=customer_id)
    if len(links) == 1:
        return links[0]
    if not links:
        print(
            f"billbridge: customer {customer_id} has no marketplace link: "
            f"`billbridge marketplace link {customer_id} aws|azure|gcp ...` first",
            file=sys.stderr,
        )
    else:
        names = " and ".join(link.marketplace for link in links)
        print(
            f"billbridge: customer {customer_id} is linked to {names}; its metering reports to "
            "one: unlink the others first",
            file=sys.stderr,
        )
    return None


def _aware(flag: str, text: str | None) -> datetime | None:
    """An ISO 8601 time with its zone; ValueError naming the flag."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{flag}: {text!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise ValueError(f"{flag}: give a timezone (e.g. Z)")
    return moment


def _start(args: argparse.Namespace, store: Store) -> int:
    try:
        first_hour = _aware("--from", args.first_hour)
    except ValueError as err:
        print(f"billbridge: {err}", file=sys.stderr)
        return 2
    link = _only_link(store, args.customer)
    if link is None:
        return 1
    settings = Settings.from_env()
    try:
        begun = _with_client(
            settings,
            lambda client: metering_door.start_metering(
                client,
                store,
                link.customer_id,
                link.marketplace,
                settings.task_queue,
                grace_seconds=args.grace_seconds,
                first_hour=first_hour,
            ),
        )
    except metering_door.MeteringError as err:
        print(f"billbridge: {err}", file=sys.stderr)
        return 2 if isinstance(err, metering_door.MeteringConflict) else 1
    except RPCError as err:
        print(f"billbridge: Temporal refused the start: {err}", file=sys.stderr)
        return 1
    _print_start(link.customer_id, begun)
    return 0


def _unlink(args: argparse.Namespace, store: Store) -> int:
    if store.get_marketplace_link(args.customer, args.marketplace) is None:
        print(f"billbridge: {args.customer} has no {args.marketplace} link", file=sys.stderr)
        return 1
    # The final report needs the link: stop (and wait for it) first, remove the link after.
    settings = Settings.from_env()
    wait = timedelta(seconds=args.wait)
    final: MeteringState | None = None
    try:
        final = _with_client(
            settings,
            lambda client: metering_door.stop_metering(
                client, args.customer, wait=wait, marketplace=args.marketplace
            ),
        )
    except metering_door.MeteringNotRunning:
        pass
    except Exception as err:
        explained = explain(err, settings)
        if explained is None and not isinstance(err, metering_door.MeteringError):
            raise
        message = explained.message if explained else str(err)
        if not args.force:
            print(
                f"billbridge: {message}\nthe link is kept, so its closed hours can still be "
                "reported; try again, or `--force` to remove it without the final report",
                file=sys.stderr,
            )
            return explained.exit_code if explained else EXIT_ENVIRONMENT
        print(f"note: {message}; --force: removing the link anyway", file=sys.stderr)
    if final is not None:
        through = final.next_hour.isoformat() if final.next_hour else "-"
        print(
            f"{args.customer}: metering stopped ({final.hours_reported} hour(s) reported by its "
            f"last run; next hour {through})"
        )
        if final.reason:
            print(f"note: it ended waiting for: {final.reason}", file=sys.stderr)
    if not store.unlink_marketplace(args.customer, args.marketplace):
        print(f"billbridge: {args.customer} has no {args.marketplace} link", file=sys.stderr)
        return 1
    print(f"{args.customer}: {args.marketplace} link removed (the ledger keeps its records)")
    return 0


def _signal(args: argparse.Namespace, store: Store) -> int:
    """pause, resume or retry: a signal to the customer's running metering."""
    customer, action = args.customer, args.marketplace_action

    async def send(client: Client) -> None:
        if action == "pause":
            await metering_door.pause_metering(client, customer, args.reason)
        elif action == "resume":
            await metering_door.resume_metering(client, customer)
        else:
            await metering_door.retry_metering(client, customer)

    try:
        _with_client(Settings.from_env(), send)
    except metering_door.MeteringNotRunning as err:
        print(f"billbridge: {err}", file=sys.stderr)
        return 1
    if action == "pause":
        print(f"{customer}: metering paused ({args.reason})")
    elif action == "resume":
        print(f"{customer}: metering resumed")
    else:
        print(f"{customer}: metering asked to report its waiting hours again")
    return 0


def _state_row(link: MarketplaceLink, state: MeteringState | None) -> dict[str, object]:
    if state is None:
        return {
            "customer_id": link.customer_id,
            "marketplace": link.marketplace,
            "status": "not_started",
            "next_hour": None,
            "last_report": None,
            "hours_reported": 0,
            "reason": f"`billbridge marketplace start {link.customer_id}`",
        }
    row = state.model_dump(mode="json")
    row["customer_id"], row["marketplace"] = link.customer_id, state.marketplace or link.marketplace
    return row


def _status(args: argparse.Namespace, store: Store) -> int:
    links = store.marketplace_links(customer_id=args.customer)
    if args.customer and not links:
        print(f"billbridge: customer {args.customer} has no marketplace link", file=sys.stderr)
        return 1
    settings = Settings.from_env()

    async def states(client: Client) -> list[MeteringState | None]:
        # At once: without a worker each query waits out its timeout.
        return list(
            await asyncio.gather(
                *(metering_door.metering_state(client, link.customer_id) for link in links)
            )
        )

    rows = [
        _state_row(link, state)
        for link, state in zip(links, _with_client(settings, states), strict=True)
    ]
    if args.json:
        print_json(rows)
        return 0
    table = [["CUSTOMER", "MARKETPLACE", "STATUS", "NEXT HOUR", "LAST REPORT", "REASON"]]
    for row in rows:
        last: Any = row["last_report"]
        shown = "-"
        if isinstance(last, dict):
            quantities = " ".join(f"{k}={v}" for k, v in sorted(last["quantities"].items()))
            shown = f"{last['hour']} {quantities}".strip()
        table.append(
            [
                str(row["customer_id"]),
                str(row["marketplace"]),
                str(row["status"]),
                str(row["next_hour"] or "-"),
                shown,
                str(row["reason"] or ""),
            ]
        )
    _table(table)
    return 0


def _table(rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))


def _list(args: argparse.Namespace, store: Store) -> int:
    links = store.marketplace_links(customer_id=args.customer, marketplace=args.marketplace)
    if args.json:
        print_json([link.model_dump(mode="json") for link in links])
        return 0
    rows = [["CUSTOMER", "MARKETPLACE", "CONNECTION", "MODE", "ACCOUNT"]]
    for link in links:
        mode: str = link.mode
        if link.billing_amount_dimension:
            mode += f" ({link.billing_amount_dimension})"
        account = " ".join(f"{k}={v}" for k, v in sorted(link.account.items()))
        rows.append([link.customer_id, link.marketplace, link.connection_id, mode, account])
    _table(rows)
    return 0


def _dimensions(args: argparse.Namespace, store: Store) -> int:
    row = store.get_connection(args.connection)
    if row is None or row.provider not in MARKETPLACES:
        print(
            f"billbridge: connection: {args.connection!r} is not a marketplace connection "
            "(`billbridge connections add aws|azure|gcp --id NAME ...`)",
            file=sys.stderr,
        )
        return 2
    if args.dimensions_action == "set":
        try:
            mapping = DimensionMapping(
                event_name=args.event_name,
                dimension=args.dimension,
                property=args.property,
                factor=args.factor,
            )
        except pydantic.ValidationError as err:
            print(
                "billbridge: "
                + format_validation_error(err).replace("Value error, ", "").replace("<root>: ", ""),
                file=sys.stderr,
            )
            return 2
        store.set_dimension_mapping(args.connection, mapping)
        what = f"sum of {mapping.property}" if mapping.property else "count"
        print(
            f"{args.connection}: {mapping.event_name} ({what}) x {mapping.factor} -> "
            f"{mapping.dimension}"
        )
        return 0
    if args.dimensions_action == "delete":
        if not store.delete_dimension_mapping(args.connection, args.event_name, args.dimension):
            print(
                f"billbridge: {args.event_name} -> {args.dimension} is not mapped on "
                f"{args.connection}",
                file=sys.stderr,
            )
            return 1
        print(f"{args.connection}: {args.event_name} -> {args.dimension} removed")
        return 0
    mappings = store.dimension_mappings(args.connection)
    print_json([m.model_dump(mode="json") for m in mappings])
    return 0


def _ledger(args: argparse.Namespace, store: Store) -> int:
    since = None
    if args.since:
        try:
            since = datetime.fromisoformat(args.since)
        except ValueError:
            print(f"billbridge: --since: {args.since!r} is not an ISO 8601 time", file=sys.stderr)
            return 2
        if since.tzinfo is None:
            print("billbridge: --since: give a timezone (e.g. Z)", file=sys.stderr)
            return 2
    records = store.ledger(args.customer, since)
    if args.json:
        print_json([r.model_dump(mode="json") for r in records])
        return 0
    rows = [["HOUR", "DIMENSION", "QUANTITY", "OUTCOME", "REQUEST", "REF"]]
    for r in records:
        rows.append(
            [
                r.hour_start.isoformat(),
                r.dimension,
                str(r.quantity),
                r.outcome,
                str(r.request_id),
                r.marketplace_ref,
            ]
        )
    _table(rows)
    return 0


def _reconcile(args: argparse.Namespace, store: Store) -> int:
    """Ingested vs reported per dimension, from the store and the ledger; exit 1 when
    something is held for a resend or was reported beyond what was ingested."""
    try:
        rows = metering_door.reconcile_metering(store, args.customer)
    except metering_door.MeteringError as err:
        print(f"billbridge: {err}", file=sys.stderr)
        return 2
    fields = ("ingested", "delivered", "held", "owed")
    if args.json:
        print_json(
            [
                {
                    "customer_id": r.customer_id,
                    "marketplace": r.marketplace,
                    "dimension": r.dimension,
                    "through": r.through.isoformat() if r.through else None,
                    **{name: str(getattr(r, name)) for name in fields},
                    "ok": r.ok,
                }
                for r in rows
            ]
        )
    else:
        table = [["DIMENSION", "INGESTED", "DELIVERED", "HELD", "OWED", "OK"]]
        for r in rows:
            table.append(
                [r.dimension, *(str(getattr(r, name)) for name in fields), "yes" if r.ok else "NO"]
            )
        _table(table)
    return 0 if all(r.ok for r in rows) else 1


def cmd_marketplace(args: argparse.Namespace) -> int:
    with open_store(Settings.from_env()) as store:
        action = {
            "link": _link,
            "list": _list,
            "dimensions": _dimensions,
            "ledger": _ledger,
            "reconcile": _reconcile,
            "unlink": _unlink,
            "start": _start,
            "pause": _signal,
            "resume": _signal,
            "retry": _signal,
            "status": _status,
        }[args.marketplace_action]
        return action(args, store)


def add_parser(sub: Subparsers) -> None:
    parser = sub.add_parser(
        "marketplace", help="cloud marketplaces: customer links, dimensions, the ledger"
    )
    parser.set_defaults(func=cmd_marketplace)
    actions = parser.add_subparsers(dest="marketplace_action", required=True)

    link = actions.add_parser("link", help="link a customer to its marketplace account")
    link.add_argument("customer")
    link.add_argument("marketplace", choices=MARKETPLACES)
    link.add_argument("--connection", help="the marketplace connection (default: its name)")
    link.add_argument(
        "--field",
        action="append",
        metavar="KEY=VALUE",
        help="account field, repeated. aws: customer_aws_account_id + license_arn, or legacy "
        "customer_identifier + product_code; azure: resource_id + plan_id; gcp: "
        "usage_reporting_id + service_name [+ entitlement]. The marketplaces' own names "
        "(CustomerAWSAccountId, resourceId, ...) work too",
    )
    link.add_argument("--mode", choices=["dimensions", "billing_amount"], default="dimensions")
    link.add_argument(
        "--billing-amount-dimension", help="with --mode billing_amount: e.g. usage_fee"
    )
    _grace_argument(link)
    link.add_argument(
        "--no-start", action="store_true", help="store the link only (start it later: `start`)"
    )

    unlink = actions.add_parser(
        "unlink", help="stop the customer's metering (reporting every closed hour), then unlink"
    )
    unlink.add_argument("customer")
    unlink.add_argument("marketplace", choices=MARKETPLACES)
    unlink.add_argument(
        "--wait",
        type=float,
        default=metering_door.STOP_TIMEOUT.total_seconds(),
        help="seconds to wait for the final report (default %(default)s)",
    )
    unlink.add_argument(
        "--force",
        action="store_true",
        help="remove the link even when its metering could not be stopped (its closed hours "
        "not reported yet stay unreported)",
    )

    start = actions.add_parser(
        "start", help="start (or find) a linked customer's metering, continuing from the ledger"
    )
    start.add_argument("customer")
    _grace_argument(start)
    start.add_argument(
        "--from",
        dest="first_hour",
        metavar="ISO",
        help="with nothing in the ledger yet: report from this hour (ISO 8601 with zone; "
        "default the current hour; never before the oldest hour the marketplace still takes)",
    )

    pause = actions.add_parser("pause", help="hold a customer's reports (hours stay owed)")
    pause.add_argument("customer")
    pause.add_argument("--reason", required=True, help="why (shown by `status`)")
    resume = actions.add_parser("resume", help="report again after `pause`")
    resume.add_argument("customer")
    retry = actions.add_parser(
        "retry", help="after a fix, report the hours a customer's metering waits on again"
    )
    retry.add_argument("customer")

    status = actions.add_parser("status", help="metering state: status, next hour, last report")
    status.add_argument("customer", nargs="?", help="one customer (default: every linked one)")
    status.add_argument("--json", action="store_true")

    listing = actions.add_parser("list", help="the links")
    listing.add_argument("--customer")
    listing.add_argument("--marketplace", choices=MARKETPLACES)
    listing.add_argument("--json", action="store_true")

    dimensions = actions.add_parser("dimensions", help="event -> dimension mappings")
    dim_actions = dimensions.add_subparsers(dest="dimensions_action", required=True)
    dim_set = dim_actions.add_parser("set", help="map an event to a dimension")
    dim_set.add_argument("connection")
    dim_set.add_argument("event_name")
    dim_set.add_argument("dimension")
    dim_set.add_argument("--property", help="the numeric property to sum (omit: count events)")
    dim_set.add_argument("--factor", default="1", help="unit conversion factor (default 1)")
    dim_list = dim_actions.add_parser("list", help="a connection's mappings")
    dim_list.add_argument("connection")
    dim_delete = dim_actions.add_parser("delete", help="remove a mapping")
    dim_delete.add_argument("connection")
    dim_delete.add_argument("event_name")
    dim_delete.add_argument("dimension")

    reconcile = actions.add_parser(
        "reconcile", help="a customer's usage ingested vs reported, per dimension"
    )
    reconcile.add_argument("customer")
    reconcile.add_argument("--json", action="store_true")

    ledger = actions.add_parser("ledger", help="what was reported for a customer")
    ledger.add_argument("customer")
    ledger.add_argument("--since", help="hours from this time (ISO 8601 with zone)")
    ledger.add_argument("--json", action="store_true")


def _grace_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--grace-seconds",
        type=int,
        default=DEFAULT_GRACE_SECONDS,
        help="how long after an hour closes late events are waited for (default %(default)s)",
    )
