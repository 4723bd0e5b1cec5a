"""NetSuite auth from the sealed connection credential: OAuth 2.0 client credentials (a PS256 JWT
signed by joserfc, the token cached until shortly before it runs out) and TBA (oauthlib,
HMAC-SHA256, realm = account id), checked by `connections add` / `list`, and the 401 rules."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest

from billbridge.activities.providers.base import ConnectionConfig
from billbridge.activities.providers.netsuite import NetSuiteInvoiceProvider, configured_api_base
from billbridge.activities.providers.netsuite_auth import M2MAuth, NetSuiteCredentials
from billbridge.activities.providers.netsuite_http import OVERLOAD_PAUSE
from billbridge.core.config import Settings
from billbridge.core.connections import ConnectionSettings
from billbridge.core.errors import ProviderAuthFailed
from billbridge.emulators.netsuite import Fault, NetSuiteEmulator
from conftest import billbridge


@pytest.fixture
def ns() -> Iterator[NetSuiteEmulator]:
    with NetSuiteEmulator(concurrency_limit=None) as emulator:
        yield emulator


def provider(
    ns: NetSuiteEmulator, credentials: dict[str, str], connection: str = "netsuite"
) -> tuple[NetSuiteInvoiceProvider, list[float]]:
    """A provider on the emulator, and the pauses its client took (recorded, not slept)."""
    settings = Settings(api_bases={"netsuite": ns.base_url})
    config = ConnectionConfig(connection, json.dumps(credentials), ConnectionSettings())
    built = NetSuiteInvoiceProvider.from_settings(settings, config)
    pauses: list[float] = []
    built.client.sleep = pauses.append
    return built, pauses


def _segment(text: str) -> dict[str, object]:
    decoded: dict[str, object] = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    return decoded


def test_the_assertion_is_a_ps256_jwt_with_the_certificate_as_kid(ns: NetSuiteEmulator) -> None:
    credentials = ns.m2m_credentials()
    built, _ = provider(ns, credentials)
    auth = built.client.auth
    assert isinstance(auth, M2MAuth)
    header, claims, _ = auth.assertion(1_700_000_000).split(".")
    assert _segment(header) == {"typ": "JWT", "alg": "PS256", "kid": credentials["certificate_id"]}
    assert _segment(claims) == {
        "iss": credentials["client_id"],
        "scope": ["rest_webservices"],
        "aud": f"{ns.base_url}/services/rest/auth/oauth2/v1/token",
        "iat": 1_700_000_000,
        "exp": 1_700_000_300,
    }


def test_credentials_are_refused_clearly_and_without_their_secrets() -> None:
    secret = "-----BEGIN PRIVATE KEY-----\nsecret-material\n-----END PRIVATE KEY-----"
    cases = {
        "not json": "not a JSON object",
        json.dumps({"auth": "password", "account_id": "1"}): "'m2m' or 'tba'",
        json.dumps(
            {"auth": "tba", "account_id": "1", "consumer_key": "k"}
        ): "lacks consumer_secret",
        json.dumps(
            {
                "auth": "m2m",
                "account_id": "1",
                "client_id": "c",
                "certificate_id": "k",
                "private_key": secret,
                "algorithm": "RS256",
            }
        ): "RS256 is no longer accepted",
    }
    for text, expected in cases.items():
        with pytest.raises(ProviderAuthFailed) as caught:
            NetSuiteCredentials.from_json(text)
        assert expected in str(caught.value) and "secret-material" not in str(caught.value)
    bad_key = json.dumps(
        {
            "auth": "m2m",
            "account_id": "1",
            "client_id": "c",
            "certificate_id": "k",
            "private_key": secret,
        }
    )
    with pytest.raises(ProviderAuthFailed) as caught:
        NetSuiteInvoiceProvider.from_settings(
            Settings(), ConnectionConfig("netsuite", bad_key, ConnectionSettings())
        )
    assert "not a PEM RSA private key" in str(caught.value) and "secret-material" not in str(
        caught.value
    )


def test_the_real_base_is_the_accounts_host() -> None:
    production = Settings(temporal_address="temporal:7233")  # no emulators: the real provider
    assert configured_api_base(production, "1234567_SB1") == (
        "https://1234567-sb1.suitetalk.api.netsuite.com"
    )
    assert (
        configured_api_base(production, "1234567") == "https://1234567.suitetalk.api.netsuite.com"
    )
    assert configured_api_base(Settings(), "1234567").endswith(":12114")  # the local emulator


def test_the_access_token_is_cached_per_connection_until_shortly_before_it_expires() -> None:
    # Tokens live 301 s here: the cache replaces them 300 s before they run out, so after one
    # second a new one is bought.
    with NetSuiteEmulator(concurrency_limit=None, access_token_ttl=301) as ns:
        credentials = ns.m2m_credentials()
        first, _ = provider(ns, credentials)
        second, _ = provider(ns, credentials)  # a worker rebuilds providers; the cache stays
        for built in (first, second, first):
            built.check_credentials()
        assert len(ns.token_grants()) == 1
        time.sleep(1.1)
        first.check_credentials()
        assert len(ns.token_grants()) == 2
        other, _ = provider(ns, credentials, connection="netsuite_eu")
        other.check_credentials()
        assert len(ns.token_grants()) == 3  # per connection


def test_a_refused_bearer_token_is_renewed_once(ns: NetSuiteEmulator) -> None:
    built, pauses = provider(ns, ns.m2m_credentials())
    built.check_credentials()
    ns.expire_access_tokens()  # NetSuite dropped the token early
    built.check_credentials()
    assert pauses == [OVERLOAD_PAUSE]  # a 401 right after a success: one delayed retry first
    assert [g["ok"] for g in ns.token_grants()] == [True, True]


def test_a_revoked_certificate_is_auth_needing_attention(ns: NetSuiteEmulator) -> None:
    credentials = ns.m2m_credentials()
    built, _ = provider(ns, credentials)
    ns.revoke_certificate(credentials["certificate_id"])
    with pytest.raises(ProviderAuthFailed) as caught:
        built.check_credentials()
    assert "Client Credentials Setup" in str(caught.value)


def test_tba_signs_every_request_and_a_persistent_401_needs_attention(ns: NetSuiteEmulator) -> None:
    built, pauses = provider(ns, ns.tba_credentials())
    built.check_credentials()
    built.check_credentials()
    assert {r.auth for r in ns.requests()} == {"OAuth"}
    assert not ns.token_grants()
    ns.revoke_tba_tokens()
    with pytest.raises(ProviderAuthFailed):
        built.check_credentials()
    assert pauses == [OVERLOAD_PAUSE]  # one delayed retry, then it is auth
    statuses = [r.status for r in ns.requests()]
    assert statuses[-2:] == [401, 401]


def test_a_401_right_after_successes_is_retried_once(ns: NetSuiteEmulator) -> None:
    built, pauses = provider(ns, ns.tba_credentials())
    built.check_credentials()
    # NetSuite answers one request with INVALID_LOGIN under load, as reported in the field.
    ns.add_fault(Fault(kind="status", status=401, path_prefix="/services/rest/query/"))
    built.check_credentials()
    assert pauses == [OVERLOAD_PAUSE]
    with NetSuiteEmulator(concurrency_limit=None) as other:
        fresh, fresh_pauses = provider(other, other.tba_credentials())
        other.add_fault(Fault(kind="status", status=401, path_prefix="/services/rest/query/"))
        with pytest.raises(ProviderAuthFailed):  # no success before it: auth at once
            fresh.check_credentials()
        assert fresh_pauses == []


def test_connections_add_and_list_verify_both_methods(
    settings: Settings, ns: NetSuiteEmulator
) -> None:
    settings = replace(settings, api_bases={**settings.api_bases, "netsuite": ns.base_url})
    env = {
        "NETSUITE_API_BASE": ns.base_url,
        "NS_M2M": json.dumps(ns.m2m_credentials()),
        "NS_TBA": json.dumps(ns.tba_credentials()),
        "NS_BAD": json.dumps({**ns.tba_credentials(), "token_secret": "wrong"}),
    }
    added = billbridge(
        settings, "connections", "add", "netsuite", "--api-key-env", "NS_M2M", env=env
    )
    assert added.returncode == 0, added.stderr
    tba = billbridge(
        settings,
        "connections",
        "add",
        "netsuite",
        "--id",
        "netsuite_tba",
        "--api-key-env",
        "NS_TBA",
        env=env,
    )
    assert tba.returncode == 0, tba.stderr
    refused = billbridge(
        settings,
        "connections",
        "add",
        "netsuite",
        "--id",
        "netsuite_bad",
        "--api-key-env",
        "NS_BAD",
        env=env,
    )
    assert refused.returncode == 1 and "credentials refused" in refused.stderr
    assert "wrong" not in refused.stderr
    listed = billbridge(settings, "connections", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    report = {c["connection"]: c for c in json.loads(listed.stdout)}
    assert report["netsuite"]["health"] == "credentials accepted"
    assert report["netsuite_tba"]["health"] == "credentials accepted"
    assert "netsuite_bad" not in report
    assert report["netsuite"]["settings"]["netsuite_concurrency_limit"] == 5
    assert len(ns.token_grants()) >= 1
