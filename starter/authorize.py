"""`billbridge connections authorize NAME`: the OAuth 2.0 authorization-code flow, on a terminal.

It prints the provider's authorize URL, receives the code on a one-shot local callback
(http://localhost:PORT/callback, the redirect URI registered with the provider's app), checks the
`state`, exchanges the code (authlib), proves the grant with one API call, and only then seals
it into the store. Waiting exports are signalled by the caller.
"""

from __future__ import annotations

import secrets
import sys
import threading
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from billbridge.activities.oauth import OAuthApp, OAuthGrant, exchange_code, oauth_client
from billbridge.activities.providers import OAUTH_APPS, PROVIDERS
from billbridge.activities.providers.base import ConnectionConfig
from billbridge.activities.secrets import SecretBox
from billbridge.activities.store import Store
from billbridge.core.config import Settings
from billbridge.core.connections import ConnectionSettings

CALLBACK_PATH = "/callback"


class AuthorizationFailed(Exception):
    """The flow did not produce a working grant; the message says why and what to do."""


@dataclass
class _Callback:
    query: dict[str, str] | None = None


class _GrantInMemory:
    """The grant being verified, before anything is stored."""

    def __init__(self, grant: OAuthGrant) -> None:
        self.credential = grant.to_json()

    def read(self) -> tuple[str | None, str | None]:
        return "unsaved", self.credential

    def replace(self, expected_version: str | None, credential: str) -> str | None:
        self.credential = credential
        return "unsaved"


def _callback_server(received: _Callback, done: threading.Event, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path != CALLBACK_PATH:
                self.send_error(404)
                return
            received.query = {k: v[0] for k, v in parse_qs(url.query).items()}
            ok = "code" in received.query
            page = (
                "billbridge: authorization received; you can close this tab."
                if ok
                else f"billbridge: authorization failed: {received.query.get('error', '?')}"
            ).encode()
            self.send_response(200 if ok else 400)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)
            done.set()

        def log_message(self, format: str, *args: Any) -> None:  # the code is a secret
            pass

    return ThreadingHTTPServer(("127.0.0.1", port), Handler)


def authorize(
    settings: Settings,
    name: str,
    *,
    port: int,
    timeout: float,
    open_browser: bool = False,
    say: Callable[[str], None] = print,
) -> OAuthGrant:
    """Run the flow for connection `name` and return the verified grant (not yet stored)."""
    app: OAuthApp = OAUTH_APPS[name](settings)
    if not app.client_id or not app.client_secret:
        variable = f"{name.upper()}_CLIENT_ID and {name.upper()}_CLIENT_SECRET"
        raise AuthorizationFailed(f"set {variable} to the OAuth client of your {name} app")
    received, done = _Callback(), threading.Event()
    try:
        server = _callback_server(received, done, port)
    except OSError as err:
        raise AuthorizationFailed(
            f"cannot listen for the callback on 127.0.0.1:{port} ({err.strerror}); pick another "
            "--port and register http://localhost:PORT/callback with the app"
        ) from err
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.daemon = True
    thread.start()
    try:
        redirect_uri = f"http://localhost:{server.server_address[1]}{CALLBACK_PATH}"
        state = secrets.token_urlsafe(24)
        with oauth_client(app.endpoints, app.client_id, app.client_secret) as client:
            url, _ = client.create_authorization_url(
                app.endpoints.authorize_url, redirect_uri=redirect_uri, state=state
            )
        say(f"Open this URL to authorize {name} (redirect URI {redirect_uri}):")
        say(url)
        sys.stdout.flush()
        if open_browser:
            webbrowser.open(url)
        if not done.wait(timeout):
            raise AuthorizationFailed(f"no authorization arrived within {timeout:.0f} s")
    finally:
        server.shutdown()
        server.server_close()
    query = received.query or {}
    if "error" in query:
        raise AuthorizationFailed(f"the provider refused: {query['error']}")
    if not secrets.compare_digest(query.get("state", ""), state):
        raise AuthorizationFailed("the callback's state does not match: possible forgery")
    grant = exchange_code(
        app.endpoints,
        app.client_id,
        app.client_secret,
        code=query.get("code", ""),
        redirect_uri=redirect_uri,
        company_id=query.get(app.company_parameter, "") if app.company_parameter else "",
    )
    # Proven by one API call before it replaces whatever the store holds.
    holder = _GrantInMemory(grant)
    config = ConnectionConfig(name, None, ConnectionSettings(), True, holder)
    PROVIDERS[name](settings, config).check_credentials()
    return OAuthGrant.from_json(holder.credential)


def store_grant(
    store: Store, settings: Settings, name: str, grant: OAuthGrant, *, provider: str | None = None
) -> None:
    """Seal the grant into connection `name` of `provider` (default: the connection named after
    its provider); the connection's settings and enabled flag are kept."""
    row = store.get_connection(name)
    store.upsert_connection(
        name,
        provider or name,
        enabled=row.enabled if row is not None else True,
        credentials_ref=SecretBox.from_settings(settings).seal(grant.to_json(), name),
        settings=row.settings if row is not None else ConnectionSettings().model_dump(mode="json"),
    )
