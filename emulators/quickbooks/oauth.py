"""Intuit's OAuth 2.0 endpoints: authorize (auto-consent), token and revoke.

Real Intuit: authorize at appcenter.intuit.com/connect/oauth2, token at
oauth.platform.intuit.com/oauth2/v1/tokens/bearer, revoke at
developer.api.intuit.com/v2/oauth2/tokens/revoke. The emulator serves all three on its own base
URL (``/connect/oauth2``, ``/oauth2/v1/tokens/bearer``, ``/oauth2/v1/tokens/revoke``).

Every authorization (one code exchange and the refreshes that follow it) is a *chain*: revoking
any token of a chain, or the user disconnecting the app, revokes all of its tokens.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import html
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


@dataclass
class _Chain:
    realm_id: str
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
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
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
        if query.get("client_id") != self.client_id:
            return _html_error("Invalid client_id: this app is not known.")
        redirect_uri = query.get("redirect_uri") or ""
        split = urlsplit(redirect_uri)
        # UNCONFIRMED: Intuit only accepts redirect URIs registered for the app (https, or
        # http://localhost in development); the emulator has no registry and takes any absolute
        # http(s) URI without a fragment.
        if split.scheme not in ("http", "https") or not split.netloc or split.fragment:
            return _html_error("Missing or invalid redirect_uri.")
        state = query.get("state")
        echo = {"state": state} if state is not None else {}
        if query.get("response_type") != "code":
            return _redirect(redirect_uri, {"error": "unsupported_response_type", **echo})
        if ACCOUNTING_SCOPE not in (query.get("scope") or "").split():
            return _redirect(redirect_uri, {"error": "invalid_scope", **echo})
        code = _new_token()
        with self._lock:
            expires_at = self._clock() + AUTHORIZATION_CODE_TTL
            self._codes[code] = _Code(self.client_id, redirect_uri, expires_at)
        # Intuit adds the company the user picked as realmId to the callback.
        return _redirect(redirect_uri, {"code": code, **echo, "realmId": self.realm_id})

    # -- token ---------------------------------------------------------------------------------

    def _authenticate_client(self, headers: Mapping[str, str], form: Mapping[str, str]) -> None:
        """client_secret_basic (what Intuit documents) or client_secret_post."""
        scheme, _, credential = headers.get("authorization", "").strip().partition(" ")
        if scheme.lower() == "basic":
            try:
                text = base64.b64decode(credential.strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError) as exc:
                raise OAuthError("invalid_client", 401) from exc
            client_id, _, client_secret = text.partition(":")
            if not self._client_matches(client_id, client_secret):
                # RFC 6749 section 2.3.1 form-encodes both before base64; most clients
                # (authlib included) do not. Accept either spelling.
                client_id, client_secret = unquote_plus(client_id), unquote_plus(client_secret)
        else:
            client_id, client_secret = form.get("client_id", ""), form.get("client_secret", "")
        if not self._client_matches(client_id, client_secret):
            raise OAuthError("invalid_client", 401)

    def _client_matches(self, client_id: str, client_secret: str) -> bool:
        # Bytes, because compare_digest refuses non-ASCII str (a hostile header must not 500).
        return hmac.compare_digest(
            client_id.encode(), self.client_id.encode()
        ) and hmac.compare_digest(client_secret.encode(), self.client_secret.encode())

    def token(self, headers: Mapping[str, str], body: bytes) -> Reply:
        grant_type: str | None = None
        try:
            form = _form(headers, body)
            grant_type = form.get("grant_type") or None
            self._authenticate_client(headers, form)
            with self._lock:
                if grant_type == "authorization_code":
                    payload = self._exchange_code(form)
                elif grant_type == "refresh_token":
                    payload = self._refresh_grant(form)
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

    def _exchange_code(self, form: Mapping[str, str]) -> dict[str, Any]:
        code, redirect_uri = form.get("code"), form.get("redirect_uri")
        if not code or not redirect_uri:
            raise OAuthError("invalid_request")
        found = self._codes.get(code)
        if (
            found is None
            or found.used
            or self._clock() >= found.expires_at
            or found.client_id != self.client_id
            or found.redirect_uri != redirect_uri
        ):
            # UNCONFIRMED: RFC 6749 says a reused code SHOULD also revoke the tokens it bought;
            # Intuit does not document doing so, and the emulator does not.
            raise OAuthError("invalid_grant")
        found.used = True
        chain = _Chain(self.realm_id)
        refresh_token = _new_token()
        self._refresh[refresh_token] = _RefreshToken(chain, self._clock() + self.refresh_token_ttl)
        return self._token_response(chain, refresh_token)

    def _refresh_grant(self, form: Mapping[str, str]) -> dict[str, Any]:
        presented = form.get("refresh_token")
        if not presented:
            raise OAuthError("invalid_request")
        found = self._refresh.get(presented)
        if (
            found is None
            or not found.current
            or found.chain.revoked
            or self._clock() >= found.expires_at
        ):
            raise OAuthError("invalid_grant")
        if self.rotate_refresh_tokens:
            # Stricter than Intuit on purpose: Intuit hands out a new refresh token value about
            # once every 24 hours (and the previous one keeps working for a while). Rotating on
            # every refresh makes a client that loses the new value fail in tests, not in prod.
            found.current = False
            refresh_token = _new_token()
            self._refresh[refresh_token] = _RefreshToken(
                found.chain, self._clock() + self.refresh_token_ttl
            )
        else:
            # UNCONFIRMED: Intuit documents the refresh token's 100-day expiry as rolling; the
            # same value is returned and its lifetime starts again.
            refresh_token = presented
            found.expires_at = self._clock() + self.refresh_token_ttl
        self._refresh_count += 1
        return self._token_response(found.chain, refresh_token)

    def _token_response(self, chain: _Chain, refresh_token: str) -> dict[str, Any]:
        now = self._clock()
        access_token = _new_token()
        self._access[access_token] = _AccessToken(chain, now + self.access_token_ttl)
        refresh_left = self._refresh[refresh_token].expires_at - now
        return {
            "token_type": "bearer",
            "access_token": access_token,
            "refresh_token": refresh_token,
            "expires_in": max(1, math.ceil(self.access_token_ttl)),
            "x_refresh_token_expires_in": max(0, math.ceil(refresh_left)),
        }

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

    def issue_tokens(self) -> dict[str, Any]:
        """A fresh token pair, as if the authorization-code flow had just completed."""
        with self._lock:
            chain = _Chain(self.realm_id)
            refresh_token = _new_token()
            self._refresh[refresh_token] = _RefreshToken(
                chain, self._clock() + self.refresh_token_ttl
            )
            return self._token_response(chain, refresh_token)

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
