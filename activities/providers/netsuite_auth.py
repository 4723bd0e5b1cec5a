"""NetSuite credentials and the two ways of signing requests with them.

A NetSuite connection's credential (sealed in the store like an API key: `billbridge connections
add netsuite --api-key-file netsuite.json`) is a JSON object naming the account and one method:

    {"account_id": "1234567_SB1", "auth": "m2m", "client_id": "...", "certificate_id": "...",
     "private_key": "-----BEGIN PRIVATE KEY-----...", "algorithm": "PS256"}
    {"account_id": "1234567", "auth": "tba", "consumer_key": "...", "consumer_secret": "...",
     "token_id": "...", "token_secret": "..."}

m2m: OAuth 2.0 client credentials, Oracle's preferred method. A JWT assertion signed with the
certificate's private key (joserfc), header ``{"typ": "JWT", "alg": "PS256", "kid": <certificate
id>}``, claims ``iss`` (client id), ``scope`` (``["rest_webservices"]``), ``aud`` (the token
endpoint URL), ``iat`` and ``exp`` ("The Request Token Structure",
https://docs.oracle.com/en/cloud/saas/netsuite/ns-online-help/section_162790605110.html: PS256,
PS384, PS512, ES256, ES384 or ES512; exp less than 60 minutes after iat), is posted to
``/services/rest/auth/oauth2/v1/token`` ("POST Request to the Token Endpoint and the Access Token
Response", section_162755359851.html). The access token lives 60 minutes and there is no refresh
token: it is cached per connection (and process) until REFRESH_MARGIN before it runs out, then a
new assertion buys the next one.

tba: token-based authentication, OAuth 1.0a with HMAC-SHA256 and ``realm`` = the account id
("The Authorization Headers", section_1534941295.html; HMAC-SHA1 ended in 2023.1; no new TBA
integrations from 2027.1), signed by oauthlib. Each request has its own nonce and timestamp.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, RSAKey
from oauthlib.oauth1 import SIGNATURE_HMAC_SHA256, SIGNATURE_TYPE_AUTH_HEADER, Client

from billbridge.activities.providers import deadline
from billbridge.core.errors import (
    ProviderAuthFailed,
    ProviderRateLimited,
    ProviderUnavailable,
    retry_after,
)

M2M, TBA = "m2m", "tba"
TOKEN_PATH = "/services/rest/auth/oauth2/v1/token"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
SCOPE = ["rest_webservices"]
# Algorithms NetSuite takes for the assertion; RS256 (PKCS#1 v1.5) is no longer accepted.
ALGORITHMS = ("PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
ASSERTION_LIFETIME = 300  # seconds; NetSuite allows up to (less than) 3600
# A cached access token is replaced this long before it runs out (it lives 60 minutes).
REFRESH_MARGIN = 300.0
DEFAULT_TOKEN_TTL = 3600.0
_DEFAULT_WAIT = timedelta(seconds=5)  # a 429 from the token endpoint without Retry-After
HOW_TO_ADD = (
    "`billbridge connections add netsuite --api-key-file netsuite.json` with the account id and "
    "either an M2M certificate (auth: m2m) or a TBA token (auth: tba)"
)


def account_host(account_id: str) -> str:
    """The account id as NetSuite's hosts spell it: ``1234567_SB1`` -> ``1234567-sb1``."""
    return account_id.strip().lower().replace("_", "-")


def default_api_base(account_id: str) -> str:
    """``https://<account>.suitetalk.api.netsuite.com``: the REST host of the account (copy
    it from Setup > Company > Company URLs to check)."""
    return f"https://{account_host(account_id)}.suitetalk.api.netsuite.com"


