"""OAuth 2.0 authorization-code connections: the stored grant and the tokens kept fresh.

The protocol is authlib's (authorize URL, code exchange, refresh); billbridge adds what a worker
fleet needs around it:
- The grant (client, tokens, expiries, the provider's company id) is one sealed credential in
  the store; every rotated refresh token replaces it there, so a restart never loses one.
- Tokens are refreshed before they expire (a margin of a fifth of their lifetime, at most five
  minutes) and once more when the provider refuses an access token early.
- Workers share the grant. A refresh replaces the stored grant only if nobody replaced it
  meanwhile (compare and swap); whoever loses adopts the winner's tokens. A refresh token that
  the provider refuses is first compared with the store, because another worker may already
  have rotated it; only when the store holds the same one is the grant really revoked.
"""

from __future__ import annotations

import json
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any, Protocol

import httpx
from authlib.integrations.base_client import OAuthError

# authlib 1.9 prefers `httpx2` and warns when it falls back to httpx, the HTTP client this project
# standardizes on; the fallback is supported through authlib 1.9.x (pinned in pyproject.toml).
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from authlib.integrations.httpx_client import OAuth2Client

from billbridge.core.errors import ProviderAuthFailed, ProviderUnavailable

MAX_REFRESH_MARGIN = 300.0  # seconds before expiry at which a token is refreshed
TOKEN_TIMEOUT = 30.0
# `connections list` warns this long before a grant must be re-authorized.
REAUTHORIZE_WARNING_SECONDS = 30 * 86400.0


@dataclass(frozen=True)
class OAuthEndpoints:
    authorize_url: str
    token_url: str
    revoke_url: str
    scope: str
    # Headers every token request carries (Intuit: opt in to the refresh token's hard expiry).
    token_headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class OAuthApp:
    """A provider's OAuth endpoints and the client (app) billbridge authorizes as."""

    endpoints: OAuthEndpoints
    client_id: str | None
    client_secret: str | None
    # Extra parameter of the authorization callback naming the company (QuickBooks: realmId).
    company_parameter: str = ""
    # The provider's environments (QuickBooks: sandbox companies under development keys,
    # real ones under production keys); a grant records the one it was made in.
    environments: tuple[str, ...] = ()
    default_environment: str = ""
    # Environments whose app may redirect to http://localhost; the others only to https.
    local_redirect_environments: tuple[str, ...] = ()


@dataclass(frozen=True)
class OAuthGrant:
    """What an authorized connection holds (sealed in the store, never in Temporal history)."""

    client_id: str
    client_secret: str
    access_token: str
    refresh_token: str
    expires_at: float  # unix time the access token expires
    expires_in: float  # its lifetime when issued
    refresh_expires_at: float | None = None
    company_id: str = ""  # QuickBooks: the realmId the callback named
    # The refresh token's absolute end, which no refresh extends (Intuit's five-year cap,
    # `x_refresh_token_hard_expires_in`); None when the provider did not say.
    refresh_hard_expires_at: float | None = None
    environment: str = ""  # QuickBooks: "sandbox" or "production"; "" for older grants

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> OAuthGrant:
        try:
            return cls(**json.loads(text))
        except (ValueError, TypeError) as err:
            raise ProviderAuthFailed(
                "the stored credential is not an OAuth grant; authorize the connection again "
                "(`billbridge connections authorize ...`)"
            ) from err

    def with_token(self, token: dict[str, Any], now: float) -> OAuthGrant:
        """This grant after a token response (a response may omit an unchanged refresh token).

        Intuit's token response carries the refresh token's remaining (rolling) lifetime in
        `x_refresh_token_expires_in` and, when asked with the `x-include-refresh-token-hard-
        expires-in: true` header, its absolute end in `x_refresh_token_hard_expires_in`
        (https://github.com/intuit/oauth-jsclient CHANGELOG 4.2.4, src/access-token/Token.js;
        https://developer.intuit.com/app/developer/qbo/docs/develop/authentication-and-authorization/faq).
        """
        expires_in = float(token.get("expires_in") or 3600)
        refresh_in = token.get("x_refresh_token_expires_in")
        hard_in = token.get("x_refresh_token_hard_expires_in")
        return replace(
            self,
            access_token=str(token["access_token"]),
            refresh_token=str(token.get("refresh_token") or self.refresh_token),
            expires_at=now + expires_in,
            expires_in=expires_in,
            refresh_expires_at=now + float(refresh_in) if refresh_in else self.refresh_expires_at,
            refresh_hard_expires_at=now + float(hard_in)
            if hard_in
            else self.refresh_hard_expires_at,
        )

    def needs_refresh(self, now: float) -> bool:
        margin = min(MAX_REFRESH_MARGIN, self.expires_in / 5)
        return now >= self.expires_at - margin

    def reauthorize_warning(
        self, now: float, within: float = REAUTHORIZE_WARNING_SECONDS
    ) -> str | None:
        """Why the grant must be authorized again soon (or already), else None.

        The rolling expiry moves on with every refresh (any export or `connections list` makes
        one when the access token is due), so only its value as stored counts; the hard expiry
        never moves: past it only a new authorization gives a working grant.
        """
        ends = [
            (moment, rank, label)
            for moment, rank, label in (
                # At equal moments the hard end is the reason: a refresh cannot move it.
                (self.refresh_hard_expires_at, 0, "the refresh token's maximum lifetime ends"),
                (
                    self.refresh_expires_at,
                    1,
                    "the refresh token expires unless a refresh renews it before",
                ),
            )
            if moment is not None
        ]
        if not ends:
            return None
        moment, _, label = min(ends)
        if moment <= now:
            return f"re-authorization due: {label} ({_iso(moment)}, passed)"
        if moment - now <= within:
            return f"re-authorization due: {label} ({_iso(moment)})"
        return None

    def summary(self, now: float | None = None) -> dict[str, Any]:
        """What `connections list` may show (no token)."""
        return {
            "company_id": self.company_id,
            "environment": self.environment or None,
            "access_token_expires_at": _iso(self.expires_at),
            "refresh_token_expires_at": _iso(self.refresh_expires_at),
            "refresh_token_hard_expires_at": _iso(self.refresh_hard_expires_at),
            "reauthorize": self.reauthorize_warning(time.time() if now is None else now),
        }


