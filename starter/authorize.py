"""`billbridge connections authorize|import NAME`: OAuth 2.0 grants, made on a terminal.

authorize prints the provider's authorize URL and receives the code either on a one-shot local
callback (http://localhost:PORT/callback, or a local --redirect-uri) or, for a redirect URI on
another host (a production app's https page), as the full redirected URL pasted on standard
input. It checks the `state`, exchanges the code (authlib), proves the grant with one API call,
and only then seals it into the store. import takes a grant made elsewhere (a refresh token and
its company), proves it the same way, and seals it. Waiting exports are signalled by the caller.
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

from billbridge.activities.oauth import (
    OAuthApp,
    OAuthGrant,
    exchange_code,
    import_refresh_token,
    oauth_client,
)
from billbridge.activities.providers import OAUTH_APPS, PROVIDERS
from billbridge.activities.providers.base import ConnectionConfig
from billbridge.activities.secrets import SecretBox
from billbridge.activities.store import Store
from billbridge.core.config import Settings
from billbridge.core.connections import ConnectionSettings
from billbridge.core.errors import ExportError

CALLBACK_PATH = "/callback"
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")


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


def _callback_server(
    received: _Callback, done: threading.Event, port: int, path: str = CALLBACK_PATH
) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path != path:
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


def _environment(app: OAuthApp, name: str, environment: str | None) -> str:
    """The environment the grant is made in (QuickBooks: sandbox or production)."""
    if not app.environments:
        if environment:
            raise AuthorizationFailed(f"{name} has no environments (--environment)")
        return ""
    chosen = environment or app.default_environment
    if chosen not in app.environments:
        raise AuthorizationFailed(
            f"--environment {chosen}: not one of {', '.join(app.environments)}"
        )
    return chosen


def _client(app: OAuthApp, name: str) -> tuple[str, str]:
    if not app.client_id or not app.client_secret:
        variable = f"{name.upper()}_CLIENT_ID and {name.upper()}_CLIENT_SECRET"
        raise AuthorizationFailed(f"set {variable} to the OAuth client of your {name} app")
    return app.client_id, app.client_secret


def is_local_redirect(redirect_uri: str) -> bool:
    """Whether the redirect URI is this machine's, so its own callback can receive the code."""
    return (urlsplit(redirect_uri).hostname or "").lower() in LOCAL_HOSTS


def _check_redirect(app: OAuthApp, name: str, environment: str, redirect_uri: str) -> None:
    """Refuse, before any browser step, a redirect URI the provider will not redirect to.

    Intuit: "The Intuit OAuth 2.0 Server can only redirect to URIs beginning with https. IP
    addresses aren't allowed", except that "you can add localhost (no HTTPS) as a URI for
    sandbox environments"
    (https://developer.intuit.com/app/developer/qbo/docs/develop/authentication-and-authorization/set-redirect-uri).
    """
    split = urlsplit(redirect_uri)
    if split.scheme not in ("http", "https") or not split.hostname or split.fragment:
        raise AuthorizationFailed(
            f"--redirect-uri {redirect_uri}: an absolute http(s) URI without a fragment is needed"
        )
    local_allowed = not app.environments or environment in app.local_redirect_environments
    if split.scheme == "https" or (is_local_redirect(redirect_uri) and local_allowed):
        return
    if is_local_redirect(redirect_uri):
        raise AuthorizationFailed(
            f"{name} redirects {environment} apps only to https URIs, not to {redirect_uri} "
            "(http://localhost works with development/sandbox keys only): register an https "
            "redirect URI with the app's production keys and pass it as --redirect-uri"
        )
    raise AuthorizationFailed(
        f"--redirect-uri {redirect_uri}: only https redirect URIs (or http://localhost) are "
        "accepted; the code must not travel in clear text"
    )


def _receive_on_callback(
    redirect_uri: str,
    port: int,
    authorize_url: Callable[[str], str],
    *,
    timeout: float,
    open_browser: bool,
    say: Callable[[str], None],
    name: str,
) -> tuple[str, dict[str, str]]:
    """(redirect URI, callback query) from a one-shot local callback server on `port` (0: any
    free one, written into the redirect URI)."""
    split = urlsplit(redirect_uri)
    received, done = _Callback(), threading.Event()
    try:
        server = _callback_server(received, done, port, split.path or "/")
    except OSError as err:
        raise AuthorizationFailed(
            f"cannot listen for the callback on 127.0.0.1:{port} ({err.strerror}); pick another "
            "--port and register http://localhost:PORT/callback with the app"
        ) from err
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.daemon = True
    thread.start()
    try:
        netloc = f"{split.hostname}:{server.server_address[1]}"
        redirect_uri = split._replace(netloc=netloc).geturl()
        url = authorize_url(redirect_uri)
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
    return redirect_uri, received.query or {}


