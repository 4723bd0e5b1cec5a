"""Authentication as NetSuite does it: OAuth 2.0 client credentials (M2M) and TBA (OAuth 1.0a).

OAuth 2.0 client credentials
  ``POST /services/rest/auth/oauth2/v1/token`` with ``grant_type=client_credentials``,
  ``client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer`` and
  ``client_assertion=<JWT>`` ("POST Request to the Token Endpoint and the Access Token Response",
  https://docs.oracle.com/en/cloud/saas/netsuite/ns-online-help/section_162755359851.html) ->
  ``{"access_token", "expires_in": "3600", "token_type": "Bearer"}``; the access token is valid
  for 60 minutes and there is no refresh token. The JWT ("The Request Token Structure",
  https://docs.oracle.com/en/cloud/saas/netsuite/ns-online-help/section_162790605110.html):
  header ``typ: JWT``, ``alg`` one of PS256, PS384, PS512, ES256, ES384, ES512 (so RS256 is
  refused), ``kid`` = the certificate id of the key uploaded in "OAuth 2.0 Client Credentials
  Setup"; claims ``iss`` = the integration's client id, ``scope`` (restlets, rest_webservices,
  suite_analytics, comma-separated; the documented sample sends a JSON array), ``aud`` = the
  token endpoint URL, ``iat``, and ``exp`` "less than 60 minutes greater than" ``iat``. The
  signature is verified with the uploaded public key (cryptography, not the client's JOSE
  library, so a shared mistake cannot hide).

  UNCONFIRMED: the token endpoint's error answers. The emulator sends RFC 6749 errors
  (``{"error": "invalid_request"}`` for a malformed request, ``invalid_grant`` for a JWT that
  fails a check) with HTTP 400; NetSuite's Login Audit Trail holds the detail, which the emulator
  puts in ``error_description``.

Token-based authentication (OAuth 1.0a)
  ``Authorization: OAuth realm="<account id>", oauth_consumer_key, oauth_token, oauth_nonce,
  oauth_timestamp, oauth_signature_method="HMAC-SHA256", oauth_version="1.0", oauth_signature``
  ("The Authorization Headers",
  https://docs.oracle.com/en/cloud/saas/netsuite/ns-online-help/section_1534941295.html; HMAC-SHA1
  ended in 2023.1). The signature is RFC 5849's (section 3.4: base string of the method, the base
  string URI and the normalized parameters, realm and oauth_signature excluded; HMAC key
  ``enc(consumer secret)&enc(token secret)``), as "The Signature for Web Services and RESTlets"
  (https://docs.oracle.com/en/cloud/saas/netsuite/ns-online-help/section_1534941088.html) builds
  it. The realm must be the account id. UNCONFIRMED: how far the timestamp may be from the clock
  and whether NetSuite refuses a reused nonce (RFC 5849 section 3.3 lets a server do both): the
  window is configurable (300 s by default) and a nonce seen within it is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from . import errors

TOKEN_PATH = "/services/rest/auth/oauth2/v1/token"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
SCOPE = "rest_webservices"
ACCESS_TOKEN_TTL = 3600.0  # "The access token is valid for 60 minutes."
MAX_ASSERTION_LIFETIME = 3600  # exp must be less than 60 minutes after iat
# UNCONFIRMED: the clock skew NetSuite tolerates on iat.
CLOCK_SKEW = 300
HASHES: dict[str, hashes.HashAlgorithm] = {
    "PS256": hashes.SHA256(),
    "PS384": hashes.SHA384(),
    "PS512": hashes.SHA512(),
    "ES256": hashes.SHA256(),
    "ES384": hashes.SHA384(),
    "ES512": hashes.SHA512(),
}


class TokenError(Exception):
    """A refused token request: RFC 6749 error code and description."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status = status

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


def _b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _verify(alg: str, key: Any, signing_input: bytes, signature: bytes) -> bool:
    """RFC 7518: PS* is RSASSA-PSS with MGF1 of the same hash and a salt as long as the hash
    (section 3.5); ES* is ECDSA with the signature as r || s (section 3.4)."""
    digest = HASHES[alg]
    try:
        if alg.startswith("PS"):
            if not isinstance(key, rsa.RSAPublicKey):
                return False
            key.verify(
                signature,
                signing_input,
                padding.PSS(mgf=padding.MGF1(digest), salt_length=digest.digest_size),
                digest,
            )
            return True
        if not isinstance(key, ec.EllipticCurvePublicKey):
            return False
        size = len(signature) // 2
        r = int.from_bytes(signature[:size], "big")
        s = int.from_bytes(signature[size:], "big")
        key.verify(encode_dss_signature(r, s), signing_input, ec.ECDSA(digest))
        return True
    except (InvalidSignature, ValueError):
        return False


@dataclass
class Certificate:
    client_id: str
    public_key: Any
    revoked: bool = False


@dataclass
class TbaToken:
    consumer_key: str
    secret: str
    revoked: bool = False


@dataclass
class IssuedToken:
    client_id: str
    expires_at: float


