"""The BILL emulator speaks BILL's documented v3 protocol: login and sessions, limits, error
bodies, customers, items and invoices, faults and the request log. Plain HTTP against it, no
billbridge client in between (that is tests/test_billcom*.py)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from billbridge.emulators.billcom import BillcomEmulator, Fault
from billbridge.emulators.billcom.__main__ import main as emulator_main


@pytest.fixture
def bill() -> Iterator[BillcomEmulator]:
    with BillcomEmulator() as emulator:
        yield emulator


class Api:
    """A logged-in session, as a BILL client holds one."""

    def __init__(
        self, bill: BillcomEmulator, base: str | None = None, *, logged_in: bool = True
    ) -> None:
        self.bill = bill
        self.base = base or bill.gateway_url
        self.http = httpx.Client(base_url=self.base, timeout=10)
        self.session = self.login().json()["sessionId"] if logged_in else ""

    def login(self, **changes: str) -> httpx.Response:
        return self.http.post("/v3/login", json={**self.bill.credentials(), **changes})

    def headers(self) -> dict[str, str]:
        return {"devKey": self.bill.account.dev_key, "sessionId": self.session}

    def get(self, path: str, **params: str) -> httpx.Response:
        return self.http.get(path, params=params, headers=self.headers())

    def post(self, path: str, body: Any = None) -> httpx.Response:
        return self.http.post(path, json=body, headers=self.headers())


def error_code(response: httpx.Response) -> str:
    """The code of BILL's error list, checking its documented shape on the way."""
    body = response.json()
    assert isinstance(body, list) and len(body) == 1
    entry = body[0]
    assert set(entry) == {"timestamp", "code", "severity", "category", "message"}
    assert entry["severity"] == "ERROR" and entry["category"] in (
        "REQUEST",
        "APPLICATION",
        "SERVER",
        "DOWNSTREAM",
    )
    return str(entry["code"])


def invoice_body(customer: str, item: str, **changes: Any) -> dict[str, Any]:
    return {
        "customer": {"id": customer},
        "invoiceNumber": "INV-1",
        "invoiceDate": "2026-03-01",
        "dueDate": "2026-03-31",
        "invoiceLineItems": [
            {"quantity": 2, "price": 14.99, "description": "Drum sticks"},
            {"quantity": 1, "price": 50.00, "classifications": {"itemId": item}},
        ],
        "processingOptions": {"sendEmail": False},
        **changes,
    }


def test_login_answers_a_session_that_every_call_needs(bill: BillcomEmulator) -> None:
    api = Api(bill)
    assert api.get("/v3/login/session").json()["organizationId"] == bill.account.organization_id
    assert error_code(api.http.get("/v3/customers")) == "BDC_1109"
    wrong_session = api.http.get("/v3/customers", headers={**api.headers(), "sessionId": "x"})
    assert wrong_session.status_code == 401 and error_code(wrong_session) == "BDC_1109"
    assert error_code(api.login(password="wrong")) == "BDC_1101"
    assert error_code(api.login(devKey="other-environment")) == "BDC_1102"
    # The gateway's /connect prefix is optional on the emulator.
    assert Api(bill, bill.base_url).get("/v3/customers").status_code == 200
    unknown = api.get("/v3/nothing-here")
    assert unknown.status_code == 404 and error_code(unknown) == "BDC_1121"
    api.post("/v3/logout")
    assert error_code(api.get("/v3/customers")) == "BDC_1109"


def test_a_session_ends_after_35_idle_minutes_and_each_call_renews_it(
    bill: BillcomEmulator,
) -> None:
    api = Api(bill)
    bill.advance(34 * 60)
    assert api.get("/v3/customers").status_code == 200  # renews
    bill.advance(34 * 60)
    assert api.get("/v3/customers").status_code == 200
    bill.advance(36 * 60)
    assert error_code(api.get("/v3/customers")) == "BDC_1109"


def test_logins_are_capped_per_devkey_and_hour() -> None:
    with BillcomEmulator(logins_per_hour=3, logins_per_minute=None, limit_status=429) as bill:
        bill.advance(3600 - (bill.clock.now() % 3600) + 1)  # the start of an hour
        for _ in range(3):
            Api(bill)
        refused = Api(bill, logged_in=False)
        over = refused.login()
        assert over.status_code == 429 and error_code(over) == "BDC_1144"
        bill.advance(3600)
        assert refused.login().status_code == 200
        assert bill.login_attempts == 5


def test_five_logins_a_minute() -> None:
    with BillcomEmulator() as bill:
        api = Api(bill)
        for _ in range(4):
            assert api.login().status_code == 200
        sixth = api.login()
        assert sixth.status_code == 400 and error_code(sixth) == "BDC_1144"
        bill.advance(61)
        assert api.login().status_code == 200