@dataclass(frozen=True)
class NetSuiteCredentials:
    account_id: str
    method: str  # M2M or TBA
    client_id: str = ""
    certificate_id: str = ""
    private_key: str = ""
    algorithm: str = "PS256"
    consumer_key: str = ""
    consumer_secret: str = ""
    token_id: str = ""
    token_secret: str = ""

    @classmethod
    def from_json(cls, text: str) -> NetSuiteCredentials:
        """Parse the sealed credential; the error names what is wrong, never a secret."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ProviderAuthFailed(
                f"the NetSuite credential is not a JSON object ({err.msg}); {HOW_TO_ADD}"
            ) from None
        if not isinstance(data, dict):
            raise ProviderAuthFailed(f"the NetSuite credential is not a JSON object; {HOW_TO_ADD}")
        method = str(data.get("auth") or "").lower()
        fields = {
            M2M: ("account_id", "client_id", "certificate_id", "private_key"),
            TBA: ("account_id", "consumer_key", "consumer_secret", "token_id", "token_secret"),
        }.get(method)
        if fields is None:
            raise ProviderAuthFailed(
                f"the NetSuite credential's auth must be {M2M!r} or {TBA!r}; {HOW_TO_ADD}"
            )
        missing = [name for name in fields if not str(data.get(name) or "").strip()]
        if missing:
            raise ProviderAuthFailed(
                f"the NetSuite {method} credential lacks {', '.join(missing)}; {HOW_TO_ADD}"
            )
        algorithm = str(data.get("algorithm") or "PS256").upper()
        if method == M2M and algorithm not in ALGORITHMS:
            raise ProviderAuthFailed(
                f"NetSuite signs client-credentials assertions with {', '.join(ALGORITHMS)} only, "
                f"not {algorithm} (RS256 is no longer accepted)"
            )
        return cls(
            account_id=str(data["account_id"]).strip(),
            method=method,
            client_id=str(data.get("client_id") or ""),
            certificate_id=str(data.get("certificate_id") or ""),
            private_key=str(data.get("private_key") or ""),
            algorithm=algorithm,
            consumer_key=str(data.get("consumer_key") or ""),
            consumer_secret=str(data.get("consumer_secret") or ""),
            token_id=str(data.get("token_id") or ""),
            token_secret=str(data.get("token_secret") or ""),
        )

    def fingerprint(self) -> str:
        """Tells credentials apart in caches without keeping them there."""
        text = json.dumps(self.__dict__, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


class TokenCache:
    """Access tokens per connection and credential, shared by the providers of one process (a
    worker builds a new provider whenever the connection's row changes)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, tuple[str, float]] = {}
        self._key_locks: dict[str, threading.Lock] = {}

    def key_lock(self, key: str) -> threading.Lock:
        with self._lock:
            return self._key_locks.setdefault(key, threading.Lock())

    def get(self, key: str, now: float) -> str | None:
        with self._lock:
            cached = self._tokens.get(key)
        if cached is None or cached[1] - REFRESH_MARGIN <= now:
            return None
        return cached[0]

    def put(self, key: str, token: str, expires_at: float) -> None:
        with self._lock:
            self._tokens[key] = (token, expires_at)

    def forget(self, key: str, token: str) -> None:
        """Drop `token` (refused by NetSuite) unless another thread already replaced it."""
        with self._lock:
            if self._tokens.get(key, ("",))[0] == token:
                del self._tokens[key]


TOKENS = TokenCache()


class M2MAuth:
    """OAuth 2.0 client credentials: a cached bearer token, bought with a signed assertion."""

    method = M2M

    def __init__(
        self,
        credentials: NetSuiteCredentials,
        api_base: str,
        http: httpx.Client,
        cache_key: str,
        *,
        cache: TokenCache = TOKENS,
        clock: Any = time.time,
    ) -> None:
        self.credentials = credentials
        self.token_url = f"{api_base}{TOKEN_PATH}"
        self.http = http
        self.cache_key = f"{cache_key} {credentials.fingerprint()}"
        self.cache = cache
        self.clock = clock
        self.token_requests = 0
        try:
            importer = ECKey if credentials.algorithm.startswith("ES") else RSAKey
            self._key = importer.import_key(credentials.private_key)
        except (JoseError, ValueError, TypeError) as err:
            raise ProviderAuthFailed(
                f"the NetSuite M2M credential's private_key is not a PEM "
                f"{'EC' if credentials.algorithm.startswith('ES') else 'RSA'} private key "
                f"({type(err).__name__}); {HOW_TO_ADD}"
            ) from None

    def assertion(self, now: int) -> str:
        header = {
            "typ": "JWT",
            "alg": self.credentials.algorithm,
            "kid": self.credentials.certificate_id,
        }
        claims = {
            "iss": self.credentials.client_id,
            "scope": SCOPE,
            "aud": self.token_url,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME,
        }
        return jwt.encode(header, claims, self._key, algorithms=[self.credentials.algorithm])

    def token(self) -> str:
        """The cached access token, or a new one (one token request at a time per connection)."""
        now = self.clock()
        cached = self.cache.get(self.cache_key, now)
        if cached is not None:
            return cached
        with self.cache.key_lock(self.cache_key):
            cached = self.cache.get(self.cache_key, self.clock())
            if cached is not None:
                return cached
            token, expires_at = self._request_token()
            self.cache.put(self.cache_key, token, expires_at)
            return token

    def _request_token(self) -> tuple[str, float]:
        now = self.clock()
        form = {
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": self.assertion(int(now)),
        }
        self.token_requests += 1
        try:
            response = self.http.post(
                self.token_url,
                data=form,
                headers={"Accept": "application/json"},
                timeout=deadline.timeout(),
            )
        except httpx.HTTPError as err:
            raise ProviderUnavailable(
                f"NetSuite token endpoint: {type(err).__name__}: {err}"
            ) from err
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code == 429:
            raise ProviderRateLimited(
                "NetSuite token endpoint: 429",
                retry_after(response.headers.get("Retry-After"), _DEFAULT_WAIT),
            )
        if response.status_code >= 500:
            raise ProviderUnavailable(f"NetSuite token endpoint: HTTP {response.status_code}")
        if (
            response.status_code != 200
            or not isinstance(body, dict)
            or not body.get("access_token")
        ):
            said = body if isinstance(body, dict) else {}
            reason = ": ".join(str(said[k]) for k in ("error", "error_description") if said.get(k))
            raise ProviderAuthFailed(
                f"NetSuite refused the client-credentials assertion (HTTP {response.status_code}"
                f"{', ' + reason if reason else ''}); check the integration's client id, the "
                "certificate id and key mapped in OAuth 2.0 Client Credentials Setup and the "
                "account id (see the Login Audit Trail), then add the connection again"
            )
        try:
            ttl = float(body.get("expires_in") or DEFAULT_TOKEN_TTL)
        except (TypeError, ValueError):
            ttl = DEFAULT_TOKEN_TTL
        return str(body["access_token"]), now + ttl

    def headers(self, method: str, url: str) -> tuple[dict[str, str], str]:
        """(headers, the credential they carry: a token to forget after a 401)."""
        token = self.token()
        return {"Authorization": f"Bearer {token}"}, token

    def forget(self, token: str) -> None:
        self.cache.forget(self.cache_key, token)


class TBAAuth:
    """Token-based authentication: every request signed with HMAC-SHA256 by oauthlib."""

    method = TBA

    def __init__(self, credentials: NetSuiteCredentials) -> None:
        self.credentials = credentials
        self._client = Client(
            credentials.consumer_key,
            client_secret=credentials.consumer_secret,
            resource_owner_key=credentials.token_id,
            resource_owner_secret=credentials.token_secret,
            signature_method=SIGNATURE_HMAC_SHA256,
            signature_type=SIGNATURE_TYPE_AUTH_HEADER,
            realm=credentials.account_id,
        )

    def headers(self, method: str, url: str) -> tuple[dict[str, str], str]:
        # The JSON body is not part of an OAuth 1.0a signature (RFC 5849 section 3.4.1.3.1:
        # only form-encoded bodies are), so it is not passed: oauthlib would otherwise add an
        # oauth_body_hash parameter NetSuite's documented header does not have.
        _, headers, _ = self._client.sign(url, method)
        return {"Authorization": headers["Authorization"]}, ""

    def forget(self, token: str) -> None:
        return None


def build_auth(
    credentials: NetSuiteCredentials, api_base: str, http: httpx.Client, cache_key: str
) -> M2MAuth | TBAAuth:
    if credentials.method == M2M:
        return M2MAuth(credentials, api_base, http, cache_key)
    return TBAAuth(credentials)