@dataclass
class AuthServer:
    """The account's integration records, mappings and access tokens (thread-safe)."""

    account_id: str
    access_token_ttl: float = ACCESS_TOKEN_TTL
    tba_window: float = 300.0
    clock: Any = time.time
    certificates: dict[str, Certificate] = field(default_factory=dict)
    consumers: dict[str, str] = field(default_factory=dict)  # consumer key -> secret
    tba_tokens: dict[str, TbaToken] = field(default_factory=dict)
    _issued: dict[str, IssuedToken] = field(default_factory=dict)
    _nonces: dict[str, float] = field(default_factory=dict)
    _grants: list[dict[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- set-up ------------------------------------------------------------------------------

    def register_certificate(self, client_id: str, public_pem: bytes | str) -> str:
        """Map a public key to an integration, as "OAuth 2.0 Client Credentials Setup" does;
        returns the certificate id (the JWT's ``kid``)."""
        data = public_pem.encode() if isinstance(public_pem, str) else public_pem
        key = serialization.load_pem_public_key(data)
        certificate_id = secrets.token_hex(20)
        with self._lock:
            self.certificates[certificate_id] = Certificate(client_id, key)
        return certificate_id

    def revoke_certificate(self, certificate_id: str) -> None:
        with self._lock:
            self.certificates[certificate_id].revoked = True

    def add_tba(self, consumer_key: str, consumer_secret: str, token_id: str, secret: str) -> None:
        with self._lock:
            self.consumers[consumer_key] = consumer_secret
            self.tba_tokens[token_id] = TbaToken(consumer_key, secret)

    def revoke_tba_tokens(self) -> None:
        with self._lock:
            for token in self.tba_tokens.values():
                token.revoked = True

    def expire_access_tokens(self) -> None:
        with self._lock:
            for issued in self._issued.values():
                issued.expires_at = 0.0

    def grants(self) -> list[dict[str, Any]]:
        """Every token endpoint call: ``ok``, ``error``, ``kid``, ``alg``, ``at``."""
        with self._lock:
            return [dict(g) for g in self._grants]

    def reset(self) -> None:
        with self._lock:
            self._issued.clear()
            self._nonces.clear()
            self._grants.clear()

    # -- the token endpoint ----------------------------------------------------------------------

    def token(self, body: bytes, token_urls: set[str]) -> tuple[int, dict[str, Any]]:
        """Answer ``POST .../auth/oauth2/v1/token``; `token_urls`: the values ``aud`` may have."""
        record: dict[str, Any] = {"at": self.clock(), "ok": False, "error": None}
        try:
            form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
            if form.get("grant_type") != "client_credentials":
                raise TokenError("unsupported_grant_type", "grant_type must be client_credentials")
            if form.get("client_assertion_type") != ASSERTION_TYPE:
                raise TokenError(
                    "invalid_request", f"client_assertion_type must be {ASSERTION_TYPE}"
                )
            client_id = self._check_assertion(form.get("client_assertion", ""), token_urls, record)
            token = secrets.token_urlsafe(32)
            with self._lock:
                self._issued[token] = IssuedToken(client_id, self.clock() + self.access_token_ttl)
            record["ok"] = True
            # "expires_in": always 3600 in the documented response (a string there, UNCONFIRMED
            # whether NetSuite sends a string or a number: clients should take either).
            return 200, {
                "access_token": token,
                "expires_in": str(int(self.access_token_ttl)),
                "token_type": "Bearer",
            }
        except TokenError as err:
            record["error"] = err.error + ": " + err.description
            return err.status, err.body()
        finally:
            with self._lock:
                self._grants.append(record)

    def _check_assertion(self, jwt: str, token_urls: set[str], record: dict[str, Any]) -> str:
        parts = jwt.split(".")
        if len(parts) != 3:
            raise TokenError("invalid_request", "client_assertion is not a compact JWS")
        try:
            header = json.loads(_b64decode(parts[0]))
            claims = json.loads(_b64decode(parts[1]))
            signature = _b64decode(parts[2])
        except (ValueError, json.JSONDecodeError) as err:
            raise TokenError("invalid_request", f"client_assertion is malformed: {err}") from err
        if not isinstance(header, dict) or not isinstance(claims, dict):
            raise TokenError("invalid_request", "client_assertion is malformed")
        alg, kid = header.get("alg"), header.get("kid")
        record.update(alg=alg, kid=kid)
        if header.get("typ") != "JWT":
            raise TokenError("invalid_grant", "the JWT header's typ must be JWT")
        if alg not in HASHES:
            # PS256, PS384, PS512, ES256, ES384, ES512 only: RS256 (PKCS#1 v1.5) is refused.
            raise TokenError("invalid_grant", f"unsupported signature algorithm {alg!r}")
        with self._lock:
            certificate = self.certificates.get(str(kid))
        if certificate is None or certificate.revoked:
            raise TokenError("invalid_grant", f"unknown or revoked certificate id (kid) {kid!r}")
        signing_input = f"{parts[0]}.{parts[1]}".encode()
        if not _verify(alg, certificate.public_key, signing_input, signature):
            raise TokenError("invalid_grant", "InvalidSignature: the JWT signature is invalid")
        if claims.get("iss") != certificate.client_id:
            raise TokenError("invalid_grant", "iss is not the client id of the kid's integration")
        scope = claims.get("scope")
        scopes = scope if isinstance(scope, list) else str(scope or "").split(",")
        if SCOPE not in {str(s).strip() for s in scopes}:
            raise TokenError("invalid_scope", f"scope must include {SCOPE}")
        if claims.get("aud") not in token_urls:
            raise TokenError("invalid_grant", "aud is not this account's token endpoint URL")
        iat, exp, now = claims.get("iat"), claims.get("exp"), self.clock()
        if not isinstance(iat, int | float) or not isinstance(exp, int | float):
            raise TokenError("invalid_grant", "iat and exp must be numbers of seconds")
        if exp - iat >= MAX_ASSERTION_LIFETIME:
            raise TokenError("invalid_grant", "exp must be less than 60 minutes after iat")
        if exp <= now:
            raise TokenError("invalid_grant", "the JWT has expired (exp)")
        if iat > now + CLOCK_SKEW:
            raise TokenError("invalid_grant", "iat is in the future")
        return certificate.client_id

    # -- API requests ------------------------------------------------------------------------------

    def authenticate(self, method: str, url: str, authorization: str | None) -> str:
        """The method a request authenticated with ("bearer" or "tba"), else INVALID_LOGIN."""
        if not authorization:
            raise errors.invalid_login()
        scheme, _, credential = authorization.strip().partition(" ")
        if scheme.lower() == "bearer":
            with self._lock:
                issued = self._issued.get(credential.strip())
            if issued is None or issued.expires_at <= self.clock():
                raise errors.invalid_login()
            return "bearer"
        if scheme.lower() == "oauth":
            self._check_tba(method, url, credential)
            return "tba"
        raise errors.invalid_login()

    def _check_tba(self, method: str, url: str, credential: str) -> None:
        params = _parse_oauth_header(credential)
        realm = params.pop("realm", None)
        if realm != self.account_id:
            raise errors.invalid_login()
        if params.get("oauth_signature_method") != "HMAC-SHA256":
            raise errors.invalid_login()  # HMAC-SHA1 ended in 2023.1
        if params.get("oauth_version", "1.0") != "1.0":
            raise errors.invalid_login()
        with self._lock:
            token = self.tba_tokens.get(params.get("oauth_token", ""))
            consumer_secret = self.consumers.get(params.get("oauth_consumer_key", ""))
        if token is None or token.revoked or consumer_secret is None:
            raise errors.invalid_login()
        if token.consumer_key != params.get("oauth_consumer_key"):
            raise errors.invalid_login()
        try:
            timestamp = int(params.get("oauth_timestamp", ""))
        except ValueError as err:
            raise errors.invalid_login() from err
        now = self.clock()
        if abs(now - timestamp) > self.tba_window:
            raise errors.invalid_login()
        signature = params.pop("oauth_signature", "")
        expected = _hmac_sha256(_base_string(method, url, params), consumer_secret, token.secret)
        if not hmac.compare_digest(signature, expected):
            raise errors.invalid_login()
        nonce = f"{params.get('oauth_token')}:{params.get('oauth_nonce', '')}"
        with self._lock:
            for seen, at in list(self._nonces.items()):
                if now - at > self.tba_window:
                    del self._nonces[seen]
            if not params.get("oauth_nonce") or nonce in self._nonces:
                raise errors.invalid_login()
            self._nonces[nonce] = now


def _parse_oauth_header(credential: str) -> dict[str, str]:
    """``k="v", k2="v2"`` -> {k: v} with values percent-decoded (RFC 5849 section 3.5.1)."""
    params: dict[str, str] = {}
    for part in credential.split(","):
        key, sep, value = part.strip().partition("=")
        if sep:
            params[unquote(key.strip())] = unquote(value.strip().strip('"'))
    return params


def _enc(value: str) -> str:
    """RFC 5849 section 3.6 percent-encoding (unreserved: ALPHA, DIGIT, -, ., _, ~)."""
    return quote(value, safe="-._~")


def _base_string(method: str, url: str, oauth_params: Mapping[str, str]) -> str:
    """RFC 5849 section 3.4.1: METHOD & enc(base string URI) & enc(normalized parameters)."""
    parts = urlsplit(url)
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    port = parts.port
    default = {"http": 80, "https": 443}.get(scheme)
    authority = host if port is None or port == default else f"{host}:{port}"
    base_uri = f"{scheme}://{authority}{parts.path or '/'}"
    pairs = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    pairs += [(k, v) for k, v in oauth_params.items() if k != "oauth_signature"]
    normalized = "&".join(f"{k}={v}" for k, v in sorted((_enc(k), _enc(v)) for k, v in pairs))
    return "&".join((method.upper(), _enc(base_uri), _enc(normalized)))


def _hmac_sha256(base: str, consumer_secret: str, token_secret: str) -> str:
    key = f"{_enc(consumer_secret)}&{_enc(token_secret)}".encode()
    return base64.b64encode(hmac.new(key, base.encode(), hashlib.sha256).digest()).decode()
