"""Google's OAuth 2.0 token endpoint for service accounts, as much as google-auth uses.

A service account key signs a JWT and exchanges it at the key's `token_uri`
(https://oauth2.googleapis.com/token) with `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`
for an access token ({"access_token", "expires_in", "token_type": "Bearer"}); a refused grant is
400 {"error": "invalid_grant", "error_description"} (RFC 6749 §5.2)
(https://developers.google.com/identity/protocols/oauth2/service-account#authorizingrequests;
google-auth's google/oauth2/_client.py `jwt_grant`). A client may also skip the exchange and send
a self-signed JWT as the bearer token (same page, "Addendum: Service account authorization
without OAuth"; google-api-core clients do this with `always_use_jwt_access`).

The emulator holds no keys: it checks the assertion's shape and claims (iss, aud, iat, exp), not
its signature (a simplification: Google verifies it against the account's public keys). An
account can be disabled (`disable`) to see a refused grant.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import threading
from typing import Any
from urllib.parse import parse_qsl

from ..serving import Reply
from .errors import json_reply

JWT_GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
TOKEN_PATH = "/token"
ACCESS_TOKEN_TTL = 3600


def jwt_claims(token: str) -> dict[str, Any] | None:
    """The payload of a JWT (header.payload.signature, base64url); None when it is not one."""
    parts = token.split(".")
    if len(parts) != 3 or not all(parts):
        return None
    try:
        payload = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        claims = json.loads(payload)
    except (binascii.Error, ValueError):
        return None
    return claims if isinstance(claims, dict) else None


class TokenIssuer:
    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._tokens: dict[str, str] = {}  # access token -> service account email
        self._disabled: set[str] = set()
        self.grants: list[dict[str, Any]] = []  # {"iss", "ok", "error"}

    def disable(self, email: str) -> None:
        """Refuse this account's grants and its tokens from now on."""
        with self._lock:
            self._disabled.add(email)
            self._tokens = {t: e for t, e in self._tokens.items() if e != email}

    def reset(self) -> None:
        with self._lock:
            self._tokens.clear()
            self._disabled.clear()
            self.grants.clear()

    def token(self, body: bytes) -> Reply:
        form = dict(parse_qsl(body.decode("utf-8", "replace")))
        if form.get("grant_type") != JWT_GRANT_TYPE:
            return self._refuse("", "unsupported_grant_type", "Invalid grant_type.")
        claims = jwt_claims(form.get("assertion", ""))
        if claims is None or not all(claims.get(k) for k in ("iss", "aud", "iat", "exp")):
            return self._refuse("", "invalid_grant", "Invalid JWT: malformed assertion.")
        email = str(claims["iss"])
        with self._lock:
            if email in self._disabled:
                return self._refuse(email, "invalid_grant", "Invalid grant: account not found")
            token = f"ya29.emulator-{secrets.token_urlsafe(24)}"
            self._tokens[token] = email
            self.grants.append({"iss": email, "ok": True, "error": None})
        return json_reply(
            200,
            {"access_token": token, "expires_in": ACCESS_TOKEN_TTL, "token_type": "Bearer"},
            {"Cache-Control": "no-store"},
        )

    def _refuse(self, email: str, error: str, description: str) -> Reply:
        with self._lock:
            self.grants.append({"iss": email, "ok": False, "error": error})
        return json_reply(400, {"error": error, "error_description": description})

    def valid(self, token: str) -> bool:
        """An access token this endpoint issued, or a self-signed JWT of an enabled account."""
        with self._lock:
            if token in self._tokens:
                return True
            claims = jwt_claims(token)
            return (
                claims is not None
                and bool(claims.get("iss"))
                and (claims["iss"] not in self._disabled)
            )
