"""The QuickBooks emulator, driven over HTTP with authlib (OAuth 2.0) and httpx (Accounting API)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from authlib.integrations.base_client import OAuthError
from authlib.integrations.httpx_client import OAuth2Client

from billbridge.emulators.quickbooks import Fault, QuickBooksEmulator

SCOPE = "com.intuit.quickbooks.accounting"
REDIRECT_URI = "http://localhost:8765/callback"


@pytest.fixture
def qbo() -> Iterator[QuickBooksEmulator]:
    with QuickBooksEmulator(requests_per_minute=None) as emulator:
        yield emulator


def oauth_client(qbo: QuickBooksEmulator, secret: str | None = None) -> OAuth2Client:
    return OAuth2Client(
        client_id=qbo.client_id,
        client_secret=qbo.client_secret if secret is None else secret,
        scope=SCOPE,
        redirect_uri=REDIRECT_URI,
        token_endpoint_auth_method="client_secret_basic",
    )


def token_url(qbo: QuickBooksEmulator) -> str:
    return f"{qbo.base_url}/oauth2/v1/tokens/bearer"


def authorize(qbo: QuickBooksEmulator, client: OAuth2Client) -> tuple[str, dict[str, list[str]]]:
    """Run the browser leg: (the callback URL, its parsed query)."""
    url, state = client.create_authorization_url(f"{qbo.base_url}/connect/oauth2")
    response = httpx.get(url, follow_redirects=False)
    assert response.status_code == 302
    location = response.headers["Location"]
    assert location.startswith(REDIRECT_URI + "?")
    query = parse_qs(urlsplit(location).query)
    assert query["state"] == [state]
    client.state = state  # so fetch_token checks the callback's state
    return location, query


def connect(qbo: QuickBooksEmulator) -> dict[str, Any]:
    """The full authorization-code flow; the token response."""
    with oauth_client(qbo) as client:
        callback, _ = authorize(qbo, client)
        return dict(client.fetch_token(token_url(qbo), authorization_response=callback))


def refresh(qbo: QuickBooksEmulator, refresh_token: str) -> dict[str, Any]:
    with oauth_client(qbo) as client:
        return dict(client.refresh_token(token_url(qbo), refresh_token=refresh_token))


class Api:
    """A thin QuickBooks Accounting API client (what an exporter would write with httpx)."""

    def __init__(self, qbo: QuickBooksEmulator, access_token: str, realm: str | None = None):
        self.base = f"{qbo.base_url}/v3/company/{realm or qbo.realm_id}"
        self.http = httpx.Client(
            headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"}
        )

    def get(self, path: str, **params: str) -> httpx.Response:
        return self.http.get(f"{self.base}/{path}", params={"minorversion": "75", **params})

    def post(self, path: str, body: Any, **params: str) -> httpx.Response:
        # Amounts are floats whose shortest repr is the exact decimal (12.5, 0.1), so the JSON
        # text carries exact decimals, as a careful client sends them.
        return self.http.post(
            f"{self.base}/{path}", params={"minorversion": "75", **params}, json=body
        )

    def query(self, sql: str) -> dict[str, Any]:
        response = self.get("query", query=sql)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json(parse_float=Decimal)["QueryResponse"]
        return body


def fault(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert "time" in body
    error: dict[str, Any] = body["Fault"]["Error"][0]
    error["type"] = body["Fault"]["type"]
    return error


@pytest.fixture
def api(qbo: QuickBooksEmulator) -> Iterator[Api]:
    client = Api(qbo, connect(qbo)["access_token"])
    yield client
    client.http.close()


def sales_line(
    amount: float, item: str, qty: float | None = None, unit: float | None = None
) -> dict[str, Any]:
    detail: dict[str, Any] = {"ItemRef": {"value": item}}
    if qty is not None:
        detail["Qty"] = qty
    if unit is not None:
        detail["UnitPrice"] = unit
    return {"DetailType": "SalesItemLineDetail", "Amount": amount, "SalesItemLineDetail": detail}


# ----------------------------------------------------------------------------- OAuth 2.0


def test_authorization_code_flow_then_company_info(qbo: QuickBooksEmulator) -> None:
    with oauth_client(qbo) as client:
        callback, query = authorize(qbo, client)
        assert query["realmId"] == [qbo.realm_id] and query["code"][0]
        token = client.fetch_token(token_url(qbo), authorization_response=callback)
    assert token["token_type"] == "bearer" and token["expires_in"] == 3600
    assert token["x_refresh_token_expires_in"] == 8726400
    assert len(token["access_token"]) >= 40 and len(token["refresh_token"]) >= 40
    assert qbo.valid_refresh_tokens() == {token["refresh_token"]}
    assert [(g["grant_type"], g["ok"]) for g in qbo.token_grants()] == [
        ("authorization_code", True)
    ]
    info = Api(qbo, token["access_token"]).get(f"companyinfo/{qbo.realm_id}")
    assert info.status_code == 200
    assert info.json()["CompanyInfo"]["CompanyName"] == "billbridge QuickBooks emulator"
    assert info.json()["CompanyInfo"]["Id"] == qbo.realm_id


def test_authorize_refusals(qbo: QuickBooksEmulator) -> None:
    base = f"{qbo.base_url}/connect/oauth2"
    good = {
        "client_id": qbo.client_id,
        "response_type": "code",
        "scope": SCOPE,
        "redirect_uri": REDIRECT_URI,
        "state": "s1",
    }
    unknown = httpx.get(base, params={**good, "client_id": "nope"})
    assert unknown.status_code == 400 and "Location" not in unknown.headers
    no_redirect = httpx.get(base, params={k: v for k, v in good.items() if k != "redirect_uri"})
    assert no_redirect.status_code == 400 and "Location" not in no_redirect.headers
    token_flow = httpx.get(base, params={**good, "response_type": "token"})
    assert token_flow.status_code == 302
    assert parse_qs(urlsplit(token_flow.headers["Location"]).query) == {
        "error": ["unsupported_response_type"],
        "state": ["s1"],
    }
    other_scope = httpx.get(base, params={**good, "scope": "openid email"})
    assert parse_qs(urlsplit(other_scope.headers["Location"]).query)["error"] == ["invalid_scope"]


def test_code_is_single_use_and_bound_to_redirect_uri(qbo: QuickBooksEmulator) -> None:
    with oauth_client(qbo) as client:
        callback, query = authorize(qbo, client)
        code = query["code"][0]
        with pytest.raises(OAuthError) as mismatch:
            client.fetch_token(
                token_url(qbo), code=code, redirect_uri="http://localhost:1/elsewhere"
            )
        assert mismatch.value.error == "invalid_grant"
        client.fetch_token(token_url(qbo), authorization_response=callback)
        with pytest.raises(OAuthError) as reused:
            client.fetch_token(token_url(qbo), authorization_response=callback)
        assert reused.value.error == "invalid_grant"
    assert [g["error"] for g in qbo.token_grants()] == ["invalid_grant", None, "invalid_grant"]


def test_client_authentication(qbo: QuickBooksEmulator) -> None:
    with oauth_client(qbo, secret="wrong-secret") as client:
        callback, _ = authorize(qbo, client)
        with pytest.raises(OAuthError) as refused:
            client.fetch_token(token_url(qbo), authorization_response=callback)
        assert refused.value.error == "invalid_client"
    raw = httpx.post(
        token_url(qbo),
        data={"grant_type": "refresh_token", "refresh_token": "x"},
        auth=(qbo.client_id, "wrong-secret"),
    )
    assert raw.status_code == 401 and raw.json() == {"error": "invalid_client"}
    assert raw.headers["Content-Type"].startswith("application/json")
    # client_secret_post works too.
    with OAuth2Client(
        qbo.client_id,
        qbo.client_secret,
        scope=SCOPE,
        redirect_uri=REDIRECT_URI,
        token_endpoint_auth_method="client_secret_post",
    ) as client:
        callback, _ = authorize(qbo, client)
        assert client.fetch_token(token_url(qbo), authorization_response=callback)["access_token"]


def test_token_endpoint_request_errors(qbo: QuickBooksEmulator) -> None:
    auth = (qbo.client_id, qbo.client_secret)
    other = httpx.post(token_url(qbo), data={"grant_type": "password"}, auth=auth)
    assert other.status_code == 400 and other.json() == {"error": "unsupported_grant_type"}
    missing = httpx.post(token_url(qbo), data={"grant_type": "refresh_token"}, auth=auth)
    assert missing.status_code == 400 and missing.json() == {"error": "invalid_request"}
    unknown = httpx.post(
        token_url(qbo), data={"grant_type": "refresh_token", "refresh_token": "zz"}, auth=auth
    )
    assert unknown.status_code == 400 and unknown.json() == {"error": "invalid_grant"}


def test_refresh_rotates_the_refresh_token(qbo: QuickBooksEmulator) -> None:
    first = connect(qbo)
    second = refresh(qbo, first["refresh_token"])
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert qbo.refresh_count == 1
    assert qbo.valid_refresh_tokens() == {second["refresh_token"]}
    with pytest.raises(OAuthError) as old:
        refresh(qbo, first["refresh_token"])
    assert old.value.error == "invalid_grant"
    # Access tokens of the earlier refresh stay valid until they expire.
    assert Api(qbo, first["access_token"]).get(f"companyinfo/{qbo.realm_id}").status_code == 200


def test_refresh_without_rotation_keeps_the_token() -> None:
    with QuickBooksEmulator(requests_per_minute=None, rotate_refresh_tokens=False) as qbo:
        first = connect(qbo)
        again = refresh(qbo, first["refresh_token"])
        assert again["refresh_token"] == first["refresh_token"]
        assert refresh(qbo, first["refresh_token"])["refresh_token"] == first["refresh_token"]
        assert qbo.refresh_count == 2


def test_expired_access_token_is_an_authentication_fault(qbo: QuickBooksEmulator) -> None:
    token = connect(qbo)
    qbo.expire_access_tokens()
    response = Api(qbo, token["access_token"]).get(f"companyinfo/{qbo.realm_id}")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="Intuit", error="invalid_token"'
    error = fault(response)
    assert error["type"] == "AuthenticationFault" and error["code"] == "3200"
    assert error["Detail"] == "Token expired"
    assert error["Message"] == "message=AuthenticationFailed; errorCode=003200; statusCode=401"
    fresh = refresh(qbo, token["refresh_token"])
    assert Api(qbo, fresh["access_token"]).get(f"companyinfo/{qbo.realm_id}").status_code == 200


def test_short_access_token_ttl(qbo: QuickBooksEmulator) -> None:
    qbo.set_access_token_ttl(0.2)
    token = connect(qbo)
    assert token["expires_in"] == 1  # at least one second on the wire
    time.sleep(0.25)
    response = Api(qbo, token["access_token"]).get(f"companyinfo/{qbo.realm_id}")
    assert response.status_code == 401 and fault(response)["Detail"] == "Token expired"


def test_user_disconnect_revokes_everything(qbo: QuickBooksEmulator) -> None:
    token = connect(qbo)
    qbo.revoke_refresh_tokens()
    assert qbo.valid_refresh_tokens() == set()
    response = Api(qbo, token["access_token"]).get(f"companyinfo/{qbo.realm_id}")
    assert response.status_code == 401 and fault(response)["Detail"] == "Token revoked"
    with pytest.raises(OAuthError) as refused:
        refresh(qbo, token["refresh_token"])
    assert refused.value.error == "invalid_grant"


def test_revoke_endpoint(qbo: QuickBooksEmulator) -> None:
    token = connect(qbo)
    revoked = httpx.post(
        f"{qbo.base_url}/oauth2/v1/tokens/revoke",
        json={"token": token["refresh_token"]},
        auth=(qbo.client_id, qbo.client_secret),
    )
    assert revoked.status_code == 200 and revoked.json() == {}
    assert Api(qbo, token["access_token"]).get(f"companyinfo/{qbo.realm_id}").status_code == 401
    with pytest.raises(OAuthError):
        refresh(qbo, token["refresh_token"])


def test_missing_token_and_other_realm(qbo: QuickBooksEmulator, api: Api) -> None:
    anonymous = httpx.get(f"{qbo.base_url}/v3/company/{qbo.realm_id}/companyinfo/{qbo.realm_id}")
    assert anonymous.status_code == 401 and fault(anonymous)["Detail"] == "Token invalid"
    other = Api(qbo, api.http.headers["Authorization"].split()[1], realm="123")
    response = other.get("companyinfo/123")
    assert response.status_code == 403
    error = fault(response)
    assert error["type"] == "AuthorizationFault" and error["code"] == "3100"
    assert api.get("nothing-here").status_code == 404
    assert api.http.delete(f"{api.base}/invoice/1").status_code == 405


# ----------------------------------------------------------------------------- customers, query


def test_customer_create_duplicate_get_and_deactivate(qbo: QuickBooksEmulator, api: Api) -> None:
    created = api.post(
        "customer", {"DisplayName": "Acme", "PrimaryEmailAddr": {"Address": "ap@acme.test"}}
    )
    assert created.status_code == 200, created.text
    customer = created.json()["Customer"]
    assert customer["SyncToken"] == "0" and customer["Active"] is True
    assert customer["Balance"] == 0 and customer["MetaData"]["CreateTime"]
    duplicate = api.post("customer", {"DisplayName": "Acme"})
    assert duplicate.status_code == 400
    error = fault(duplicate)
    assert (error["type"], error["code"], error["element"]) == (
        "ValidationFault",
        "6240",
        "DisplayName",
    )
    assert error["Message"] == "Duplicate Name Exists Error"
    assert api.get(f"customer/{customer['Id']}").json()["Customer"]["DisplayName"] == "Acme"
    missing = api.get("customer/999")
    assert missing.status_code == 400
    assert (fault(missing)["code"], fault(missing)["Message"]) == ("610", "Object Not Found")

    deactivate = {"Id": customer["Id"], "SyncToken": "0", "sparse": True, "Active": False}
    done = api.post("customer", deactivate)
    assert done.status_code == 200, done.text
    assert done.json()["Customer"]["SyncToken"] == "1"
    assert done.json()["Customer"]["PrimaryEmailAddr"] == {"Address": "ap@acme.test"}
    stale = api.post("customer", deactivate)
    assert stale.status_code == 400 and fault(stale)["code"] == "5010"
    assert api.query("select * from Customer where DisplayName = 'Acme'") == {}
    inactive = api.query("select * from Customer where DisplayName = 'Acme' and Active = false")
    assert [c["Id"] for c in inactive["Customer"]] == [customer["Id"]]
    # An inactive customer's name is free again.
    assert api.post("customer", {"DisplayName": "Acme"}).status_code == 200
    assert [c["Active"] for c in qbo.customers()] == [False, True]


def test_queries(qbo: QuickBooksEmulator, api: Api) -> None:
    obrien = qbo.create_customer("O'Brien & Sons", "ob@sons.test")
    acme = qbo.create_customer("Acme", "ap@acme.test")
    for n in range(5):
        qbo.create_customer(f"Filler {n}")
    found = api.query("select * from Customer where DisplayName = 'O\\'Brien & Sons'")
    assert [c["Id"] for c in found["Customer"]] == [obrien]
    assert found["startPosition"] == 1 and found["maxResults"] == 1
    by_email = api.query("SELECT * FROM customer WHERE PrimaryEmailAddr = 'ap@acme.test'")
    assert [c["Id"] for c in by_email["Customer"]] == [acme]
    assert api.query("select count(*) from Customer") == {"totalCount": 7}
    ids = api.query(f"select * from Customer where Id in ('{obrien}', '{acme}', '999')")
    assert sorted(c["Id"] for c in ids["Customer"]) == sorted([obrien, acme])
    page = api.query("select * from Customer startposition 3 maxresults 2")
    assert [c["DisplayName"] for c in page["Customer"]] == ["Filler 0", "Filler 1"]
    assert page["startPosition"] == 3 and page["maxResults"] == 2
    posted = api.http.post(
        f"{api.base}/query",
        content="select * from Customer where DisplayName like 'Filler%' maxresults 10",
        headers={"Content-Type": "application/text"},
    )
    assert len(posted.json()["QueryResponse"]["Customer"]) == 5

    broken = api.get("query", query="select * form Customer")
    assert broken.status_code == 400
    error = fault(broken)
    assert (error["type"], error["code"], error["Message"]) == (
        "ValidationFault",
        "4000",
        "Error parsing query",
    )
    assert error["Detail"].startswith("QueryParserError: ")


# ----------------------------------------------------------------------------- invoices


@pytest.fixture
def books(qbo: QuickBooksEmulator) -> dict[str, str]:
    return {
        "customer": qbo.create_customer("Acme", "ap@acme.test"),
        "item": qbo.create_item("API calls"),
    }


def invoice_body(books: dict[str, str], *lines: Any, **extra: Any) -> dict[str, Any]:
    return {"CustomerRef": {"value": books["customer"]}, "Line": list(lines), **extra}


def test_invoice_with_exact_decimal_total(
    qbo: QuickBooksEmulator, api: Api, books: dict[str, str]
) -> None:
    body = invoice_body(
        books,
        sales_line(37.5, books["item"], qty=3, unit=12.5),
        sales_line(0.1, books["item"]),
        sales_line(0.2, books["item"]),
        {**sales_line(-5.0, books["item"]), "Description": "Goodwill credit"},
        DocNumber="INV-1",
        TxnDate="2026-01-31",
        PrivateNote="billbridge invoice in_1",
    )
    response = api.post("invoice", body, requestid="r-1")
    assert response.status_code == 200, response.text
    assert '"TotalAmt":32.8' in response.text and '"Balance":32.8' in response.text
    invoice = response.json(parse_float=Decimal)["Invoice"]
    assert invoice["TotalAmt"] == Decimal("32.8") and invoice["SyncToken"] == "0"
    assert invoice["DocNumber"] == "INV-1" and invoice["TxnDate"] == "2026-01-31"
    assert invoice["CurrencyRef"] == {"value": "USD", "name": "United States Dollar"}
    assert invoice["CustomerRef"] == {"value": books["customer"], "name": "Acme"}
    *sales, subtotal = invoice["Line"]
    assert [(line["Id"], line["LineNum"]) for line in sales] == [
        ("1", 1),
        ("2", 2),
        ("3", 3),
        ("4", 4),
    ]
    assert [line["Amount"] for line in sales] == [
        Decimal("37.5"),
        Decimal("0.1"),
        Decimal("0.2"),
        -5,
    ]
    assert sales[0]["SalesItemLineDetail"]["ItemRef"] == {
        "value": books["item"],
        "name": "API calls",
    }
    assert sales[3]["Description"] == "Goodwill credit"
    assert subtotal == {
        "Amount": Decimal("32.8"),
        "DetailType": "SubTotalLineDetail",
        "SubTotalLineDetail": {},
    }
    assert api.get(f"invoice/{invoice['Id']}").json()["Invoice"]["Id"] == invoice["Id"]
    assert api.get("invoice/999").status_code == 400
    assert [
        i["Id"] for i in api.query("select * from Invoice where DocNumber = 'INV-1'")["Invoice"]
    ] == [invoice["Id"]]
    customer = api.get(f"customer/{books['customer']}").json(parse_float=Decimal)["Customer"]
    assert customer["Balance"] == Decimal("32.8")
    assert qbo.invoices()[0]["TotalAmt"] == Decimal("32.8")


@pytest.mark.parametrize(
    ("change", "code", "element"),
    [
        ({"Line": [sales_line(37.6, "ITEM", qty=3, unit=12.5)]}, "6070", "Amount"),
        ({"Line": [sales_line(1.005, "ITEM")]}, "6000", "Amount"),
        ({"Line": [sales_line(1.0, "999")]}, "2500", "ItemRef"),
        ({"CustomerRef": {"value": "999"}}, "2500", "CustomerRef"),
        ({"DocNumber": "X" * 22}, "6000", "DocNumber"),
        ({"TxnDate": "31/01/2026"}, "6000", "TxnDate"),
        ({"Line": [sales_line(-1.0, "ITEM")]}, "6000", None),
    ],
)
def test_invoice_validation(
    api: Api, books: dict[str, str], change: dict[str, Any], code: str, element: str | None
) -> None:
    body = invoice_body(books, sales_line(10.0, books["item"]))
    body.update(json.loads(json.dumps(change).replace("ITEM", books["item"])))
    response = api.post("invoice", body)
    assert response.status_code == 400
    error = fault(response)
    assert (error["type"], error["code"], error.get("element")) == (
        "ValidationFault",
        code,
        element,
    )


def test_line_amount_is_qty_times_unit_price_rounded_half_up(
    api: Api, books: dict[str, str]
) -> None:
    half_up = api.post("invoice", invoice_body(books, sales_line(1.01, books["item"], 3, 0.335)))
    assert half_up.status_code == 200, half_up.text
    down = api.post("invoice", invoice_body(books, sales_line(1.0, books["item"], 3, 0.335)))
    assert down.status_code == 400 and fault(down)["code"] == "6070"


def test_invoice_refuses_inactive_customer_and_duplicate_doc_number(
    qbo: QuickBooksEmulator, api: Api, books: dict[str, str]
) -> None:
    line = sales_line(10.0, books["item"])
    assert api.post("invoice", invoice_body(books, line, DocNumber="7")).status_code == 200
    duplicate = api.post("invoice", invoice_body(books, line, DocNumber="7"))
    assert duplicate.status_code == 400
    assert (fault(duplicate)["code"], fault(duplicate)["Message"]) == (
        "6140",
        "Duplicate Document Number Error",
    )
    qbo.deactivate_customer(books["customer"])
    inactive = api.post("invoice", invoice_body(books, line))
    assert fault(inactive)["code"] == "2500" and books["customer"] in fault(inactive)["Detail"]
    assert len(qbo.invoices()) == 1


def test_requestid_replays_the_original_response(
    qbo: QuickBooksEmulator, api: Api, books: dict[str, str]
) -> None:
    line = sales_line(10.0, books["item"])
    body = invoice_body(books, line)
    first = api.post("invoice", body, requestid="same")
    again = api.post("invoice", {**body, "DocNumber": "different"}, requestid="same")
    assert again.status_code == 200 and again.content == first.content
    assert len(qbo.invoices()) == 1
    assert [r.replayed for r in qbo.requests() if r.request_id == "same"] == [False, True]

    # An error is replayed as well, even after its cause is gone.
    later = str(len(qbo.customers()) + 1)  # the Id the next customer will get
    refused = api.post("invoice", invoice_body({**books, "customer": later}, line), requestid="e")
    assert refused.status_code == 400 and fault(refused)["code"] == "2500"
    assert qbo.create_customer("Created later") == later
    retried = api.post("invoice", invoice_body({**books, "customer": later}, line), requestid="e")
    assert retried.status_code == 400 and retried.content == refused.content
    too_long = api.post("invoice", body, requestid="x" * 51)
    assert too_long.status_code == 400 and fault(too_long)["element"] == "requestid"
    assert len(qbo.invoices()) == 1


def test_requestid_ttl() -> None:
    with QuickBooksEmulator(requests_per_minute=None, request_id_ttl_seconds=0.2) as qbo:
        api = Api(qbo, connect(qbo)["access_token"])
        customer = qbo.create_customer("Acme")
        body = {"CustomerRef": {"value": customer}, "Line": [sales_line(1.0, qbo.create_item("X"))]}
        first = api.post("invoice", body, requestid="r").json()["Invoice"]["Id"]
        assert api.post("invoice", body, requestid="r").json()["Invoice"]["Id"] == first
        time.sleep(0.25)
        assert api.post("invoice", body, requestid="r").json()["Invoice"]["Id"] != first


# ----------------------------------------------------------------------------- throttling, faults


@pytest.mark.parametrize("retry_after", [None, 7.0])
def test_throttling(retry_after: float | None) -> None:
    with QuickBooksEmulator(requests_per_minute=3, retry_after_seconds=retry_after) as qbo:
        api = Api(qbo, connect(qbo)["access_token"])
        path = f"companyinfo/{qbo.realm_id}"
        assert [api.get(path).status_code for _ in range(3)] == [200, 200, 200]
        throttled = api.get(path)
        assert throttled.status_code == 429
        error = fault(throttled)
        assert (error["type"], error["code"]) == ("ThrottlingFault", "3001")
        assert throttled.headers.get("Retry-After") == (None if retry_after is None else "7")


def test_drop_after_executes_and_requestid_retry_returns_it(
    qbo: QuickBooksEmulator, api: Api, books: dict[str, str]
) -> None:
    qbo.add_fault(Fault(kind="drop_after", path_prefix="/v3/", method="POST"))
    body = invoice_body(books, sales_line(12.34, books["item"]))
    with pytest.raises(httpx.TransportError):
        api.post("invoice", body, requestid="drop-1")
    [created] = qbo.invoices()
    retry = api.post("invoice", body, requestid="drop-1")
    assert retry.status_code == 200 and retry.json()["Invoice"]["Id"] == created["Id"]
    assert len(qbo.invoices()) == 1
    logged = [(r.status, r.fault, r.replayed) for r in qbo.requests() if r.request_id == "drop-1"]
    assert logged == [(200, "drop_after", False), (200, None, True)]


def test_drop_status_and_token_faults(
    qbo: QuickBooksEmulator, api: Api, books: dict[str, str]
) -> None:
    body = invoice_body(books, sales_line(1.0, books["item"]))
    qbo.add_fault(Fault(kind="drop", path_prefix="/v3/", method="POST"))
    with pytest.raises(httpx.TransportError):
        api.post("invoice", body, requestid="d")
    assert qbo.invoices() == []
    qbo.add_fault(Fault(kind="status", status=503, path_prefix="/v3/"))
    unavailable = api.get(f"companyinfo/{qbo.realm_id}")
    assert unavailable.status_code == 503
    assert (fault(unavailable)["type"], fault(unavailable)["code"]) == ("SystemFault", "10000")
    qbo.add_fault(Fault(kind="status", status=429, retry_after=2, path_prefix="/v3/"))
    busy = api.get(f"companyinfo/{qbo.realm_id}")
    assert busy.status_code == 429 and busy.headers["Retry-After"] == "2"
    assert fault(busy)["type"] == "ThrottlingFault"
    qbo.add_fault(Fault(kind="status", status=503, path_prefix="/oauth2/v1/tokens/bearer"))
    with pytest.raises(httpx.HTTPStatusError):
        connect(qbo)
    assert api.post("invoice", body, requestid="d").status_code == 200  # never executed before


def test_request_log_redacts_secrets(qbo: QuickBooksEmulator) -> None:
    token = connect(qbo)
    token = refresh(qbo, token["refresh_token"])
    Api(qbo, token["access_token"]).get(f"companyinfo/{qbo.realm_id}")
    logged = qbo.requests()
    assert [r.path for r in logged] == [
        "/connect/oauth2",
        "/oauth2/v1/tokens/bearer",
        "/oauth2/v1/tokens/bearer",
        f"/v3/company/{qbo.realm_id}/companyinfo/{qbo.realm_id}",
    ]
    text = repr([r.to_dict() for r in logged])
    assert qbo.client_secret not in text
    for secret in (token["access_token"], token["refresh_token"]):
        assert secret[:7] not in text
    code_exchange, refreshing = logged[1], logged[2]
    assert code_exchange.body["grant_type"] == "authorization_code"
    assert code_exchange.body["code"].endswith("…") and len(code_exchange.body["code"]) == 7
    assert refreshing.body["refresh_token"].endswith("…")
    assert code_exchange.authorization is not None and code_exchange.authorization.startswith(
        "Basic "
    )
    assert logged[3].authorization == f"Bearer {token['access_token'][:6]}…"
    assert [r.status for r in logged] == [302, 200, 200, 200]


def test_standalone_runner() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "billbridge.emulators.quickbooks", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:")
        anonymous = httpx.get(f"{base_url}/v3/company/1/companyinfo/1")
        assert anonymous.status_code == 401
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
