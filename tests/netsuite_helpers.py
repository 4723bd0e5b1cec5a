"""Shared by the NetSuite tests: signing requests to the emulator the way NetSuite's docs say."""

from __future__ import annotations

import time
from typing import Any

import httpx
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey
from oauthlib.oauth1 import SIGNATURE_HMAC_SHA256, Client

from billbridge.emulators.netsuite import NetSuiteEmulator

TOKEN_PATH = "/services/rest/auth/oauth2/v1/token"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def assertion(
    ns: NetSuiteEmulator,
    credentials: dict[str, str],
    *,
    alg: str | None = None,
    aud: str | None = None,
    iat: int | None = None,
    lifetime: int = 300,
    kid: str | None = None,
    scope: Any = ("rest_webservices",),
) -> str:
    algorithm = alg or credentials["algorithm"]
    importer = ECKey if algorithm.startswith("ES") else RSAKey
    key = importer.import_key(credentials["private_key"])
    issued = int(time.time()) if iat is None else iat
    header = {"typ": "JWT", "alg": algorithm, "kid": kid or credentials["certificate_id"]}
    claims = {
        "iss": credentials["client_id"],
        "scope": list(scope),
        "aud": aud or f"{ns.base_url}{TOKEN_PATH}",
        "iat": issued,
        "exp": issued + lifetime,
    }
    return jwt.encode(header, claims, key, algorithms=[algorithm])


def token_request(ns: NetSuiteEmulator, jwt_text: str) -> httpx.Response:
    return httpx.post(
        f"{ns.base_url}{TOKEN_PATH}",
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": jwt_text,
        },
    )


def bearer(ns: NetSuiteEmulator) -> dict[str, str]:
    response = token_request(ns, assertion(ns, ns.m2m_credentials()))
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def tba_headers(
    ns: NetSuiteEmulator,
    method: str,
    url: str,
    *,
    realm: str | None = None,
    method_name: str = SIGNATURE_HMAC_SHA256,
    consumer_secret: str | None = None,
    timestamp: str | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    credentials = ns.tba_credentials()
    client = Client(
        credentials["consumer_key"],
        client_secret=consumer_secret or credentials["consumer_secret"],
        resource_owner_key=credentials["token_id"],
        resource_owner_secret=credentials["token_secret"],
        signature_method=method_name,
        realm=realm or ns.account_id,
        timestamp=timestamp,
        nonce=nonce,
    )
    _, headers, _ = client.sign(url, method)
    return {"Authorization": headers["Authorization"]}