def _iso(moment: float | None) -> str | None:
    if moment is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(moment))


class GrantStore(Protocol):
    """The stored credential of one connection (see activities/export.py)."""

    def read(self) -> tuple[str | None, str | None]:
        """(version, opened credential); the version changes whenever the credential does."""

    def replace(self, expected_version: str | None, credential: str) -> str | None:
        """Store `credential` if the stored version is still `expected_version`; the new
        version, or None when another writer replaced it first."""


def oauth_client(endpoints: OAuthEndpoints, client_id: str, client_secret: str) -> OAuth2Client:
    return OAuth2Client(
        client_id=client_id,
        client_secret=client_secret,
        scope=endpoints.scope,
        token_endpoint_auth_method="client_secret_basic",
        timeout=TOKEN_TIMEOUT,
        headers=dict(endpoints.token_headers),
    )


def exchange_code(
    endpoints: OAuthEndpoints,
    client_id: str,
    client_secret: str,
    *,
    code: str,
    redirect_uri: str,
    company_id: str = "",
    environment: str = "",
    now: Callable[[], float] = time.time,
) -> OAuthGrant:
    """The grant an authorization code buys (raises ProviderAuthFailed if refused)."""
    with oauth_client(endpoints, client_id, client_secret) as client:
        try:
            token = client.fetch_token(
                endpoints.token_url,
                grant_type="authorization_code",
                code=code,
                redirect_uri=redirect_uri,
            )
        except OAuthError as err:
            raise ProviderAuthFailed(f"the authorization code was refused: {err.error}") from err
        except httpx.HTTPError as err:
            raise ProviderUnavailable(f"token endpoint unreachable: {err}") from err
    empty = OAuthGrant(
        client_id, client_secret, "", "", 0.0, 0.0, company_id=company_id, environment=environment
    )
    return empty.with_token(dict(token), now())


def import_refresh_token(
    endpoints: OAuthEndpoints,
    client_id: str,
    client_secret: str,
    *,
    refresh_token: str,
    company_id: str,
    environment: str = "",
    now: Callable[[], float] = time.time,
) -> OAuthGrant:
    """The grant a refresh token obtained elsewhere (Intuit's OAuth Playground) stands for.

    The token is proven by refreshing it. The provider may rotate it in doing so (Intuit: "always
    use the latest refresh_token value from the most recent response",
    https://developer.intuit.com/app/developer/qbo/docs/develop/authentication-and-authorization/faq),
    so the returned grant holds the new one: the imported value may be dead from now on.
    """
    with oauth_client(endpoints, client_id, client_secret) as client:
        try:
            token = client.refresh_token(endpoints.token_url, refresh_token=refresh_token)
        except OAuthError as err:
            raise ProviderAuthFailed(
                f"the refresh token was refused ({err.error}): it is expired, revoked, already "
                "rotated away, or was issued to another app or environment than "
                f"client {client_id}"
            ) from err
        except httpx.HTTPError as err:
            raise ProviderUnavailable(f"token endpoint unreachable: {err}") from err
    empty = OAuthGrant(
        client_id,
        client_secret,
        "",
        refresh_token,
        0.0,
        0.0,
        company_id=company_id,
        environment=environment,
    )
    return empty.with_token(dict(token), now())


