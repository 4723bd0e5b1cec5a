"""QuickBooks Online production authorization: https redirect URIs read back from standard input,
grants imported from elsewhere, sandbox vs production companies, and the refresh token's end.

Every flow runs through the CLI (`billbridge connections authorize|import|list`) as a separate
process against the QuickBooks emulator, which holds an app's two sets of keys as Intuit does:
development keys (sandbox; http://localhost allowed) and production keys (https only).
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx
import pytest

from billbridge.activities.oauth import OAuthGrant
from billbridge.activities.providers.base import ConnectionConfig
from billbridge.activities.providers.quickbooks import QuickBooksInvoiceProvider
from billbridge.activities.secrets import SecretBox
from billbridge.activities.store import Store
from billbridge.core.config import Settings
from billbridge.core.connections import ConnectionSettings
from billbridge.emulators.quickbooks import QuickBooksEmulator
from billbridge.emulators.quickbooks.oauth import INVALID_REDIRECT_URI
from billbridge.starter.authorize import _GrantInMemory
from conftest import BILLBRIDGE_CLI, CODEC_TEST_KEY, billbridge, process_env

CONNECTION = "quickbooks"
PRODUCTION_REDIRECT = "https://billbridge.example/quickbooks/callback"
FIVE_YEARS = 5 * 365 * 86400


@pytest.fixture
def qbo() -> Iterator[QuickBooksEmulator]:
    with QuickBooksEmulator(requests_per_minute=None) as emulator:
        yield emulator


@pytest.fixture
def settings(
    settings: Settings, qbo: QuickBooksEmulator, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    monkeypatch.setenv("BILLBRIDGE_CODEC_KEY", CODEC_TEST_KEY)
    return replace(settings, quickbooks_api_base=qbo.base_url)


def production_keys(qbo: QuickBooksEmulator) -> dict[str, str]:
    return {
        "QUICKBOOKS_CLIENT_ID": qbo.production_client_id,
        "QUICKBOOKS_CLIENT_SECRET": qbo.production_client_secret,
    }


def stored_grant(store: Store, connection: str = CONNECTION) -> OAuthGrant | None:
    row = store.get_connection(connection)
    if row is None or row.credentials_ref is None:
        return None
    box = SecretBox.from_settings(Settings.from_env({"BILLBRIDGE_CODEC_KEY": CODEC_TEST_KEY}))
    return OAuthGrant.from_json(box.open(row.credentials_ref, connection))


def authorize_by_paste(
    settings: Settings,
    *args: str,
    env: dict[str, str],
    tamper: Any = None,
) -> subprocess.CompletedProcess[str]:
    """`connections authorize` with an https redirect URI: a client plays the browser (the
    emulator consents and redirects to the app's page, which nothing here serves) and the
    person, pasting the address bar's URL on the CLI's standard input."""
    command = [*BILLBRIDGE_CLI, "connections", "authorize", CONNECTION, "--timeout", "60", *args]
    process = subprocess.Popen(
        command,
        env={**process_env(settings), **env},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stdin is not None
    seen = []
    pasted = ""
    # Up to the prompt, after which the CLI waits for standard input (communicate reads the
    # pipe itself, past what this file object may have buffered).
    for line in iter(process.stdout.readline, ""):
        seen.append(line)
        if line.startswith("http"):
            consent = httpx.get(line.strip(), follow_redirects=False, timeout=30)
            assert consent.status_code == 302, consent.text
            pasted = consent.headers["Location"]
        if "paste" in line:
            break
    assert pasted, "".join(seen)
    if tamper is not None:
        pasted = tamper(pasted)
    out, err = process.communicate(pasted + "\n", timeout=90)
    return subprocess.CompletedProcess(command, process.returncode, "".join(seen) + out, err)


def list_connection(settings: Settings) -> tuple[dict[str, Any], subprocess.CompletedProcess[str]]:
    """`connections list`: the QuickBooks connection's row, and the run."""
    listed = billbridge(settings, "connections", "list")
    assert listed.returncode == 0, listed.stderr
    [row] = [r for r in json.loads(listed.stdout) if r["connection"] == CONNECTION]
    return row, listed


def test_production_keys_redirect_only_to_https_at_the_emulator(qbo: QuickBooksEmulator) -> None:
    """Intuit's authorization page refuses a production app's non-https (or IP) redirect URI
    with an error page; development keys may use http://localhost."""
    authorize_url = f"{qbo.base_url}/connect/oauth2"
    request = {
        "client_id": qbo.production_client_id,
        "response_type": "code",
        "scope": "com.intuit.quickbooks.accounting",
        "state": "s1",
    }
    for refused in ("http://localhost:8765/callback", "https://203.0.113.7/callback"):
        page = httpx.get(authorize_url, params={**request, "redirect_uri": refused})
        assert page.status_code == 400 and "Location" not in page.headers
        assert INVALID_REDIRECT_URI in page.text.replace("&#x27;", "'")
    accepted = httpx.get(authorize_url, params={**request, "redirect_uri": PRODUCTION_REDIRECT})
    assert accepted.status_code == 302
    location = urlsplit(accepted.headers["Location"])
    assert location.netloc == "billbridge.example"
    assert parse_qs(location.query)["state"] == ["s1"]
    development = {**request, "client_id": qbo.client_id, "redirect_uri": "http://localhost:1/cb"}
    assert httpx.get(authorize_url, params=development).status_code == 302


def test_production_authorization_reads_the_redirected_url_from_stdin(
    settings: Settings, qbo: QuickBooksEmulator, store: Store
) -> None:
    done = authorize_by_paste(
        settings,
        "--environment",
        "production",
        "--redirect-uri",
        PRODUCTION_REDIRECT,
        env=production_keys(qbo),
    )
    assert done.returncode == 0, done.stderr
    assert "paste here the full URL" in done.stdout, done.stdout
    assert f"authorized (company {qbo.realm_id}), production environment" in done.stdout
    grant = stored_grant(store)
    assert grant is not None
    assert grant.environment == "production" and grant.company_id == qbo.realm_id
    assert grant.client_id == qbo.production_client_id
    # The token request opted in to the five-year cap, and both expiries were stored.
    assert grant.refresh_expires_at is not None and grant.refresh_hard_expires_at is not None
    assert grant.refresh_expires_at <= grant.refresh_hard_expires_at
    assert grant.refresh_hard_expires_at > time.time() + FIVE_YEARS - 86400
    assert grant.refresh_token in qbo.valid_refresh_tokens()
    listed, _ = list_connection(settings)
    assert listed["environment"] == "production" and listed["reauthorize"] is None
    assert listed["health"] == "credentials accepted"


def test_pasted_url_with_another_state_is_refused(
    settings: Settings, qbo: QuickBooksEmulator, store: Store
) -> None:
    def forge_state(url: str) -> str:
        split = urlsplit(url)
        query = {k: v[0] for k, v in parse_qs(split.query).items()}
        return urlunsplit(split._replace(query=urlencode({**query, "state": "forged"})))

    done = authorize_by_paste(
        settings,
        "--environment",
        "production",
        "--redirect-uri",
        PRODUCTION_REDIRECT,
        env=production_keys(qbo),
        tamper=forge_state,
    )
    assert done.returncode == 1
    assert "state does not match" in done.stderr
    assert stored_grant(store) is None
    assert not any(g["grant_type"] == "authorization_code" for g in qbo.token_grants())


def test_pasted_url_of_another_page_is_refused(
    settings: Settings, qbo: QuickBooksEmulator, store: Store
) -> None:
    done = authorize_by_paste(
        settings,
        "--environment",
        "production",
        "--redirect-uri",
        PRODUCTION_REDIRECT,
        env=production_keys(qbo),
        tamper=lambda url: url.replace("billbridge.example", "elsewhere.example"),
    )
    assert done.returncode == 1
    assert "not the redirect URI" in done.stderr
    assert stored_grant(store) is None


def test_production_without_an_https_redirect_uri_is_refused_before_the_browser(
    settings: Settings, qbo: QuickBooksEmulator, store: Store
) -> None:
    done = billbridge(
        settings,
        "connections",
        "authorize",
        CONNECTION,
        "--environment",
        "production",
        env=production_keys(qbo),
    )
    assert done.returncode == 1
    assert "only to https" in done.stderr and "--redirect-uri" in done.stderr
    assert "Open this URL" not in done.stdout
    assert stored_grant(store) is None


def test_import_verifies_rotates_and_seals_the_grant(
    settings: Settings, qbo: QuickBooksEmulator, store: Store
) -> None:
    """A grant from Intuit's OAuth Playground: its refresh token and realm id."""
    playground = qbo.issue_tokens(qbo.production_client_id)["refresh_token"]
    done = billbridge(
        settings,
        "connections",
        "import",
        CONNECTION,
        "--refresh-token-env",
        "QB_PLAYGROUND_TOKEN",
        "--realm-id",
        qbo.realm_id,
        "--environment",
        "production",
        env={**production_keys(qbo), "QB_PLAYGROUND_TOKEN": playground},
    )
    assert done.returncode == 0, done.stderr
    assert f"imported (company {qbo.realm_id}), production environment" in done.stdout
    grant = stored_grant(store)
    assert grant is not None and grant.environment == "production"
    # Verified by a refresh, which rotated it: the imported value is spent, the stored one live.
    assert grant.refresh_token != playground
    assert playground not in qbo.valid_refresh_tokens()
    assert grant.refresh_token in qbo.valid_refresh_tokens()
    assert grant.refresh_hard_expires_at is not None
    # Sealed like any other grant: it refreshes with the production keys it was stored with.
    qbo.expire_access_tokens()
    listed, _ = list_connection(settings)
    assert listed["health"] == "credentials accepted", listed
    after = stored_grant(store)
    assert after is not None and after.refresh_token != grant.refresh_token
    assert after.refresh_hard_expires_at is not None and after.environment == "production"


def test_import_refuses_a_dead_token_and_another_company(
    settings: Settings, qbo: QuickBooksEmulator, store: Store
) -> None:
    def run(token: str, realm: str) -> subprocess.CompletedProcess[str]:
        """The token pasted on standard input (`--refresh-token-file -`)."""
        return subprocess.run(
            [
                *BILLBRIDGE_CLI,
                "connections",
                "import",
                CONNECTION,
                "--refresh-token-file",
                "-",
                "--realm-id",
                realm,
                "--environment",
                "production",
            ],
            env={**process_env(settings), **production_keys(qbo)},
            input=token + "\n",
            capture_output=True,
            text=True,
            timeout=120,
        )

    dead = run("not-a-refresh-token", qbo.realm_id)
    assert dead.returncode == 1 and "refresh token was refused" in dead.stderr
    # Development keys cannot refresh a production grant, nor the reverse.
    sandbox_token = qbo.issue_tokens()["refresh_token"]
    other_app = run(sandbox_token, qbo.realm_id)
    assert other_app.returncode == 1 and "refused" in other_app.stderr
    wrong_company = run(qbo.issue_tokens(qbo.production_client_id)["refresh_token"], "123")
    assert wrong_company.returncode == 1 and "company 123" in wrong_company.stderr
    assert stored_grant(store) is None
    missing = billbridge(settings, "connections", "import", CONNECTION, "--realm-id", "1")
    assert missing.returncode == 2 and "--refresh-token-env" in missing.stderr


def test_list_warns_when_reauthorization_is_due(settings: Settings, store: Store) -> None:
    """A grant whose five-year cap ends within 30 days (an emulator with a 10-day cap)."""
    with QuickBooksEmulator(requests_per_minute=None, refresh_token_max_lifetime=10 * 86400) as qbo:
        settings = replace(settings, quickbooks_api_base=qbo.base_url)
        token = qbo.issue_tokens()["refresh_token"]
        imported = billbridge(
            settings,
            "connections",
            "import",
            CONNECTION,
            "--refresh-token-env",
            "QB_TOKEN",
            "--realm-id",
            qbo.realm_id,
            env={"QB_TOKEN": token},
        )
        assert imported.returncode == 0, imported.stderr
        assert "sandbox environment" in imported.stdout
        row, listed = list_connection(settings)
    assert row["reauthorize"].startswith("re-authorization due: the refresh token's maximum")
    assert "billbridge connections authorize quickbooks" in row["reauthorize"]
    assert "re-authorization due" in listed.stderr
    grant = stored_grant(store)
    assert grant is not None and grant.refresh_hard_expires_at is not None
    assert grant.refresh_hard_expires_at < time.time() + 11 * 86400


def provider_for(settings: Settings, environment: str) -> QuickBooksInvoiceProvider:
    grant = OAuthGrant("id", "secret", "at", "rt", time.time() + 3600, 3600.0, None, "4620")
    holder = _GrantInMemory(replace(grant, environment=environment))
    config = ConnectionConfig(CONNECTION, None, ConnectionSettings(), True, holder)
    return QuickBooksInvoiceProvider.from_settings(settings, config)


@pytest.mark.parametrize(
    ("configured", "environment", "host", "page"),
    [
        ("https://quickbooks.api.intuit.com", "sandbox", "sandbox-quickbooks", "app.sandbox"),
        ("https://quickbooks.api.intuit.com", "production", "quickbooks", "app"),
        ("https://sandbox-quickbooks.api.intuit.com", "production", "quickbooks", "app"),
        ("https://sandbox-quickbooks.api.intuit.com", "", "sandbox-quickbooks", "app.sandbox"),
        ("https://quickbooks.api.intuit.com", "", "quickbooks", "app"),
    ],
)
def test_api_host_and_invoice_link_follow_the_companys_environment(
    configured: str, environment: str, host: str, page: str
) -> None:
    """Intuit's hosts cannot be reached from a test: the choice itself is checked (a grant
    from before environments were stored follows QUICKBOOKS_API_BASE)."""
    settings = Settings.from_env({"QUICKBOOKS_API_BASE": configured, "TEMPORAL_ADDRESS": "t:1"})
    provider = provider_for(settings, environment)
    assert provider.base_url == f"https://{host}.api.intuit.com"
    assert provider._invoice_url("130") == f"https://{page}.qbo.intuit.com/app/invoice?txnId=130"


def test_a_local_redirect_uri_keeps_the_local_callback(
    settings: Settings, qbo: QuickBooksEmulator, store: Store
) -> None:
    """Development keys, http://localhost: the CLI receives the code itself (no paste)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    redirect = f"http://localhost:{port}/intuit/back"
    command = [*BILLBRIDGE_CLI, "connections", "authorize", CONNECTION, "--redirect-uri", redirect]
    process = subprocess.Popen(
        command,
        env=process_env(settings),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    for line in iter(process.stdout.readline, ""):
        if line.startswith("http"):
            assert parse_qs(urlsplit(line).query)["redirect_uri"] == [redirect]
            consent = httpx.get(line.strip(), follow_redirects=True, timeout=30)
            assert consent.status_code == 200, consent.text
            break
    out, err = process.communicate(timeout=90)
    assert process.returncode == 0, err
    assert "sandbox environment" in out
    grant = stored_grant(store)
    assert grant is not None and grant.environment == "sandbox"


def test_token_responses_carry_the_hard_expiry_only_when_asked() -> None:
    """`x_refresh_token_hard_expires_in` is opt-in (a request header); the rolling expiry never
    reaches past the hard end."""
    cap = 50 * 86400
    with QuickBooksEmulator(requests_per_minute=None, refresh_token_max_lifetime=cap) as qbo:
        token_url = f"{qbo.base_url}/oauth2/v1/tokens/bearer"
        keys = (qbo.client_id, qbo.client_secret)
        form = {"grant_type": "refresh_token", "refresh_token": qbo.issue_tokens()["refresh_token"]}
        plain = httpx.post(token_url, data=form, auth=keys).json()
        assert "x_refresh_token_hard_expires_in" not in plain
        assert 0 < plain["x_refresh_token_expires_in"] <= cap  # not 100 days
        asked = httpx.post(
            token_url,
            data={**form, "refresh_token": plain["refresh_token"]},
            auth=keys,
            headers={"x-include-refresh-token-hard-expires-in": "true"},
        ).json()
        assert 0 < asked["x_refresh_token_hard_expires_in"] <= cap
