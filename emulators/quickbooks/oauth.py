"""Intuit's OAuth 2.0 endpoints: authorize (auto-consent), token and revoke.

Real Intuit: authorize at appcenter.intuit.com/connect/oauth2, token at
oauth.platform.intuit.com/oauth2/v1/tokens/bearer, revoke at
developer.api.intuit.com/v2/oauth2/tokens/revoke. The emulator serves all three on its own base
URL (``/connect/oauth2``, ``/oauth2/v1/tokens/bearer``, ``/oauth2/v1/tokens/revoke``).

Every authorization (one code exchange and the refreshes that follow it) is a *chain*: revoking
any token of a chain, or the user disconnecting the app, revokes all of its tokens.

Two apps are registered, as an Intuit app has two sets of keys
(https://developer.intuit.com/app/developer/qbo/docs/develop/authentication-and-authorization/oauth-2.0,
"Development" and "Production" Keys & OAuth): development keys connect sandbox companies and
may redirect to http://localhost; production keys connect real companies and redirect only to
https URIs. Simplification: both reach the emulator's one company (one realm id).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import html
import ipaddress
import json
import math
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote_plus, urlencode, urlsplit, urlunsplit

from . import errors
from .reply import Reply, json_reply

ACCOUNTING_SCOPE = "com.intuit.quickbooks.accounting"
SANDBOX, PRODUCTION = "sandbox", "production"
# Intuit's five-year maximum for a refresh token, counted from the authorization that started
# its chain; refreshes never extend it
# (https://blogs.a.intuit.com/2025/11/12/important-changes-to-refresh-token-policy).
# UNCONFIRMED: the exact length Intuit counts (5 x 365 days here).
REFRESH_TOKEN_MAX_LIFETIME = 5 * 365 * 86400.0
# The request header with which a client asks for `x_refresh_token_hard_expires_in`
# (https://github.com/intuit/oauth-jsclient src/OAuthClient.js, CHANGELOG 4.2.4: opt-in).
HARD_EXPIRY_HEADER = "x-include-refresh-token-hard-expires-in"
# What Intuit's authorization page says for a redirect URI the app's keys do not allow
# (as users report it: https://github.com/vm0-ai/vm0/issues/25780). UNCONFIRMED: the page's
# exact markup and status; the emulator answers 400 with the text.
INVALID_REDIRECT_URI = (
    "The redirect_uri query parameter value is invalid. Make sure it is listed in the "
    "Redirect URIs section on your app's keys tab and matches it exactly."
)
AUTHORIZATION_CODE_TTL = 600.0  # Intuit: codes are valid for 10 minutes
TOKEN_BYTES = 32  # 43 URL-safe characters; Intuit's tokens are opaque strings to clients
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}  # RFC 6749 section 5.1


class OAuthError(Exception):
    """An RFC 6749 error response: ``{"error": code}`` with HTTP ``status``."""

    def __init__(self, error: str, status: int = 400) -> None:
        super().__init__(error)
        self.error = error
        self.status = status


@dataclass
class _Code:
    client_id: str
    redirect_uri: str
    expires_at: float
    used: bool = False


@dataclass(frozen=True)
class _App:
    client_id: str
    client_secret: str
    environment: str  # SANDBOX (development keys) or PRODUCTION


@dataclass
class _Chain:
    realm_id: str
    client_id: str
    hard_expires_at: float  # the five-year cap: no refresh token of the chain outlives it
    revoked: bool = False


@dataclass
class _RefreshToken:
    chain: _Chain
    expires_at: float
    current: bool = True  # False once rotated away by a refresh


@dataclass
class _AccessToken:
    chain: _Chain
    expires_at: float


def _new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def _html_error(message: str) -> Reply:
    # Intuit shows an error page to the user instead of redirecting when it cannot trust the
    # client or the redirect URI (RFC 6749 section 4.1.2.1).
    page = f"<html><body><h1>400 Bad Request</h1><p>{html.escape(message)}</p></body></html>"
    return Reply(400, {"Content-Type": "text/html;charset=UTF-8"}, page.encode())


def _redirect(uri: str, params: dict[str, str]) -> Reply:
    split = urlsplit(uri)
    extra = urlencode(params)
    query = f"{split.query}&{extra}" if split.query else extra
    location = urlunsplit(split._replace(query=query))
    return Reply(302, {"Location": location, "Cache-Control": "no-store"})


def _redirect_allowed(environment: str, scheme: str, host: str) -> bool:
    """Intuit: "The Intuit OAuth 2.0 Server can only redirect to URIs beginning with https. IP
    addresses aren't allowed"; "You can add localhost (no HTTPS) as a URI for sandbox
    environments"
    (https://developer.intuit.com/app/developer/qbo/docs/develop/authentication-and-authorization/set-redirect-uri).
    UNCONFIRMED: whether development keys also refuse IP addresses; the emulator lets them use
    any http(s) URI, as its tests and demo redirect to 127.0.0.1 and localhost."""
    if environment != PRODUCTION:
        return True
    try:
        ipaddress.ip_address(host.strip("[]"))
        return False
    except ValueError:
        return scheme == "https"


def _form(headers: Mapping[str, str], body: bytes) -> dict[str, str]:
    if "application/x-www-form-urlencoded" not in headers.get("content-type", "").lower():
        raise OAuthError("invalid_request")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError as exc:
        raise OAuthError("invalid_request") from exc
    form: dict[str, str] = {}
    for key, value in pairs:
        if key in form:  # RFC 6749 section 3.2: parameters must not repeat
            raise OAuthError("invalid_request")
        form[key] = value
    return form


class OAuthServer:
    """Clients, codes and tokens of one emulator. Thread-safe."""

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        realm_id: str,
        access_token_ttl: float,
        refresh_token_ttl: float,
        rotate_refresh_tokens: bool,
        production_client_id: str | None = None,
        production_client_secret: str | None = None,
        refresh_token_max_lifetime: float = REFRESH_TOKEN_MAX_LIFETIME,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self._apps = {client_id: _App(client_id, client_secret, SANDBOX)}
        if production_client_id and production_client_secret:
            self._apps[production_client_id] = _App(
                production_client_id, production_client_secret, PRODUCTION
            )
        self.refresh_token_max_lifetime = refresh_token_max_lifetime
        self.realm_id = realm_id
        self.access_token_ttl = access_token_ttl
        self.refresh_token_ttl = refresh_token_ttl
        self.rotate_refresh_tokens = rotate_refresh_tokens
        self._clock = clock
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self._codes: dict[str, _Code] = {}
        self._refresh: dict[str, _RefreshToken] = {}
        self._access: dict[str, _AccessToken] = {}
        self._grants: list[dict[str, Any]] = []
        self._refresh_count = 0

    # -- authorize -----------------------------------------------------------------------------

    def authorize(self, query: Mapping[str, str]) -> Reply:
        """There is no user to ask: every valid request is consented to at once."""
        app = self._apps.get(query.get("client_id") or "")
        if app is None:
            return _html_error("Invalid client_id: this app is not known.")
        redirect_uri = query.get("redirect_uri") or ""
        split = urlsplit(redirect_uri)
        # UNCONFIRMED: Intuit only accepts redirect URIs registered for the app; the emulator
        # has no registry and takes any absolute http(s) URI without a fragment that the keys'
        # environment allows (below).
        if split.scheme not in ("http", "https") or not split.netloc or split.fragment:
            return _html_error("Missing or invalid redirect_uri.")
        if not _redirect_allowed(app.environment, split.scheme, split.hostname or ""):
            return _html_error(INVALID_REDIRECT_URI)
        state = query.get("state")
        echo = {"state": state} if state is not None else {}
        if query.get("response_type") != "code":
            return _redirect(redirect_uri, {"error": "unsupported_response_type", **echo})
        if ACCOUNTING_SCOPE not in (query.get("scope") or "").split():
            return _redirect(redirect_uri, {"error": "invalid_scope", **echo})
        code = _new_token()
        with self._lock:
            expires_at = self._clock() + AUTHORIZATION_CODE_TTL
            self._codes[code] = _Code(app.client_id, redirect_uri, expires_at)
        # Intuit adds the company the user picked as realmId to the callback.
        return _redirect(redirect_uri, {"code": code, **echo, "realmId": self.realm_id})

    # -- token ---------------------------------------------------------------------------------

    def _authenticate_client(self, headers: Mapping[str, str], form: Mapping[str, str]) -> _App:
        """client_secret_basic (what Intuit documents) or client_secret_post; the app it is."""
        scheme, _, credential = headers.get("authorization", "").strip().partition(" ")
        if scheme.lower() == "basic":
            try:
                text = base64.b64decode(credential.strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError) as exc:
                raise OAuthError("invalid_client", 401) from exc
            client_id, _, client_secret = text.partition(":")
            if self._client_matching(client_id, client_secret) is None:
                # RFC 6749 section 2.3.1 form-encodes both before base64; most clients
                # (authlib included) do not. Accept either spelling.
                client_id, client_secret = unquote_plus(client_id), unquote_plus(client_secret)
        else:
            client_id, client_secret = form.get("client_id", ""), form.get("client_secret", "")
        app = self._client_matching(client_id, client_secret)
        if app is None:
            raise OAuthError("invalid_client", 401)
        return app

    def _client_matching(self, client_id: str, client_secret: str) -> _App | None:
        # Bytes, because compare_digest refuses non-ASCII str (a hostile header must not 500).
        for app in self._apps.values():
            if hmac.compare_digest(client_id.encode(), app.client_id.encode()) and (
                hmac.compare_digest(client_secret.encode(), app.client_secret.encode())
            ):
                return app
        return None

    def token(self, headers: Mapping[str, str], body: bytes) -> Reply:
        grant_type: str | None = None
        try:
            form = _form(headers, body)
            grant_type = form.get("grant_type") or None
            app = self._authenticate_client(headers, form)
            hard = headers.get(HARD_EXPIRY_HEADER, "").strip().lower() == "true"
            with self._lock:
                if grant_type == "authorization_code":
                    payload = self._exchange_code(app, form, hard)
                elif grant_type == "refresh_token":
                    payload = self._refresh_grant(app, form, hard)
                elif grant_type is None:
                    raise OAuthError("invalid_request")
                else:
                    raise OAuthError("unsupported_grant_type")
                self._record(grant_type, None)
            return json_reply(200, payload, NO_STORE)
        except OAuthError as err:
            with self._lock:
                self._record(grant_type, err.error)
            return json_reply(err.status, {"error": err.error}, NO_STORE)

    def _record(self, grant_type: str | None, error: str | None) -> None:
        self._grants.append(
            {
                "grant_type": grant_type,
                "ok": error is None,
                "error": error,
                "at": self._wall_clock(),
            }
        )

    def _exchange_code(self, app: _App, form: Mapping[str, str], hard: bool) -> dict[str, Any]:
        code, redirect_uri = form.get("code"), form.get("redirect_uri")
        if not code or not redirect_uri:
            raise OAuthError("invalid_request")
        found = self._codes.get(code)
        if (
            found is None
            or found.used
            or self._clock() >= found.expires_at
            or found.client_id != app.client_id
            or found.redirect_uri != redirect_uri
        ):
            # UNCONFIRMED: RFC 6749 says a reused code SHOULD also revoke the tokens it bought;
            # Intuit does not document doing so, and the emulator does not.
            raise OAuthError("invalid_grant")
        found.used = True
        chain = self._new_chain(app)
        refresh_token = _new_token()
        self._refresh[refresh_token] = _RefreshToken(chain, self._refresh_expiry(chain))
        return self._token_response(chain, refresh_token, hard)

    def _new_chain(self, app: _App) -> _Chain:
        return _Chain(self.realm_id, app.client_id, self._clock() + self.refresh_token_max_lifetime)

    def _refresh_expiry(self, chain: _Chain) -> float:
        """Rolling (100 days from now) but never past the chain's five-year cap."""
        return min(self._clock() + self.refresh_token_ttl, chain.hard_expires_at)

    def _refresh_grant(self, app: _App, form: Mapping[str, str], hard: bool) -> dict[str, Any]:
        presented = form.get("refresh_token")
        if not presented:
            raise OAuthError("invalid_request")
        found = self._refresh.get(presented)
        if (
            found is None
            or not found.current
            or found.chain.revoked
            or self._clock() >= found.expires_at
            # A refresh token works only with the keys it was issued to: development keys
            # cannot refresh a production grant. UNCONFIRMED: Intuit's exact error here.
            or found.chain.client_id != app.client_id
        ):
            raise OAuthError("invalid_grant")
        if self.rotate_refresh_tokens:
            # Stricter than Intuit on purpose: Intuit hands out a new refresh token value about
            # once every 24 hours (and the previous one keeps working for a while). Rotating on
            # every refresh makes a client that loses the new value fail in tests, not in prod.
            found.current = False
            refresh_token = _new_token()
            self._refresh[refresh_token] = _RefreshToken(
                found.chain, self._refresh_expiry(found.chain)
            )
        else:
            # UNCONFIRMED: Intuit documents the refresh token's 100-day expiry as rolling; the
            # same value is returned and its lifetime starts again.
            refresh_token = presented
            found.expires_at = self._refresh_expiry(found.chain)
        self._refresh_count += 1
        return self._token_response(found.chain, refresh_token, hard)

    def _token_response(
        self, chain: _Chain, refresh_token: str, hard: bool = False
    ) -> dict[str, Any]:
        """Intuit's token response: `x_refresh_token_expires_in` is the refresh token's time
        left (https://developer.intuit.com/app/developer/qbo/docs/develop/authentication-and-authorization/oauth-2.0,
        "Get the access and refresh tokens"); UNCONFIRMED that Intuit caps it at the hard
        expiry as the emulator does. `x_refresh_token_hard_expires_in` (the five-year cap's
        time left) only for a client that asked for it with HARD_EXPIRY_HEADER."""
        now = self._clock()
        access_token = _new_token()
        self._access[access_token] = _AccessToken(chain, now + self.access_token_ttl)
        refresh_left = self._refresh[refresh_token].expires_at - now
        payload: dict[str, Any] = {
            "token_type": "bearer",
            "access_token": access_token,
            "refresh_token": refresh_token,
            "expires_in": max(1, math.ceil(self.access_token_ttl)),
            "x_refresh_token_expires_in": max(0, math.ceil(refresh_left)),
        }
        if hard:
            payload["x_refresh_token_hard_expires_in"] = max(
                0, math.ceil(chain.hard_expires_at - now)
            )
        return payload

    # -- revoke --------------------------------------------------------------------------------

    def revoke(self, headers: Mapping[str, str], body: bytes) -> Reply:
        """Intuit's revoke takes JSON ``{"token": ...}``; RFC 7009 clients send a form."""
        try:
            if "json" in headers.get("content-type", "").lower():
                try:
                    data = json.loads(body or b"{}")
                except ValueError as exc:
                    raise OAuthError("invalid_request") from exc
                if not isinstance(data, dict):
                    raise OAuthError("invalid_request")
                form = {k: str(v) for k, v in data.items() if isinstance(v, str)}
            else:
                form = _form(headers, body)
            self._authenticate_client(headers, form)
            token = form.get("token")
            if not token:
                raise OAuthError("invalid_request")
        except OAuthError as err:
            return json_reply(err.status, {"error": err.error}, NO_STORE)
        with self._lock:
            found = self._refresh.get(token) or self._access.get(token)
            # RFC 7009: an unknown token is not an error (UNCONFIRMED for Intuit).
            if found is not None:
                found.chain.revoked = True
        return json_reply(200, {}, NO_STORE)

    # -- the Accounting API's view ---------------------------------------------------------------

    def authenticate(self, authorization: str | None) -> str:
        """The realm an ``Authorization: Bearer`` header grants, or a 401 AuthenticationFault."""
        scheme, _, token = (authorization or "").strip().partition(" ")
        with self._lock:
            found = self._access.get(token.strip()) if scheme.lower() == "bearer" else None
            if found is None:
                raise errors.authentication("Token invalid")
            if found.chain.revoked:
                raise errors.authentication("Token revoked")
            if self._clock() >= found.expires_at:
                raise errors.authentication("Token expired")
            return found.chain.realm_id

    # -- control ---------------------------------------------------------------------------------

    def issue_tokens(self, client_id: str | None = None) -> dict[str, Any]:
        """A fresh token pair, as if the authorization-code flow had just completed (for the
        development keys, or the app `client_id` names)."""
        with self._lock:
            chain = self._new_chain(self._apps[client_id or self.client_id])
            refresh_token = _new_token()
            self._refresh[refresh_token] = _RefreshToken(chain, self._refresh_expiry(chain))
            return self._token_response(chain, refresh_token, hard=True)

    def expire_access_tokens(self) -> None:
        with self._lock:
            now = self._clock()
            for token in self._access.values():
                token.expires_at = min(token.expires_at, now)

    def revoke_all(self) -> None:
        with self._lock:
            for token in self._refresh.values():
                token.chain.revoked = True
            for access in self._access.values():
                access.chain.revoked = True

    def set_access_token_ttl(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("access token TTL must be >= 0")
        with self._lock:
            self.access_token_ttl = seconds

    def valid_refresh_tokens(self) -> set[str]:
        with self._lock:
            now = self._clock()
            return {
                token
                for token, found in self._refresh.items()
                if found.current and not found.chain.revoked and now < found.expires_at
            }

    def grants(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(grant) for grant in self._grants]

    @property
    def refresh_count(self) -> int:
        with self._lock:
            return self._refresh_count

    def reset(self) -> None:
        with self._lock:
            self._codes.clear()
            self._refresh.clear()
            self._access.clear()
            self._grants.clear()
            self._refresh_count = 0
