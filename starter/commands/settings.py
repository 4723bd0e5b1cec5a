"""billbridge settings show|set KEY VALUE: account-wide export settings."""

from __future__ import annotations

import argparse
import sys

from billbridge.core.models import EXPORTABLE_PROVIDERS
from billbridge.starter.commands.common import Subparsers, command, print_json, store_from_env

SETTINGS = ("default_provider", "export_customers")


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
    raise ValueError(f"{key}: unknown setting; known: {', '.join(SETTINGS)}")


def cmd_settings(args: argparse.Namespace) -> int:
    with store_from_env() as store:
        if args.action == "set":
            if not args.key or args.value is None:
                print("billbridge: settings set KEY VALUE", file=sys.stderr)
                return 2
            try:
                value = parse_setting(args.key, args.value)
            except ValueError as err:
                print(f"billbridge: {err}", file=sys.stderr)
                return 2
            store.set_account_setting(args.key, value)
        settings: dict[str, object] = {"default_provider": None, "export_customers": "all"}
        settings.update(store.account_settings())
        print_json(settings)
    return 0


def add_parser(sub: Subparsers) -> None:
    settings = command(
        sub, "settings", "account-wide export settings", cmd_settings, ["show", "set"]
    )
    settings.add_argument("key", nargs="?", choices=SETTINGS)
    settings.add_argument("value", nargs="?")