def _read_stdin_line(timeout: float) -> str | None:
    """One line of standard input, or None at its end or after `timeout` seconds."""
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(sys.stdin.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if not line:
        raise AuthorizationFailed(f"no redirected URL was pasted within {timeout:.0f} s")
    return line[0] or None


def _receive_pasted(
    redirect_uri: str,
    url: str,
    *,
    timeout: float,
    open_browser: bool,
    say: Callable[[str], None],
    read_line: Callable[[float], str | None],
    name: str,
) -> dict[str, str]:
    """The callback query from the URL the browser was redirected to, pasted on stdin.

    The redirect URI is another machine's (a production app's https page), so nothing here can
    receive the redirect; whatever that page shows, the address bar holds the code and state.
    """
    say(f"Open this URL to authorize {name} (redirect URI {redirect_uri}):")
    say(url)
    say(
        "After consenting, paste here the full URL the browser was redirected to "
        "(from the address bar, even if the page shows an error), then press Enter:"
    )
    sys.stdout.flush()
    if open_browser:
        webbrowser.open(url)
    pasted = (read_line(timeout) or "").strip()
    if not pasted:
        raise AuthorizationFailed("no redirected URL was pasted (standard input ended)")
    got, expected = urlsplit(pasted), urlsplit(redirect_uri)
    if (got.scheme, (got.hostname or "").lower(), got.port, got.path.rstrip("/")) != (
        expected.scheme,
        (expected.hostname or "").lower(),
        expected.port,
        expected.path.rstrip("/"),
    ):
        raise AuthorizationFailed(
            f"the pasted URL is not the redirect URI {redirect_uri} with a query: paste the whole "
            "address the browser was sent to after consenting"
        )
    return {k: v[0] for k, v in parse_qs(got.query).items()}


def authorize(
    settings: Settings,
    name: str,
    *,
    port: int,
    timeout: float,
    open_browser: bool = False,
    say: Callable[[str], None] = print,
    redirect_uri: str | None = None,
    environment: str | None = None,
    read_line: Callable[[float], str | None] = _read_stdin_line,
) -> OAuthGrant:
    """Run the flow for connection `name` and return the verified grant (not yet stored).

    Without `redirect_uri` the code arrives on a local callback
    (http://localhost:PORT/callback); a local `redirect_uri` is listened on the same way; any
    other is the app's own page, and the URL the browser was redirected to is read from
    `read_line` (standard input).
    """
    app: OAuthApp = OAUTH_APPS[name](settings)
    client_id, client_secret = _client(app, name)
    chosen = _environment(app, name, environment)
    # Only a plain-http local URI can be received here (the callback server speaks no TLS).
    local = redirect_uri is None or (
        is_local_redirect(redirect_uri) and urlsplit(redirect_uri).scheme == "http"
    )
    wanted = redirect_uri or f"http://localhost:{port}{CALLBACK_PATH}"
    _check_redirect(app, name, chosen, wanted)
    state = secrets.token_urlsafe(24)

    def authorize_url(uri: str) -> str:
        with oauth_client(app.endpoints, client_id, client_secret) as client:
            url, _ = client.create_authorization_url(
                app.endpoints.authorize_url, redirect_uri=uri, state=state
            )
        return str(url)

    if local:
        listen = port if redirect_uri is None else (urlsplit(wanted).port or 80)
        wanted, query = _receive_on_callback(
            wanted,
            listen,
            authorize_url,
            timeout=timeout,
            open_browser=open_browser,
            say=say,
            name=name,
        )
    else:
        query = _receive_pasted(
            wanted,
            authorize_url(wanted),
            timeout=timeout,
            open_browser=open_browser,
            say=say,
            read_line=read_line,
            name=name,
        )
    if "error" in query:
        raise AuthorizationFailed(f"the provider refused: {query['error']}")
    # RFC 6749 section 10.12: the state binds the answer to this request (no forged callback).
    if not secrets.compare_digest(query.get("state", ""), state):
        raise AuthorizationFailed("the callback's state does not match: possible forgery")
    if not query.get("code"):
        raise AuthorizationFailed("the redirected URL carries no authorization code")
    grant = exchange_code(
        app.endpoints,
        client_id,
        client_secret,
        code=query["code"],
        redirect_uri=wanted,
        company_id=query.get(app.company_parameter, "") if app.company_parameter else "",
        environment=chosen,
    )
    return _verified(settings, name, grant)


def import_grant(
    settings: Settings,
    name: str,
    *,
    refresh_token: str,
    company_id: str,
    environment: str | None = None,
) -> OAuthGrant:
    """A grant made elsewhere (Intuit's OAuth Playground): its refresh token and company,
    proven at the provider (a refresh, then one API call on that company) before it is stored.

    The refresh rotates the token: from here on only the returned grant holds a live one.
    """
    app: OAuthApp = OAUTH_APPS[name](settings)
    client_id, client_secret = _client(app, name)
    chosen = _environment(app, name, environment)
    if app.company_parameter and not company_id:
        raise AuthorizationFailed(
            f"the company ({app.company_parameter}) the grant was made for is needed"
        )
    grant = import_refresh_token(
        app.endpoints,
        client_id,
        client_secret,
        refresh_token=refresh_token,
        company_id=company_id,
        environment=chosen,
    )
    try:
        return _verified(settings, name, grant)
    except ExportError as err:
        raise AuthorizationFailed(
            f"the refresh token works but company {company_id} ({chosen}) refused it: {err}; "
            "the imported token was rotated by the check and nothing was stored: make a new "
            "grant for the right company and environment"
        ) from err


def _verified(settings: Settings, name: str, grant: OAuthGrant) -> OAuthGrant:
    """The grant after one API call proved it, before it replaces whatever the store holds."""
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