def revoke_grant(endpoints: OAuthEndpoints, grant: OAuthGrant) -> None:
    """Revoke the grant at the provider (its refresh token and every access token from it).

    Intuit's revoke endpoint takes JSON `{"token": ...}` with the client's Basic credentials,
    not RFC 7009's form, so this is one plain request rather than authlib's revoke_token.
    """
    try:
        response = httpx.post(
            endpoints.revoke_url,
            json={"token": grant.refresh_token},
            auth=(grant.client_id, grant.client_secret),
            headers={"Accept": "application/json"},
            timeout=TOKEN_TIMEOUT,
        )
    except httpx.HTTPError as err:
        raise ProviderUnavailable(f"revoke endpoint unreachable: {err}") from err
    if response.status_code >= 500:
        raise ProviderUnavailable(f"revoke endpoint answered {response.status_code}")
    if response.status_code >= 400:
        raise ProviderAuthFailed(f"the provider refused the revocation: {response.text[:200]}")


_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def _connection_lock(key: str) -> threading.Lock:
    """One lock per connection and process: keepers rebuilt after a change share it, so two
    threads never spend the same refresh token."""
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(key, threading.Lock())


class TokenKeeper:
    """Hands out a live access token for one connection; refreshes and stores rotated grants."""

    def __init__(
        self,
        endpoints: OAuthEndpoints,
        grants: GrantStore,
        *,
        lock_key: str,
        reauthorize_hint: str,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.endpoints = endpoints
        self._grants = grants
        self._hint = reauthorize_hint
        self._now = now
        self._lock = _connection_lock(lock_key)
        self._version: str | None = None
        self._grant: OAuthGrant | None = None
        self.refreshes = 0

    @property
    def grant(self) -> OAuthGrant:
        with self._lock:
            return self._current()

    def access_token(self) -> str:
        with self._lock:
            grant = self._current()
            if grant.needs_refresh(self._now()):
                grant = self._refresh(grant)
            return grant.access_token

    def after_rejection(self, rejected_access_token: str) -> str:
        """The provider refused this access token before its expiry: refresh (once) and retry."""
        with self._lock:
            grant = self._current()
            if grant.access_token == rejected_access_token:
                # _refresh adopts a fresh grant another keeper stored meanwhile, if there is one.
                grant = self._refresh(grant)
            return grant.access_token

    # -- with self._lock held ------------------------------------------------------------------

    def _current(self) -> OAuthGrant:
        if self._grant is None:
            self._adopt_stored()
        assert self._grant is not None
        return self._grant

    def _adopt_stored(self) -> None:
        version, credential = self._grants.read()
        if credential is None:
            raise ProviderAuthFailed(f"the connection is not authorized; {self._hint}")
        self._version, self._grant = version, OAuthGrant.from_json(credential)

    def _refresh(self, grant: OAuthGrant) -> OAuthGrant:
        # Another keeper (a thread with an older provider, another worker) may have refreshed
        # already: its stored grant is used if it is still fresh.
        version, credential = self._grants.read()
        if version != self._version and credential is not None:
            self._version, self._grant = version, OAuthGrant.from_json(credential)
            if not self._grant.needs_refresh(self._now()) and (
                self._grant.access_token != grant.access_token
            ):
                return self._grant
            grant = self._grant
        with oauth_client(self.endpoints, grant.client_id, grant.client_secret) as client:
            try:
                token = client.refresh_token(
                    self.endpoints.token_url, refresh_token=grant.refresh_token
                )
            except OAuthError as err:
                if err.error in ("invalid_grant", "invalid_client", "unauthorized_client"):
                    return self._refused(grant, str(err.error))
                raise ProviderUnavailable(f"token refresh failed: {err.error}") from err
            except httpx.HTTPStatusError as err:  # 5xx: the token endpoint is down, not us
                raise ProviderUnavailable(f"token endpoint answered {err}") from err
            except httpx.HTTPError as err:
                raise ProviderUnavailable(f"token endpoint unreachable: {err}") from err
            except ValueError as err:  # a body that is not a token response
                raise ProviderUnavailable(f"token endpoint answered nonsense: {err}") from err
        refreshed = grant.with_token(dict(token), self._now())
        self.refreshes += 1
        # The provider may have invalidated the old refresh token already: the new grant is
        # stored before anything else happens, unless another worker stored a newer one.
        version = self._grants.replace(self._version, refreshed.to_json())
        if version is not None:
            self._version, self._grant = version, refreshed
        else:
            self._adopt_stored()
        return self._current()

    def _refused(self, grant: OAuthGrant, error: str) -> OAuthGrant:
        self._adopt_stored()
        stored = self._current()
        if stored.refresh_token != grant.refresh_token:
            return stored  # another worker rotated it meanwhile: its grant is the live one
        raise ProviderAuthFailed(
            f"the provider refused the refresh token ({error}: revoked, expired or already "
            f"rotated away); {self._hint}"
        )
