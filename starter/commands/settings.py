"""billbridge settings show|set KEY VALUE: account-wide export settings."""

from __future__ import annotations

import argparse
import sys

from billbridge.activities.export import CONNECTION_SETTING
from billbridge.activities.store import Store
from billbridge.core.config import Settings
from billbridge.core.models import EXPORTABLE_PROVIDERS
from billbridge.core.providers import PROVIDER_ENTRIES
from billbridge.starter.commands.common import (
    Subparsers,
    command,
    open_store,
    print_json,
    signal_waiting_exports,
)

SETTINGS = ("default_provider", "export_customers")
# `connection.<provider>`: which of several connections of a provider exports (`_decide`).
CONNECTION_KEYS = tuple(f"{CONNECTION_SETTING}{entry.name}" for entry in PROVIDER_ENTRIES)


def parse_setting(key: str, value: str) -> object:
    """The stored value of an account setting given on the command line; errors name the key."""
    if key == "default_provider":
        if value == "none":
            return None
        if value not in EXPORTABLE_PROVIDERS:
            raise ValueError(
                f"default_provider: {value!r} is not one of {sorted(EXPORTABLE_PROVIDERS)} "
                "(or none)"
            )
        return value
    if key == "export_customers":
        if value == "all":
            return "all"
        customers = [c.strip() for c in value.split(",") if c.strip()]
        if not customers:
            raise ValueError("export_customers: give `all` or a comma-separated list of ids")
        return customers
    raise ValueError(f"{key}: unknown setting; known: {', '.join(SETTINGS + CONNECTION_KEYS)}")


def parse_connection_setting(store: Store, key: str, value: str) -> str | None:
    """`connection.<provider>`: the id of a stored connection of that provider, or none."""
    provider = key.removeprefix(CONNECTION_SETTING)
    if value == "none":
        return None
    choices = sorted(row.id for row in store.list_connections() if row.provider == provider)
    if value not in choices:
        raise ValueError(f"{key}: {value!r} is not a connection of {provider}; choices: {choices}")
    return value


def cmd_settings(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    with open_store(settings) as store:
        if args.action == "set":
            if not args.key or args.value is None:
                print("billbridge: settings set KEY VALUE", file=sys.stderr)
                return 2
            value: object
            try:
                if args.key in CONNECTION_KEYS:
                    value = parse_connection_setting(store, args.key, args.value)
                else:
                    value = parse_setting(args.key, args.value)
            except ValueError as err:
                print(f"billbridge: {err}", file=sys.stderr)
                return 2
            store.set_account_setting(args.key, value)
        shown: dict[str, object] = {"default_provider": None, "export_customers": "all"}
        shown.update(store.account_settings())
        print_json(shown)
    if args.action == "set" and args.key in CONNECTION_KEYS:
        # Exports waiting for this choice go on (records carry the provider).
        signal_waiting_exports(settings, connection_id=args.key.removeprefix(CONNECTION_SETTING))
    return 0


def add_parser(sub: Subparsers) -> None:
    settings = command(
        sub, "settings", "account-wide export settings", cmd_settings, ["show", "set"]
    )
    settings.add_argument("key", nargs="?", choices=SETTINGS + CONNECTION_KEYS)
    settings.add_argument("value", nargs="?")