def test_hourly_request_limit_waits_for_the_next_hour() -> None:
    with BillcomEmulator(requests_per_hour=4) as bill:
        bill.advance(3600 - (bill.clock.now() % 3600) + 1)
        api = Api(bill)  # the login is one of the four
        for _ in range(3):
            assert api.get("/v3/customers").status_code == 200
        over = api.get("/v3/customers")
        assert over.status_code == 400 and error_code(over) == "BDC_1144"
        assert "20000" not in over.json()[0]["message"] and "4" in over.json()[0]["message"]
        for _ in range(2):  # later in the same hour (each call keeps the session alive)
            bill.advance(29 * 60)
            assert error_code(api.get("/v3/customers")) == "BDC_1144"
        bill.advance(3600 - (bill.clock.now() % 3600) + 1)  # the next hour
        assert api.get("/v3/customers").status_code == 200
        assert bill.refusals()["BDC_1144"] == 3


def test_a_fourth_concurrent_request_is_refused_until_one_completes() -> None:
    with BillcomEmulator(limit_status=503) as bill:
        api = Api(bill)
        bill.add_fault(Fault(kind="delay", seconds=1.0, count=3, path_prefix="/v3/customers"))
        answers: list[int] = []
        threads = [
            threading.Thread(target=lambda: answers.append(api.get("/v3/customers").status_code))
            for _ in range(3)
        ]
        for thread in threads:
            thread.start()
        for _ in range(200):  # until the three are in flight (their delays sleeping)
            if bill.in_flight() == 3:
                break
            threading.Event().wait(0.01)
        refused = api.get("/v3/invoices")
        assert refused.status_code == 503 and error_code(refused) == "BDC_1322"
        for thread in threads:
            thread.join()
        assert answers == [200, 200, 200]
        assert api.get("/v3/invoices").status_code == 200
        assert bill.peak_concurrency() == 3


def test_customers_are_created_and_found_by_email_page_by_page(bill: BillcomEmulator) -> None:
    api = Api(bill)
    created = api.post("/v3/customers", {"name": "Acme", "email": "billing@acme.test"})
    assert created.status_code == 200 and created.json()["id"].startswith("0cu")
    for n in range(3):
        api.post("/v3/customers", {"name": f"Other {n}", "email": f"o{n}@example.test"})
    found = api.get("/v3/customers", filters="email:eq:BILLING@acme.test").json()
    assert [c["id"] for c in found["results"]] == [created.json()["id"]]
    first = api.get("/v3/customers", max="3").json()
    assert len(first["results"]) == 3 and first["nextPage"]
    second = api.get("/v3/customers", max="3", page=first["nextPage"]).json()
    assert len(second["results"]) == 1 and "nextPage" not in second
    assert error_code(api.post("/v3/customers", {"name": "No e-mail"})) == "BDC_1000"
    assert error_code(api.post("/v3/customers", {"name": "x", "email": "y", "nick": 1})) == (
        "BDC_1002"
    )
    assert error_code(api.get("/v3/customers", max="101")) == "BDC_1000"


def test_international_customers_need_a_currency_the_organization_invoices_in() -> None:
    with BillcomEmulator(invoice_currencies=["USD", "EUR"]) as bill:
        api = Api(bill)
        euro = api.post(
            "/v3/customers", {"name": "Eu", "email": "eu@x.test", "invoiceCurrency": "EUR"}
        )
        assert euro.json()["invoiceCurrency"] == "EUR"
        yen = api.post(
            "/v3/customers", {"name": "Jp", "email": "jp@x.test", "invoiceCurrency": "JPY"}
        )
        assert yen.status_code == 400 and error_code(yen) == "BDC_1311"


