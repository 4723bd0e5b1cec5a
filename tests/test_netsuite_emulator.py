"""The NetSuite emulator on its own, spoken to over HTTP as NetSuite's docs describe the wire:
the token endpoint's JWT checks, TBA signatures, records (create, upsert by external id, read,
delete, sublists), SuiteQL, error bodies, the concurrency limit and injected faults."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from netsuite_helpers import assertion, bearer, tba_headers, token_request
from oauthlib.oauth1 import SIGNATURE_HMAC_SHA1

from billbridge.core.providers import load, provider_entry
from billbridge.emulators.netsuite import AccountSettings, Fault, NetSuiteEmulator

RECORD = "/services/rest/record/v1"


@pytest.fixture(scope="module")
def ns() -> Iterator[NetSuiteEmulator]:
    with NetSuiteEmulator(concurrency_limit=None) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def m2m(ns: NetSuiteEmulator) -> dict[str, str]:
    return ns.m2m_credentials()


@pytest.fixture(scope="module")
def auth(ns: NetSuiteEmulator) -> dict[str, str]:
    return bearer(ns)


def invoice_body(customer: str, item: str, amount: str = "10.00", **extra: Any) -> dict[str, Any]:
    return {
        "entity": {"id": customer},
        "tranDate": "2025-01-01",
        "item": {
            "items": [{"item": {"id": item}, "quantity": 1, "rate": amount, "amount": amount}]
        },
        **extra,
    }


# -- OAuth 2.0 client credentials ---------------------------------------------------------------


def test_token_endpoint_takes_a_ps256_assertion_and_the_token_opens_the_api(
    ns: NetSuiteEmulator, m2m: dict[str, str]
) -> None:
    answer = token_request(ns, assertion(ns, m2m))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["token_type"] == "Bearer" and int(body["expires_in"]) == 3600
    api = httpx.get(
        f"{ns.base_url}{RECORD}/currency/1",
        headers={"Authorization": f"Bearer {body['access_token']}"},
    )
    assert api.status_code == 200 and api.json()["symbol"] == "USD"
    es = ns.m2m_credentials("ES256")
    assert token_request(ns, assertion(ns, es)).status_code == 200


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"alg": "RS256"}, "unsupported signature algorithm"),
        ({"aud": "https://elsewhere.test/services/rest/auth/oauth2/v1/token"}, "aud"),
        ({"lifetime": 3600}, "less than 60 minutes"),
        ({"iat": int(time.time()) - 4000, "lifetime": 600}, "expired"),
        ({"kid": "not-a-certificate"}, "certificate id"),
        ({"scope": ("restlets",)}, "rest_webservices"),
    ],
)
def test_token_endpoint_refuses_what_the_docs_rule_out(
    ns: NetSuiteEmulator, m2m: dict[str, str], change: dict[str, Any], error: str
) -> None:
    answer = token_request(ns, assertion(ns, m2m, **change))
    assert answer.status_code == 400
    assert error in answer.json()["error_description"]


def test_a_signature_by_another_key_is_refused(ns: NetSuiteEmulator, m2m: dict[str, str]) -> None:
    other = ns.m2m_credentials()
    forged = assertion(ns, {**other, "certificate_id": m2m["certificate_id"]})
    answer = token_request(ns, forged)
    assert answer.status_code == 400 and "InvalidSignature" in answer.json()["error_description"]
    [logged] = [r for r in ns.requests() if r.path.endswith("/token")][-1:]
    assert logged.body["client_assertion"].endswith("…")  # never logged in full


def test_expired_access_token_is_invalid_login(ns: NetSuiteEmulator) -> None:
    headers = bearer(ns)
    ns.expire_access_tokens()
    answer = httpx.get(f"{ns.base_url}{RECORD}/currency/1", headers=headers)
    assert answer.status_code == 401
    assert answer.json()["o:errorDetails"][0]["o:errorCode"] == "INVALID_LOGIN"


# -- token-based authentication ------------------------------------------------------------------


def test_tba_signature_realm_nonce_and_method_are_checked(ns: NetSuiteEmulator) -> None:
    url = f"{ns.base_url}{RECORD}/currency/1?expandSubResources=true"
    signed = tba_headers(ns, "GET", url, nonce="nonce-1")
    assert httpx.get(url, headers=signed).status_code == 200
    assert httpx.get(url, headers=signed).status_code == 401  # the same nonce again
    for headers in (
        tba_headers(ns, "GET", url, realm="7654321"),
        tba_headers(ns, "GET", url, method_name=SIGNATURE_HMAC_SHA1),
        tba_headers(ns, "GET", url, consumer_secret="wrong"),
        tba_headers(ns, "GET", url, timestamp=str(int(time.time()) - 3600)),
        tba_headers(ns, "POST", url),  # signed for another method
    ):
        refused = httpx.get(url, headers=headers)
        assert refused.status_code == 401, headers
        assert refused.json()["o:errorDetails"][0]["o:errorCode"] == "INVALID_LOGIN"


# -- records --------------------------------------------------------------------------------------


def test_post_answers_204_with_location_and_get_reads_by_id_and_external_id(
    ns: NetSuiteEmulator, auth: dict[str, str]
) -> None:
    created = httpx.post(
        f"{ns.base_url}{RECORD}/customer",
        json={"companyName": "Acme", "subsidiary": {"id": "1"}, "externalId": "cust-a"},
        headers=auth,
    )
    assert created.status_code == 204 and created.content == b""
    customer_id = created.headers["Location"].rsplit("/", 1)[-1]
    by_id = httpx.get(f"{ns.base_url}{RECORD}/customer/{customer_id}", headers=auth).json()
    by_eid = httpx.get(f"{ns.base_url}{RECORD}/customer/eid:cust-a", headers=auth).json()
    assert by_id == by_eid and by_id["companyName"] == "Acme"
    missing = httpx.get(f"{ns.base_url}{RECORD}/customer/eid:nobody", headers=auth)
    assert missing.status_code == 404 and missing.json()["status"] == 404


def test_upsert_by_external_id_creates_once_and_replace_keeps_the_lines_single(
    ns: NetSuiteEmulator, auth: dict[str, str]
) -> None:
    customer = ns.create_customer("Upsert Co")
    item = ns.create_item("Upsert item")
    url = f"{ns.base_url}{RECORD}/invoice/eid:inv-upsert"
    for _ in range(2):
        put = httpx.put(
            url, params={"replace": "item"}, json=invoice_body(customer, item), headers=auth
        )
        assert put.status_code == 204
    invoice = ns.invoice("inv-upsert")
    assert invoice is not None and len(invoice["item"]["items"]) == 1 and invoice["total"] == 10
    assert len([i for i in ns.invoices() if i["externalId"] == "inv-upsert"]) == 1
    # Without replace=item, the lines of an update are appended ("Updating a Sublist").
    httpx.put(url, json=invoice_body(customer, item), headers=auth)
    appended = ns.invoice("inv-upsert")
    assert appended is not None and len(appended["item"]["items"]) == 2 and appended["total"] == 20
    collapsed = httpx.get(url, headers=auth).json()
    assert "items" not in collapsed["item"]  # sublists come as links unless expanded
    assert (
        httpx.delete(f"{ns.base_url}{RECORD}/invoice/{appended['id']}", headers=auth).status_code
        == 204
    )
    assert httpx.get(url, headers=auth).status_code == 404


def test_invalid_item_reference_is_the_documented_error(
    ns: NetSuiteEmulator, auth: dict[str, str]
) -> None:
    customer = ns.create_customer("Bad Item Co")
    answer = httpx.put(
        f"{ns.base_url}{RECORD}/invoice/eid:inv-bad-item",
        json=invoice_body(customer, "9999"),
        headers=auth,
    )
    assert answer.status_code == 400
    body = answer.json()
    assert set(body) == {"type", "title", "status", "o:errorDetails"}
    [detail] = body["o:errorDetails"]
    assert detail["o:errorCode"] == "INVALID_CONTENT"
    assert detail["o:errorPath"] == "item.items[0].item"
    assert "Invalid Field Value 9999" in detail["detail"]


def test_external_ids_allow_letters_digits_underscore_and_hyphen_only(
    ns: NetSuiteEmulator, auth: dict[str, str]
) -> None:
    customer = ns.create_customer("Eid Co")
    item = ns.create_item("Eid item")
    answer = httpx.put(
        f"{ns.base_url}{RECORD}/invoice/eid:inv.1", json=invoice_body(customer, item), headers=auth
    )
    assert answer.status_code == 400


def test_suiteql_selects_filters_and_pages(ns: NetSuiteEmulator, auth: dict[str, str]) -> None:
    ns.add_currency("CHF", 2, inactive=True)
    url = f"{ns.base_url}/services/rest/query/v1/suiteql"
    query = (
        "SELECT id, symbol, currencyprecision, isinactive FROM currency "
        "WHERE symbol IN ('JPY', 'CHF')"
    )
    answer = httpx.post(url, json={"q": query}, headers={**auth, "Prefer": "transient"})
    assert answer.status_code == 200, answer.text
    rows = {row["symbol"]: row for row in answer.json()["items"]}
    assert rows["JPY"]["currencyprecision"] == "0" and rows["CHF"]["isinactive"] == "T"
    page = httpx.post(
        url, params={"limit": 2, "offset": 0}, json={"q": "SELECT id FROM currency"}, headers=auth
    ).json()
    assert page["count"] == 2 and page["hasMore"] and page["totalResults"] >= 5
    for bad in ("DELETE FROM currency", "SELECT", "SELECT id FROM", "SELECT id FROM nothing"):
        refused = httpx.post(url, json={"q": bad}, headers=auth)
        assert refused.status_code == 400, bad


# -- limits, faults, serving ----------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 401])
def test_concurrency_limit_answers_as_configured(status: int) -> None:
    with NetSuiteEmulator(concurrency_limit=2, over_limit_status=status) as ns:
        headers = bearer(ns)
        ns.add_fault(Fault(kind="delay", seconds=0.5, count=None, path_prefix=f"{RECORD}/currency"))
        with ThreadPoolExecutor(4) as pool:
            answers = list(
                pool.map(
                    lambda _: (
                        httpx.get(f"{ns.base_url}{RECORD}/currency/1", headers=headers).status_code
                    ),
                    range(4),
                )
            )
        assert sorted(answers) == sorted([200, 200, status, status])
        stats = ns.concurrency_stats()
        assert stats.peak == 2 and stats.refused == 2
        refused = [r for r in ns.requests() if r.over_limit]
        assert {r.error_code for r in refused} == {
            "INVALID_LOGIN" if status == 401 else "CONCURRENCY_LIMIT_EXCEEDED"
        }


def test_injected_faults_answer_in_netsuite_shape_or_drop(
    ns: NetSuiteEmulator, auth: dict[str, str]
) -> None:
    ns.add_fault(Fault(kind="status", status=503, path_prefix=f"{RECORD}/currency"))
    answer = httpx.get(f"{ns.base_url}{RECORD}/currency/1", headers=auth)
    assert answer.status_code == 503 and answer.json()["o:errorDetails"][0]["o:errorCode"]
    ns.add_fault(Fault(kind="drop", path_prefix=f"{RECORD}/currency"))
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{ns.base_url}{RECORD}/currency/1", headers=auth)
    assert httpx.get(f"{ns.base_url}{RECORD}/currency/1", headers=auth).status_code == 200


def test_registry_entry_builds_the_emulator_and_main_serves_it() -> None:
    entry = provider_entry("netsuite")
    assert entry.emulator_port == 12114 and "{account}" in entry.real_url
    with load(entry.emulator)(port=0) as emulator:
        assert isinstance(emulator, NetSuiteEmulator)
        assert httpx.get(f"{emulator.base_url}{RECORD}/currency/1").status_code == 401
    process = subprocess.Popen(
        [sys.executable, "-m", "billbridge.emulators.netsuite", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert httpx.post(f"{url}/_emulator/m2m/credentials").json()["auth"] == "m2m"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_invoice_totals_follow_the_account() -> None:
    with NetSuiteEmulator(settings=AccountSettings(tax_rate=None)) as ns:
        headers = bearer(ns)
        customer = ns.create_customer("Yen Co")
        item = ns.create_item("Yen item")
        body = invoice_body(customer, item, "10.40", currency={"id": "5"})  # JPY: no decimals
        assert (
            httpx.put(
                f"{ns.base_url}{RECORD}/invoice/eid:yen", json=body, headers=headers
            ).status_code
            == 204
        )
        invoice = ns.invoice("yen")
        assert invoice is not None and invoice["total"] == 10  # rounded to the currency
        ns.configure(round_amounts=False)
        refused = httpx.put(f"{ns.base_url}{RECORD}/invoice/eid:yen2", json=body, headers=headers)
        assert refused.json()["o:errorDetails"][0]["o:errorPath"] == "item.items[0].amount"
        ns.configure(tax_rate=10)
        assert (
            httpx.put(
                f"{ns.base_url}{RECORD}/invoice/eid:taxed",
                json=invoice_body(customer, item),
                headers=headers,
            ).status_code
            == 204
        )
        taxed = ns.invoice("taxed")
        assert taxed is not None and taxed["taxTotal"] == 1 and taxed["total"] == 11
