"""billbridge connections list|add|authorize|import|revoke|set|enable|disable: each provider's
credentials, settings and health."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import pydantic

from billbridge.activities.export import ExportActivities
from billbridge.activities.oauth import OAuthGrant, revoke_grant
from billbridge.activities.providers import OAUTH_APPS, PROVIDERS
from billbridge.activities.providers.base import ConnectionConfig
from billbridge.activities.secrets import SecretBox, SecretError
from billbridge.activities.store import ConnectionRow, Store
from billbridge.core.config import Settings, is_local_url
from billbridge.core.connections import ConnectionSettings
from billbridge.core.errors import ExportError
from billbridge.core.models import format_validation_error
from billbridge.core.usage import MARKETPLACES
from billbridge.starter.commands.common import (
    Subparsers,
    command,
    connection_ids,
    open_store,
    print_json,
    resolve_connection,
    signal_waiting_exports,
    unknown_connection,
)
from billbridge.starter.commands.marketplace import (
    add_connection_arguments,
    check_marketplace_connection,
    marketplace_connection_command,
    marketplace_connection_report,
)
from billbridge.workers.codec import CodecKeyError


def _connection_settings(
    name: str, row: ConnectionRow | None, updates: list[str]
) -> ConnectionSettings:
    """Current settings with `key=value` updates applied; errors name the setting."""
    current = dict(row.settings) if row is not None else {}
    for update in updates:
        key, sep, value = update.partition("=")
        if not sep:
            raise ValueError(f"{update}: expected key=value")
        if not ConnectionSettings.applies_to(key.strip(), name):
            raise ValueError(f"{key.strip()}: not a setting of {name} connections")
        current[key.strip()] = None if value.strip() in ("", "none") else value.strip()
    try:
        return ConnectionSettings.model_validate(current)
    except pydantic.ValidationError as err:
        raise ValueError(format_validation_error(err)) from err


def _read_api_key(args: argparse.Namespace) -> str:
    """The key `connections add` was given, exactly one way; never empty (an empty key would
    silently keep the old one)."""
    given = [
        flag
        for flag, value in (
            ("--api-key-env", args.api_key_env),
            ("--api-key-file", args.api_key_file),
            ("--api-key", args.api_key),  # lands in shell history: prefer the others
        )
        if value is not None
    ]
    if not given:
        raise ValueError(
            f"connections add {args.connection} needs the key: --api-key-env VAR, "
            "--api-key-file FILE or --api-key KEY"
        )
    if len(given) > 1:
        raise ValueError(f"give the key one way, not {' and '.join(given)}")
    if args.api_key_env is not None:
        value = (os.environ.get(args.api_key_env) or "").strip()
        source = f"--api-key-env: {args.api_key_env} is not set or empty"
    elif args.api_key_file is not None:
        value = Path(args.api_key_file).read_text().strip()
        source = f"--api-key-file: {args.api_key_file} is empty"
    else:
        value = args.api_key.strip()
        source = "--api-key: the key is empty"
    if not value:
        raise ValueError(f"{source}; the stored key is unchanged")
    return value


def _target(args: argparse.Namespace, store: Store) -> tuple[str, str, ConnectionRow | None] | int:
    """The connection a command acts on: (id, provider, stored row), or the exit status.

    `add`, `authorize` and `import` name a provider, and `--id` the connection (default: the
    provider's name, its default connection); the other commands name the connection by its id.
    """
    if args.action in ("add", "authorize", "import"):
        provider = args.connection
        if provider not in PROVIDERS:
            return unknown_connection(provider)
        connection_id = args.id or provider
        row = store.get_connection(connection_id)
        if row is not None and row.provider != provider:
            print(
                f"billbridge: connection {connection_id} exports to {row.provider}, not "
                f"{provider}; choose another --id",
                file=sys.stderr,
            )
            return 2
        return connection_id, provider, row
    if args.id is not None:
        print(
            f"billbridge: --id goes with add and authorize; `connections {args.action}` takes "
            "the connection id itself",
            file=sys.stderr,
        )
        return 2
    found = resolve_connection(store, args.connection)
    if found is None:
        return unknown_connection(args.connection, connection_ids(store))
    return args.connection, found[0], found[1]


def cmd_connections(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    with open_store(settings) as store:
        if args.action == "list":
            return _list_connections(store, settings, check=not args.no_verify)
        # Marketplace connections (aws, azure, gcp) have their own flags and no exports.
        handled = marketplace_connection_command(args, store, settings)
        if handled is not None:
            return handled
        target = _target(args, store)
        if isinstance(target, int):
            return target
        connection_id, provider, row = target
        if args.action == "revoke":
            return _revoke(connection_id, provider, store, settings, row)
        oauth = provider in OAUTH_APPS
        if args.action in ("authorize", "import") and not oauth:
            print(
                f"billbridge: {provider} takes an API key: "
                f"`billbridge connections add {provider} --api-key-env VAR`",
                file=sys.stderr,
            )
            return 2
        if args.action == "add" and oauth:
            print(
                f"billbridge: {provider} is authorized with OAuth: "
                f"`billbridge connections authorize {provider}`",
                file=sys.stderr,
            )
            return 2
        # Export records (what waiting exports are found by) carry the provider, so a fix on
        # any of its connections signals those waiting on the provider: a re-check is harmless.
        if args.action in ("authorize", "import"):
            code = _authorize(args, connection_id, provider, store, settings)
            if code:
                return code
            # Both proved the new grant with an API call (companyinfo) before storing it.
            code = _list_connections(
                store, settings, only=connection_id, health="credentials accepted (just now)"
            )
            signal_waiting_exports(settings, connection_id=provider)
            return code
        try:
            new_settings = _connection_settings(
                provider, row, args.settings if args.action == "set" else []
            )
            api_key = _read_api_key(args) if args.action == "add" else None
            sealed = row.credentials_ref if row is not None else None
            if api_key:
                sealed = SecretBox.from_settings(settings).seal(api_key, connection_id)
        except (ValueError, OSError, CodecKeyError) as err:
            print(f"billbridge: {err}", file=sys.stderr)
            return 2
        enabled = {"enable": True, "disable": False}.get(
            args.action, row.enabled if row is not None else True
        )
        health = "not checked (`billbridge connections list` checks it)"
        if api_key and args.no_verify:
            health = "not checked (--no-verify)"
        elif api_key:
            config = ConnectionConfig(connection_id, api_key, new_settings, enabled)
            try:
                PROVIDERS[provider](settings, config).check_credentials()
            except ExportError as err:
                print(f"billbridge: {connection_id}: credentials refused: {err}", file=sys.stderr)
                return 1
            health = "credentials accepted (just now)"
        store.upsert_connection(
            connection_id,
            provider,
            enabled=enabled,
            credentials_ref=sealed,
            settings=new_settings.model_dump(mode="json"),
        )
        code = _list_connections(store, settings, only=connection_id, health=health)
    if args.action != "disable":
        signal_waiting_exports(settings, connection_id=provider)
    return code


def _read_refresh_token(args: argparse.Namespace) -> str:
    """The refresh token `connections import` was given, exactly one way; never empty."""
    given = [
        flag
        for flag, value in (
            ("--refresh-token-env", args.refresh_token_env),
            ("--refresh-token-file", args.refresh_token_file),
        )
        if value is not None
    ]
    if len(given) != 1:
        raise ValueError(
            f"connections import {args.connection} needs the refresh token one way: "
            "--refresh-token-env VAR or --refresh-token-file FILE (- for standard input)"
        )
    if args.refresh_token_env is not None:
        value = (os.environ.get(args.refresh_token_env) or "").strip()
        empty = f"--refresh-token-env: {args.refresh_token_env} is not set or empty"
    elif args.refresh_token_file == "-":
        value, empty = sys.stdin.readline().strip(), "--refresh-token-file -: nothing on stdin"
    else:
        value = Path(args.refresh_token_file).read_text().strip()
        empty = f"--refresh-token-file: {args.refresh_token_file} is empty"
    if not value:
        raise ValueError(empty)
    return value


def _authorize(
    args: argparse.Namespace, connection_id: str, provider: str, store: Store, settings: Settings
) -> int:
    """`authorize` (the OAuth flow) or `import` (a grant made elsewhere): verified, then sealed."""
    from billbridge.starter.authorize import (
        AuthorizationFailed,
        authorize,
        import_grant,
        store_grant,
    )

    try:
        SecretBox.from_settings(settings)  # a missing key fails before the browser step
        if args.action == "import":
            if not args.realm_id:
                raise ValueError(
                    f"connections import {args.connection} needs --realm-id: the company the "
                    "grant was made for"
                )
            grant = import_grant(
                settings,
                provider,
                refresh_token=_read_refresh_token(args),
                company_id=args.realm_id,
                environment=args.environment,
            )
        else:
            grant = authorize(
                settings,
                provider,
                port=args.port,
                timeout=args.timeout,
                open_browser=args.open_browser,
                redirect_uri=args.redirect_uri,
                environment=args.environment,
            )
    except (ValueError, OSError) as err:
        print(f"billbridge: {connection_id}: {err}", file=sys.stderr)
        return 2
    except (AuthorizationFailed, CodecKeyError) as err:
        print(f"billbridge: {connection_id}: {err}", file=sys.stderr)
        return 1
    except ExportError as err:
        print(f"billbridge: {connection_id}: {err.type_name}: {err}", file=sys.stderr)
        return 1
    store_grant(store, settings, connection_id, grant, provider=provider)
    done = "imported" if args.action == "import" else "authorized"
    where = f", {grant.environment} environment" if grant.environment else ""
    print(f"{connection_id}: {done} (company {grant.company_id or '-'}){where}")
    return 0


def _revoke(
    name: str, provider: str, store: Store, settings: Settings, row: ConnectionRow | None
) -> int:
    """Disconnect: revoke the OAuth grant at the provider and forget the stored credential."""
    if row is None or not row.credentials_ref:
        print(f"billbridge: {name} holds no stored credential", file=sys.stderr)
        return 1
    code = 0
    if provider in OAUTH_APPS:
        try:
            box = SecretBox.from_settings(settings)
            grant = OAuthGrant.from_json(box.open(row.credentials_ref, name))
            revoke_grant(OAUTH_APPS[provider](settings).endpoints, grant)
        except (ExportError, SecretError, CodecKeyError) as err:
            # Forgotten here all the same; the provider's own console can revoke it too.
            print(f"billbridge: {name}: could not revoke at the provider: {err}", file=sys.stderr)
            code = 1
    store.upsert_connection(
        name, provider, enabled=row.enabled, credentials_ref=None, settings=row.settings
    )
    print(f"{name}: credential removed from the store")
    return code


def _credentials_report(
    name: str, provider: str, row: ConnectionRow | None, activities: ExportActivities
) -> dict[str, object]:
    """How a connection is authenticated, without any secret."""
    if row is None or not row.credentials_ref:
        if provider in OAUTH_APPS:
            how = provider if name == provider else f"{provider} --id {name}"
            return {"credentials": f"not authorized: `billbridge connections authorize {how}`"}
        return {"credentials": "environment default"}
    if provider not in OAUTH_APPS:
        return {"credentials": "sealed in the store"}
    try:
        grant = OAuthGrant.from_json(activities.secrets().open(row.credentials_ref, name))
    except (ExportError, SecretError, CodecKeyError) as err:
        return {"credentials": f"error: {err}"}
    summary = grant.summary()
    if summary["reauthorize"]:
        how = provider if name == provider else f"{provider} --id {name}"
        summary["reauthorize"] += f"; run `billbridge connections authorize {how}`"
        print(f"billbridge: {name}: {summary['reauthorize']}", file=sys.stderr)
    return {"credentials": "OAuth grant sealed in the store", **summary}


def _list_connections(
    store: Store,
    settings: Settings,
    *,
    only: str | None = None,
    check: bool = True,
    health: str | None = None,
) -> int:
    """Print every connection (or `only`): where it exports to, its credentials and health.

    health: what the caller just found out (e.g. the key it verified); else the connection is
    checked live when `check`, or reported "not checked".
    """
    activities = ExportActivities(store, settings)
    exports = store.list_exports()
    endpoints = settings.endpoints()
    report = []
    for name in connection_ids(store):
        if only is not None and name != only:
            continue
        stored = store.get_connection(name)
        provider = stored.provider if stored is not None else name
        if stored is not None and provider in MARKETPLACES:
            if health is None and check:
                health_now = check_marketplace_connection(store, settings, name)
            else:
                health_now = health or "not checked (--no-verify)"
            report.append(marketplace_connection_report(stored, health=health_now))
            continue
        status = health or "not checked (--no-verify)"
        if health is None and check:
            try:
                activities.provider(provider, name).check_credentials()
                status = "credentials accepted"
            except (ExportError, SecretError, CodecKeyError) as err:
                status = f"error: {err}"
        row = store.get_connection(name)  # read after the check, which may rotate a token
        # Export records carry the provider, not the connection they went through.
        ours = [e for e in exports if e.provider == provider]
        succeeded = [e.updated_at for e in ours if e.status == "exported"]
        failed = [e for e in ours if e.status == "failed"]
        last_error = max(failed, key=lambda e: e.updated_at) if failed else None
        report.append(
            {
                "connection": name,
                "provider": provider,
                # Where exports go (core/config.py decides); a local address is an emulator.
                "endpoint": endpoints.get(provider),
                "local_emulator": is_local_url(endpoints[provider])
                if provider in endpoints
                else None,
                "enabled": row.enabled if row is not None else True,
                # Connected: it has credentials to use (stored, or the environment's default).
                "connected": bool(row is not None and row.credentials_ref)
                or provider not in OAUTH_APPS,
                **_credentials_report(name, provider, row, activities),
                "health": status,
                "settings": row.settings
                if row is not None
                else ConnectionSettings().model_dump(mode="json"),
                "last_success": max(succeeded).isoformat() if succeeded else None,
                "last_error": f"{last_error.invoice_id}: {last_error.error}"
                if last_error
                else None,
            }
        )
    print_json(report)
    return 0


def add_parser(sub: Subparsers) -> None:
    connections = command(
        sub,
        "connections",
        "providers: credentials, settings, health",
        cmd_connections,
        ["list", "add", "authorize", "import", "revoke", "set", "enable", "disable"],
    )
    connections.add_argument(
        "connection",
        nargs="?",
        help="the connection id, e.g. stripe_invoice; with add, authorize, import: the provider",
    )
    connections.add_argument(
        "--id",
        help="with add, authorize, import: the new connection's id (default: the provider's name)",
    )
    connections.add_argument("settings", nargs="*", help="with set: key=value ...")
    connections.add_argument("--api-key-env", help="with add: read the API key from this variable")
    connections.add_argument("--api-key-file", help="with add: read the API key from this file")
    connections.add_argument("--api-key", help="with add: the API key (visible in shell history)")
    connections.add_argument(
        "--no-verify",
        action="store_true",
        help="with add: skip the key check; with list: skip the live health checks",
    )
    connections.add_argument(
        "--port",
        type=int,
        default=8765,
        help="with authorize: local callback port (redirect URI http://localhost:PORT/callback)",
    )
    connections.add_argument(
        "--timeout", type=float, default=300.0, help="with authorize: seconds to wait"
    )
    connections.add_argument(
        "--open-browser", action="store_true", help="with authorize: open the URL in a browser"
    )
    connections.add_argument(
        "--redirect-uri",
        help="with authorize: the redirect URI registered with the app (default: the local "
        "callback); on another host, paste the URL the browser was redirected to on stdin",
    )
    connections.add_argument(
        "--environment",
        help="with authorize and import: the company's environment (QuickBooks: sandbox or "
        "production; default: production for Intuit's production API base, else sandbox)",
    )
    connections.add_argument(
        "--refresh-token-env", help="with import: read the refresh token from this variable"
    )
    connections.add_argument(
        "--refresh-token-file", help="with import: read the refresh token from this file (-: stdin)"
    )
    connections.add_argument(
        "--realm-id", help="with import: the company (QuickBooks realmId) the grant is for"
    )
    add_connection_arguments(connections)
