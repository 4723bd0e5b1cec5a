"""Microsoft Entra ID, the slice a confidential client needs: OpenID discovery and the v2.0
token endpoint's client-credentials grant, with the tokens it issued kept for the API's check.

Sources:
- Client credentials grant (request and the success body `token_type`, `expires_in`,
  `ext_expires_in`, `access_token`):
  https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow
- Error body (`error`, `error_description` "AADSTSnnn: ...\\r\\nTrace ID: ...\\r\\nCorrelation
  ID: ...\\r\\nTimestamp: ...", `error_codes`, `timestamp`, `trace_id`, `correlation_id`,
  `error_uri`): https://learn.microsoft.com/entra/identity-platform/reference-error-codes
- AADSTS7000215 "Invalid client secret provided. Ensure the secret being sent in the request is
  the client secret value, not the client secret ID, for a secret added to app '...'."
  (error `invalid_client`); AADSTS700016 application not found in the directory
  (`unauthorized_client`); AADSTS500011 resource principal not found (`invalid_resource`).
  The HTTP status of invalid_client, 401, is UNCONFIRMED at Microsoft's pages (observed
  behaviour; MSAL reads the body whatever the status).
- What MSAL asks first: with instance discovery off (azure-identity
  `disable_instance_discovery=True`), `GET {authority}/{tenant}/v2.0/.well-known/openid-
  configuration`, from which it reads `authorization_endpoint` and `token_endpoint` (and
  `issuer`): msal/authority.py, Authority.__init__ and tenant_discovery.
- The marketplace API's resource (application) id, 20e940b3-4c77-4b0b-9a53-9e16a1b010a7, and
  the client-credentials request for it:
  https://learn.microsoft.com/partner-center/marketplace/partner-center-portal/pc-saas-registration
"""

from __future__ import annotations

import secrets
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

MARKETPLACE_RESOURCE_ID = "20e940b3-4c77-4b0b-9a53-9e16a1b010a7"
DEFAULT_TOKEN_LIFETIME = timedelta(seconds=3599)  # what Entra's example answers


@dataclass(frozen=True)
class IssuedToken:
    tenant_id: str
    client_id: str
    audience: str
    expires_at: datetime


@dataclass(frozen=True)
class TokenAnswer:
    status: int
    body: dict[str, Any]


class EntraId:
    """Registered apps per tenant, and the access tokens issued to them."""

    def __init__(self, now: Callable[[], datetime], token_lifetime: timedelta) -> None:
        self._now = now
        self._lock = threading.Lock()
        self._apps: dict[tuple[str, str], str] = {}  # (tenant, client id) -> secret
        self._tokens: dict[str, IssuedToken] = {}
        self.token_lifetime = token_lifetime

    def register_app(self, tenant_id: str, client_id: str, client_secret: str) -> None:
        with self._lock:
            self._apps[(tenant_id.lower(), client_id.lower())] = client_secret

    def openid_configuration(self, base: str, tenant: str) -> dict[str, Any]:
        """The discovery document MSAL reads (only the fields it uses, plus `issuer`)."""
        root = f"{base}/{tenant}"
        return {
            "token_endpoint": f"{root}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": [
                "client_secret_post",
                "private_key_jwt",
                "client_secret_basic",
            ],
            "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
            "issuer": f"{root}/v2.0",
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "tenant_region_scope": "NA",
        }

    def token(self, tenant: str, body: bytes) -> TokenAnswer:
        """POST /{tenant}/oauth2/v2.0/token with a form body."""
        form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        if form.get("grant_type") != "client_credentials":
            return self._error(
                400,
                "unsupported_grant_type",
                70003,
                "The app requested an unsupported grant type "
                f"'{form.get('grant_type', '')}'. This emulator serves client_credentials.",
            )
        client_id = form.get("client_id", "")
        with self._lock:
            secret = self._apps.get((tenant.lower(), client_id.lower()))
        if secret is None:
            return self._error(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory "
                f"'{tenant}'.",
            )
        if not secrets.compare_digest(form.get("client_secret", ""), secret):
            return self._error(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request "
                "is the client secret value, not the client secret ID, for a secret added to "
                f"app '{client_id}'.",
            )
        # v2.0 asks for "{resource}/.default" (scope), v1.0 for "resource"; one resource per
        # token. MSAL may add reserved scopes (openid, profile, offline_access): ignored.
        scopes = [s for s in form.get("scope", "").split() if s.endswith("/.default")]
        if len(scopes) != 1:
            return self._error(
                400,
                "invalid_scope",
                1002012,
                "The provided value for scope is not valid. Client credential flows must have "
                "a scope value with /.default suffixed to the resource identifier.",
            )
        audience = scopes[0].removesuffix("/.default")
        token = "eyJ0eXAiOiJKV1Qi." + secrets.token_urlsafe(32)
        lifetime = self.token_lifetime
        with self._lock:
            self._tokens[token] = IssuedToken(
                tenant.lower(), client_id.lower(), audience, self._now() + lifetime
            )
        seconds = int(lifetime.total_seconds())
        return TokenAnswer(
            200,
            {
                "token_type": "Bearer",
                "expires_in": seconds,
                "ext_expires_in": seconds,
                "access_token": token,
            },
        )

    def lookup(self, token: str) -> IssuedToken | None:
        """The token as issued, if this emulator issued it (expired ones included)."""
        with self._lock:
            return self._tokens.get(token)

    def expire_tokens(self) -> None:
        """Every token issued so far expires now."""
        now = self._now()
        with self._lock:
            self._tokens = {
                key: IssuedToken(t.tenant_id, t.client_id, t.audience, now - timedelta(seconds=1))
                for key, t in self._tokens.items()
            }

    def reset_tokens(self) -> None:
        with self._lock:
            self._tokens.clear()

    def _error(self, status: int, error: str, code: int, text: str) -> TokenAnswer:
        now = self._now()
        trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
        stamp = now.strftime("%Y-%m-%d %H:%M:%SZ")
        return TokenAnswer(
            status,
            {
                "error": error,
                "error_description": (
                    f"AADSTS{code}: {text}\r\nTrace ID: {trace}\r\nCorrelation ID: "
                    f"{correlation}\r\nTimestamp: {stamp}"
                ),
                "error_codes": [code],
                "timestamp": stamp,
                "trace_id": trace,
                "correlation_id": correlation,
                "error_uri": f"https://login.microsoftonline.com/error?code={code}",
            },
        )