def test_an_invoice_is_computed_from_its_lines_and_found_by_number(bill: BillcomEmulator) -> None:
    api = Api(bill)
    customer = bill.create_customer("Acme", "billing@acme.test")
    item = bill.create_item("Guitar picks")
    created = api.post("/v3/invoices", invoice_body(customer, item))
    assert created.status_code == 200
    invoice = created.json()
    assert invoice["id"].startswith("00e") and invoice["totalAmount"] == 79.98
    assert invoice["customerId"] == customer and invoice["recordStatus"] == "ACTIVE"
    assert [line["amount"] for line in invoice["invoiceLineItems"]] == [29.98, 50]
    assert invoice["invoiceLineItems"][1]["classifications"] == {"itemId": item}
    assert all(line["id"].startswith("00f") for line in invoice["invoiceLineItems"])
    # Numbers are optional (generated) and, by default, not unique (UNCONFIRMED at BILL).
    body = invoice_body(customer, item)
    del body["invoiceNumber"]
    assert api.post("/v3/invoices", body).json()["invoiceNumber"] == "1001"
    assert api.post("/v3/invoices", invoice_body(customer, item)).status_code == 200
    found = api.get("/v3/invoices", filters="invoiceNumber:eq:INV-1").json()["results"]
    assert len(found) == 2
    archived = api.post(f"/v3/invoices/{invoice['id']}/archive").json()
    assert archived["archived"] is True and archived["recordStatus"] == "INACTIVE"
    active = api.get("/v3/invoices", filters="invoiceNumber:eq:INV-1,archived:eq:false")
    assert len(active.json()["results"]) == 1
    assert api.get(f"/v3/invoices/{invoice['id']}").json()["archived"] is True
    assert api.get("/v3/invoices/00e0nothing").status_code == 404


def test_invoice_refusals(bill: BillcomEmulator) -> None:
    api = Api(bill)
    customer = bill.create_customer("Acme", "billing@acme.test")
    item = bill.create_item("Seats")
    no_quantity = invoice_body(customer, item, invoiceLineItems=[{"price": 1}])
    assert error_code(api.post("/v3/invoices", no_quantity)) == "BDC_1000"
    assert (
        error_code(api.post("/v3/invoices", invoice_body(customer, item, memo="x"))) == "BDC_1002"
    )
    assert error_code(api.post("/v3/invoices", invoice_body("0cu-nobody", item))) == "BDC_1000"
    long_number = invoice_body(customer, item, invoiceNumber="9" * 101)
    assert error_code(api.post("/v3/invoices", long_number)) == "BDC_1000"
    bill.archive("item", item)
    assert error_code(api.post("/v3/invoices", invoice_body(customer, item))) == "BDC_1000"
    parse = api.http.post("/v3/invoices", content=b"{not json", headers=api.headers())
    assert parse.status_code == 400 and error_code(parse) == "BDC_1122"
    assert not bill.invoices()


def test_unique_numbers_and_create_status_are_configurable() -> None:
    with BillcomEmulator(unique_invoice_numbers=True, create_status=201) as bill:
        api = Api(bill)
        customer = bill.create_customer("Acme", "billing@acme.test")
        item = bill.create_item("Seats")
        assert api.post("/v3/invoices", invoice_body(customer, item)).status_code == 201
        duplicate = api.post("/v3/invoices", invoice_body(customer, item))
        assert duplicate.status_code == 400 and error_code(duplicate) == "BDC_1310"


def test_faults_and_a_request_log_without_secrets(bill: BillcomEmulator) -> None:
    api = Api(bill)
    customer = bill.create_customer("Acme", "billing@acme.test")
    item = bill.create_item("Seats")
    bill.add_fault(Fault(kind="status", status=503, path_prefix="/v3/customers"))
    unavailable = api.get("/v3/customers")
    assert unavailable.status_code == 503 and error_code(unavailable) == "BDC_1001"
    bill.add_fault(Fault(kind="status", status=401, message="BDC_1101", path_prefix="/v3/"))
    assert error_code(api.get("/v3/customers")) == "BDC_1101"
    bill.add_fault(Fault(kind="drop", method="POST", path_prefix="/v3/invoices"))
    with pytest.raises(httpx.RemoteProtocolError):
        api.post("/v3/invoices", invoice_body(customer, item))
    assert not bill.invoices()  # a drop is not executed
    bill.add_fault(Fault(kind="drop_after", method="POST", path_prefix="/v3/invoices"))
    with pytest.raises(httpx.RemoteProtocolError):
        api.post("/v3/invoices", invoice_body(customer, item))
    assert len(bill.invoices()) == 1  # executed, the answer lost
    log = bill.requests()
    login = log[0]
    assert login.path == "/v3/login" and login.body["password"].endswith("…")
    assert bill.account.password not in str([entry.to_dict() for entry in log])
    assert api.session not in str([entry.to_dict() for entry in log])
    assert [entry.fault for entry in log[-4:]] == ["status", "status", "drop", "drop_after"]
    assert [entry.code for entry in log[-4:-2]] == ["BDC_1001", "BDC_1101"]
    assert log[-2].status == 0 and log[-1].status == 200


def test_runs_standalone_and_lists_its_endpoints(capsys: pytest.CaptureFixture[str]) -> None:
    assert emulator_main(["--list-endpoints"]) == 0
    listed = capsys.readouterr().out
    assert "POST /v3/invoices" in listed and "POST /v3/login" in listed
