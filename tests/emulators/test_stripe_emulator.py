"""The Stripe emulator, driven through the official `stripe` SDK (plus httpx for raw checks)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
import stripe

from billbridge.emulators.stripe import Fault, StripeEmulator
from billbridge.emulators.stripe.forms import decode

KEY = "sk_test_billbridge"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
def emu() -> Iterator[StripeEmulator]:
    with StripeEmulator(rate_limit_per_second=None) as emulator:
        yield emulator


def sdk(emulator: StripeEmulator, key: str = KEY) -> stripe.StripeClient:
    return stripe.StripeClient(
        key, base_addresses={"api": emulator.base_url}, max_network_retries=0
    )


@pytest.fixture
def client(emu: StripeEmulator) -> stripe.StripeClient:
    return sdk(emu)


def total_count(lines: Any) -> int:
    return int(lines["total_count"])  # not in the SDK's ListObject typing, but on the wire


def error_body(err: stripe.StripeError) -> dict[str, Any]:
    assert isinstance(err.json_body, dict)
    body: dict[str, Any] = err.json_body["error"]
    return body


def due_in(days: int) -> int:
    return int(time.time()) + days * 86400


def draft_invoice(client: stripe.StripeClient, customer: str, **extra: Any) -> stripe.Invoice:
    params: dict[str, Any] = {
        "customer": customer,
        "collection_method": "send_invoice",
        "due_date": due_in(30),
        **extra,
    }
    return client.v1.invoices.create(params=params)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- happy path


def test_invoice_flow_amounts_and_finalize(
    emu: StripeEmulator, client: stripe.StripeClient
) -> None:
    cus = client.v1.customers.create(params={"email": "ap@acme.test", "name": "Acme"})
    prod = client.v1.products.create(params={"name": "API calls"})
    price = client.v1.prices.create(
        params={"currency": "usd", "product": prod.id, "unit_amount": 1000, "lookup_key": "seat"}
    )
    inv = draft_invoice(client, cus.id, metadata={"export_id": "exp_1"}, auto_advance=False)
    assert inv.status == "draft" and inv.number is None and inv.currency == "usd"

    inv = client.v1.invoices.add_lines(
        inv.id,
        params={
            "lines": [
                {
                    "price_data": {
                        "currency": "usd",
                        "product": prod.id,
                        "unit_amount_decimal": Decimal("12.5"),
                    },
                    "quantity_decimal": Decimal("3.333"),
                    "description": "Usage",
                    "metadata": {"usage_line": "u1"},
                    "period": {"start": 1_700_000_000, "end": 1_702_000_000},
                },
                {"pricing": {"price": price.id}, "quantity": 2},
                {"amount": -300, "description": "Goodwill credit"},
                {
                    "price_data": {
                        "currency": "usd",
                        "product": prod.id,
                        "unit_amount_decimal": Decimal("2.5"),
                    },
                    "quantity": 1,
                },
            ]
        },
    )
    usage, seats, credit, half = inv.lines.data
    assert usage.amount == 42  # 12.5 x 3.333 = 41.6625 -> 42
    assert usage.quantity == 3 and usage.quantity_decimal == Decimal("3.333")
    assert usage.pricing is not None and usage.pricing.price_details is not None
    assert usage.pricing.price_details.product == prod.id
    assert usage.pricing.unit_amount_decimal == Decimal("12.5")
    assert usage.metadata["usage_line"] == "u1"
    assert usage.period.start == 1_700_000_000
    assert usage.object == "line_item" and usage.id.startswith("il_")
    assert usage.parent is not None and usage.parent.invoice_item_details is not None
    assert usage.parent.invoice_item_details.invoice_item.startswith("ii_")
    assert seats.amount == 2000
    assert credit.amount == -300 and credit.discountable is False
    assert half.amount == 3  # half-up rounding of 2.5 (module constant, unconfirmed)
    assert inv.subtotal == inv.total == 42 + 2000 - 300 + 3
    assert inv.amount_due == inv.total and total_count(inv.lines) == 4

    done = client.v1.invoices.finalize_invoice(inv.id)
    assert done.status == "open"
    assert done.number and done.number.endswith("-0001")
    assert done.hosted_invoice_url and done.invoice_pdf
    assert done.status_transitions.finalized_at is not None
    assert done.amount_due == done.amount_remaining == 1745 and done.amount_paid == 0
    assert done.starting_balance == 0 and done.ending_balance == 0

    rendered = emu.invoices()
    assert [i["id"] for i in rendered] == [inv.id]
    assert rendered[0]["lines"]["total_count"] == 4 and len(rendered[0]["lines"]["data"]) == 4
    assert rendered[0]["lines"]["data"][0]["quantity_decimal"] == "3.333"

    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.invoices.add_lines(inv.id, params={"lines": [{"amount": 5}]})
    assert exc.value.code == "invoice_not_editable"

    listed = client.v1.prices.list(params={"lookup_keys": ["seat"]})
    assert [p.id for p in listed.data] == [price.id]


def test_void_and_delete_rules(client: stripe.StripeClient) -> None:
    cus = client.v1.customers.create()
    inv = draft_invoice(client, cus.id)
    client.v1.invoices.add_lines(inv.id, params={"lines": [{"amount": 5000}]})
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.invoices.void_invoice(inv.id)
    client.v1.invoices.finalize_invoice(inv.id)
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.invoices.delete(inv.id)
    voided = client.v1.invoices.void_invoice(inv.id)
    assert voided.status == "void" and voided.status_transitions.voided_at is not None

    other = draft_invoice(client, cus.id)
    deleted = client.v1.invoices.delete(other.id)
    assert deleted.deleted is True
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.invoices.retrieve(other.id)
    assert exc.value.http_status == 404


def test_customer_balance_applied_at_finalize(client: stripe.StripeClient) -> None:
    cus = client.v1.customers.create(params={"name": "Credit Co"})
    client.v1.customers.balance_transactions.create(
        cus.id, params={"amount": -1000, "currency": "usd", "description": "prepaid"}
    )
    assert client.v1.customers.retrieve(cus.id).balance == -1000

    first = draft_invoice(client, cus.id)
    first = client.v1.invoices.add_lines(first.id, params={"lines": [{"amount": 600}]})
    assert first.starting_balance == -1000 and first.amount_due == 0  # draft preview
    first = client.v1.invoices.finalize_invoice(first.id)
    assert (first.total, first.starting_balance, first.ending_balance) == (600, -1000, -400)
    assert first.amount_due == 0 and first.status == "paid"
    assert client.v1.customers.retrieve(cus.id).balance == -400

    second = draft_invoice(client, cus.id)
    client.v1.invoices.add_lines(second.id, params={"lines": [{"amount": 1500}]})
    second = client.v1.invoices.finalize_invoice(second.id)
    assert (second.starting_balance, second.ending_balance, second.amount_due) == (-400, 0, 1100)
    assert second.status == "open"
    assert client.v1.customers.retrieve(cus.id).balance == 0

    client.v1.invoices.void_invoice(second.id)  # voiding gives the applied credit back
    assert client.v1.customers.retrieve(cus.id).balance == -400
    txns = client.v1.customers.balance_transactions.list(cus.id)
    assert [t.type for t in txns.data] == [
        "unapplied_from_invoice",
        "applied_to_invoice",
        "applied_to_invoice",
        "adjustment",
    ]


def test_below_minimum_charge_and_tiny_decimals(client: stripe.StripeClient) -> None:
    cus = client.v1.customers.create()
    prod = client.v1.products.create(params={"name": "Tiny"})
    inv = draft_invoice(client, cus.id)
    client.v1.invoices.add_lines(
        inv.id,
        params={
            "lines": [
                {"amount": 30},
                {  # the SDK sends str(Decimal): "1E-12" / "1E+6"
                    "price_data": {
                        "currency": "usd",
                        "product": prod.id,
                        "unit_amount_decimal": Decimal("0.000000000001"),
                    },
                    "quantity_decimal": Decimal("1e6"),
                },
            ]
        },
    )
    done = client.v1.invoices.finalize_invoice(inv.id)
    # Below USD's 50-cent minimum: marked paid, amount carried to the customer's balance.
    assert (done.total, done.status, done.amount_due, done.ending_balance) == (30, "paid", 0, 30)
    assert client.v1.customers.retrieve(cus.id).balance == 30


def test_lines_pagination(client: stripe.StripeClient) -> None:
    cus = client.v1.customers.create()
    inv = draft_invoice(client, cus.id)
    inv = client.v1.invoices.add_lines(
        inv.id, params={"lines": [{"amount": 100 + i, "description": f"l{i}"} for i in range(25)]}
    )
    assert len(inv.lines.data) == 10 and inv.lines.has_more and total_count(inv.lines) == 25
    page = client.v1.invoices.line_items.list(inv.id, params={"limit": 10})
    assert len(page.data) == 10 and page.has_more
    page2 = client.v1.invoices.line_items.list(
        inv.id, params={"limit": 10, "starting_after": page.data[-1].id}
    )
    assert page2.data[0].description == "l10"
    every = list(client.v1.invoices.line_items.list(inv.id, params={"limit": 7}).auto_paging_iter())
    assert [line.amount for line in every] == [100 + i for i in range(25)]
    before = client.v1.invoices.line_items.list(
        inv.id, params={"limit": 3, "ending_before": every[5].id}
    )
    assert [line.description for line in before.data] == ["l2", "l3", "l4"]


def test_search_and_list_invoices(client: stripe.StripeClient) -> None:
    a = client.v1.customers.create()
    b = client.v1.customers.create()
    inv_a = draft_invoice(client, a.id, metadata={"export_id": "e-1"})
    draft_invoice(client, b.id, metadata={"export_id": "e-1"})
    draft_invoice(client, a.id, metadata={"export_id": "e-2"})

    hits = client.v1.invoices.search(
        params={"query": f"metadata['export_id']:'e-1' AND customer:'{a.id}'"}
    )
    assert hits["object"] == "search_result" and [i.id for i in hits.data] == [inv_a.id]
    both = client.v1.invoices.search(params={"query": "metadata['export_id']:'e-1'", "limit": 1})
    assert len(both.data) == 1 and both.has_more and both.next_page
    rest = client.v1.invoices.search(
        params={"query": "metadata['export_id']:'e-1'", "page": both.next_page}
    )
    assert len(rest.data) == 1 and not rest.has_more
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.invoices.search(params={"query": "colour:'red'"})
    assert exc.value.param == "query"

    listed = client.v1.invoices.list(params={"customer": a.id, "status": "draft"})
    assert len(listed.data) == 2 and listed.url == "/v1/invoices"


def test_deleted_customer_cannot_be_invoiced(client: stripe.StripeClient) -> None:
    cus = client.v1.customers.create(params={"email": "gone@acme.test"})
    assert client.v1.customers.delete(cus.id).deleted is True
    stub = client.v1.customers.retrieve(cus.id)
    assert stub.deleted is True
    with pytest.raises(stripe.InvalidRequestError) as exc:
        draft_invoice(client, cus.id)
    assert exc.value.code == "resource_missing" and exc.value.param == "customer"
    assert client.v1.customers.list(params={"email": "gone@acme.test"}).data == []


def test_parameter_errors_name_the_field(client: stripe.StripeClient) -> None:
    cus = client.v1.customers.create()
    prod = client.v1.products.create(params={"name": "p"})
    inv = draft_invoice(client, cus.id)
    good = {"amount": 1}
    bad_lines: list[tuple[dict[str, Any], str, str | None]] = [
        (
            {"price_data": {"product": prod.id, "unit_amount": 5}},
            "lines[1][price_data][currency]",
            "parameter_missing",
        ),
        (
            {"price_data": {"currency": "eur", "product": prod.id, "unit_amount": 5}},
            "lines[1][price_data][currency]",
            None,
        ),
        ({"price": "price_x"}, "lines[1][price]", "parameter_unknown"),
        ({"amount": "ten"}, "lines[1][amount]", "parameter_invalid_integer"),
        ({"pricing": {"price": "price_missing"}}, "lines[1][pricing][price]", "resource_missing"),
    ]
    for line, param, code in bad_lines:
        with pytest.raises(stripe.InvalidRequestError) as exc:
            client.v1.invoices.add_lines(inv.id, params={"lines": [good, line]})  # type: ignore[list-item]
        assert exc.value.param == param, line
        assert exc.value.code == code, line
    assert total_count(client.v1.invoices.retrieve(inv.id).lines) == 0  # all-or-nothing

    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.invoices.create(params={"collection_method": "send_invoice"})  # type: ignore[typeddict-item]
    assert missing.value.code == "parameter_missing" and missing.value.param == "customer"
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.invoices.create(params={"customer": cus.id, "collection_method": "send_invoice"})


def test_invoice_item_limits() -> None:
    with StripeEmulator(rate_limit_per_second=None, max_invoice_items=250) as emulator:
        client = sdk(emulator)
        cus = client.v1.customers.create()
        inv = draft_invoice(client, cus.id)
        with pytest.raises(stripe.InvalidRequestError) as too_many:
            client.v1.invoices.add_lines(
                inv.id, params={"lines": [{"amount": 1} for _ in range(101)]}
            )
        assert too_many.value.param == "lines"
        for batch in (100, 100, 50):
            client.v1.invoices.add_lines(
                inv.id, params={"lines": [{"amount": 1} for _ in range(batch)]}
            )
        with pytest.raises(stripe.InvalidRequestError) as full:
            client.v1.invoices.add_lines(inv.id, params={"lines": [{"amount": 1}]})
        assert "250" in str(full.value.user_message)
        with pytest.raises(stripe.InvalidRequestError):
            client.v1.invoice_items.create(
                params={"customer": cus.id, "invoice": inv.id, "amount": 1, "currency": "usd"}
            )
        assert total_count(client.v1.invoices.retrieve(inv.id).lines) == 250


def test_invoice_items_and_catalog_lookups(client: stripe.StripeClient) -> None:
    cus = client.v1.customers.create(params={"email": "items@acme.test"})
    assert [c.id for c in client.v1.customers.list(params={"email": "items@acme.test"}).data] == [
        cus.id
    ]
    prod = client.v1.products.create(params={"name": "Storage", "metadata": {"sku": "st"}})
    assert client.v1.products.retrieve(prod.id).metadata["sku"] == "st"
    price = client.v1.prices.create(
        params={"currency": "usd", "product": prod.id, "unit_amount_decimal": Decimal("0.25")}
    )
    assert client.v1.prices.retrieve(price.id).unit_amount_decimal == Decimal("0.25")
    pending = client.v1.invoice_items.create(
        params={"customer": cus.id, "pricing": {"price": price.id}, "quantity": 1000}
    )
    assert pending.amount == 250 and pending.invoice is None
    inv = draft_invoice(client, cus.id, pending_invoice_items_behavior="include")
    assert [line.parent.invoice_item_details.invoice_item for line in inv.lines.data] == [  # type: ignore[union-attr]
        pending.id
    ]
    direct = client.v1.invoice_items.create(
        params={"customer": cus.id, "invoice": inv.id, "amount": 75, "currency": "usd"}
    )
    listed = client.v1.invoice_items.list(params={"invoice": inv.id})
    assert {i.id for i in listed.data} == {pending.id, direct.id}
    assert client.v1.invoices.retrieve(inv.id).total == 325
    client.v1.invoice_items.delete(direct.id)
    assert client.v1.invoices.retrieve(inv.id).total == 250


# ---------------------------------------------------------------------------- idempotency


def test_idempotent_replay(emu: StripeEmulator, client: stripe.StripeClient) -> None:
    cus = client.v1.customers.create()
    params: dict[str, Any] = {
        "customer": cus.id,
        "collection_method": "send_invoice",
        "days_until_due": 30,
    }
    first = client.v1.invoices.create(params=params, options={"idempotency_key": "inv-key-1"})  # type: ignore[arg-type]
    second = client.v1.invoices.create(params=params, options={"idempotency_key": "inv-key-1"})  # type: ignore[arg-type]
    assert first.id == second.id and len(emu.invoices()) == 1
    assert first.last_response is not None and second.last_response is not None
    assert "Idempotent-Replayed" not in first.last_response.headers
    assert second.last_response.headers["Idempotent-Replayed"] == "true"
    assert second.last_response.headers["Original-Request"] == first.last_response.request_id
    log = [r for r in emu.requests() if r.idempotency_key == "inv-key-1"]
    assert [r.replayed for r in log] == [False, True]

    with pytest.raises(stripe.IdempotencyError) as exc:
        client.v1.invoices.create(
            params={**params, "days_until_due": 31},  # type: ignore[arg-type]
            options={"idempotency_key": "inv-key-1"},
        )
    assert exc.value.http_status == 400
    assert error_body(exc.value)["type"] == "idempotency_error"

    emu.expire_idempotency_keys()
    third = client.v1.invoices.create(params=params, options={"idempotency_key": "inv-key-1"})  # type: ignore[arg-type]
    assert third.id != first.id and len(emu.invoices()) == 2


def test_keys_are_scoped_per_api_key_and_validation_failures_are_not_saved(
    emu: StripeEmulator, client: stripe.StripeClient
) -> None:
    other = sdk(emu, "sk_test_other")
    a = client.v1.customers.create(options={"idempotency_key": "shared"})
    b = other.v1.customers.create(options={"idempotency_key": "shared"})
    assert a.id != b.id
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.products.create(params={}, options={"idempotency_key": "retry-me"})  # type: ignore[typeddict-item]
    ok = client.v1.products.create(
        params={"name": "fixed"}, options={"idempotency_key": "retry-me"}
    )
    assert ok.name == "fixed"


def test_concurrent_same_key_gets_409(emu: StripeEmulator) -> None:
    emu.add_fault(Fault(kind="delay", seconds=0.6, count=1, path_prefix="/v1/customers"))
    headers = {**AUTH, "Idempotency-Key": "slow-key"}
    results: list[httpx.Response] = []

    def slow() -> None:
        results.append(httpx.post(f"{emu.base_url}/v1/customers", headers=headers, data={}))

    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(0.2)
    clash = httpx.post(f"{emu.base_url}/v1/customers", headers=headers, data={})
    thread.join()
    assert clash.status_code == 409
    assert clash.json()["error"]["type"] == "idempotency_error"
    assert results[0].status_code == 200
    again = httpx.post(f"{emu.base_url}/v1/customers", headers=headers, data={})
    assert again.json()["id"] == results[0].json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"


# ------------------------------------------------------------------ rate limits and faults


def test_rate_limit_429() -> None:
    with StripeEmulator(rate_limit_per_second=2.0) as emulator:
        client = sdk(emulator)
        ok, limited = 0, []
        for _ in range(10):
            try:
                client.v1.customers.list()
                ok += 1
            except stripe.RateLimitError as exc:
                limited.append(exc)
        assert ok >= 2 and len(limited) >= 5  # burst of 2, then ~2/s refill
        err = limited[0]
        assert err.http_status == 429
        assert error_body(err)["code"] == "rate_limit"
        assert err.headers is not None
        assert err.headers["Stripe-Rate-Limited-Reason"] == "global-rate"
        assert "Retry-After" not in err.headers
        sdk(emulator, "sk_test_someone_else").v1.customers.list()  # per-key buckets
        assert sum(r.status == 429 for r in emulator.requests()) == len(limited)
        with httpx.Client() as raw:  # the admin surface is never limited
            for _ in range(5):
                assert raw.get(f"{emulator.base_url}/_emulator/requests").status_code == 200


def test_injected_status_faults(emu: StripeEmulator, client: stripe.StripeClient) -> None:
    emu.add_fault(
        Fault(kind="status", status=500, count=1, path_prefix="/v1/customers", method="POST")
    )
    with pytest.raises(stripe.APIError) as server_error:
        client.v1.customers.create(options={"idempotency_key": "k500"})
    assert server_error.value.http_status == 500
    created = client.v1.customers.create(options={"idempotency_key": "k500"})  # not saved
    assert created.last_response is not None
    assert "Idempotent-Replayed" not in created.last_response.headers

    emu.add_fault(Fault(kind="status", status=429, count=2, retry_after=1.0))
    for _ in range(2):
        with pytest.raises(stripe.RateLimitError) as limited:
            client.v1.customers.retrieve(created.id)
        assert limited.value.headers is not None and limited.value.headers["Retry-After"] == "1"
    assert client.v1.customers.retrieve(created.id).id == created.id
    assert [r.fault for r in emu.requests()].count("status") == 3


def test_drop_and_drop_after(emu: StripeEmulator, client: stripe.StripeClient) -> None:
    emu.add_fault(Fault(kind="drop", count=1, path_prefix="/v1/customers", method="POST"))
    with pytest.raises(stripe.APIConnectionError):
        client.v1.customers.create(params={"name": "dropped"}, options={"idempotency_key": "d1"})
    assert client.v1.customers.list().data == []  # not executed

    emu.add_fault(Fault(kind="drop_after", count=1, path_prefix="/v1/customers", method="POST"))
    with pytest.raises(stripe.APIConnectionError):
        client.v1.customers.create(params={"name": "lost"}, options={"idempotency_key": "d2"})
    executed = client.v1.customers.list().data
    assert [c.name for c in executed] == ["lost"]
    retried = client.v1.customers.create(params={"name": "lost"}, options={"idempotency_key": "d2"})
    assert retried.id == executed[0].id
    faults = [(r.fault, r.status) for r in emu.requests() if r.fault]
    assert faults == [("drop", 0), ("drop_after", 200)]


def test_delay_fault_slows_then_succeeds(emu: StripeEmulator, client: stripe.StripeClient) -> None:
    emu.add_fault(Fault(kind="delay", seconds=0.3, count=1))
    started = time.monotonic()
    client.v1.customers.list()
    assert time.monotonic() - started >= 0.3
    assert emu.requests()[-1].fault == "delay"
    emu.clear_faults()
    assert emu.faults() == []


# -------------------------------------------------------------------- raw wire details


def test_auth_errors(emu: StripeEmulator) -> None:
    with httpx.Client(base_url=emu.base_url) as raw:
        missing = raw.get("/v1/customers")
        assert missing.status_code == 401
        assert "You did not provide an API key" in missing.json()["error"]["message"]
        # Built at run time so no file holds something shaped like a live key.
        live_shaped = "sk_live_" + "abcdefghijkl1234"
        bad = raw.get("/v1/customers", headers={"Authorization": f"Bearer {live_shaped}"})
        assert bad.status_code == 401
        assert bad.json()["error"]["message"].startswith("Invalid API Key provided: sk_live_")
        assert "abcdefghijkl" not in bad.json()["error"]["message"]
        basic = raw.get("/v1/customers", auth=(KEY, ""))
        assert basic.status_code == 200
    with pytest.raises(stripe.AuthenticationError):
        sdk(emu, "sk_nope_123").v1.customers.list()
    with StripeEmulator(rate_limit_per_second=None, api_keys=["sk_test_only"]) as strict:
        with pytest.raises(stripe.AuthenticationError):
            sdk(strict).v1.customers.list()
        sdk(strict, "sk_test_only").v1.customers.list()


def test_wire_headers_and_unknown_urls(emu: StripeEmulator) -> None:
    with httpx.Client(base_url=emu.base_url, headers=AUTH) as raw:
        resp = raw.post(
            "/v1/customers",
            headers={"Stripe-Version": "2026-10-28.endive", "Idempotency-Key": "hdr"},
            content="metadata[a]=1&preferred_locales[]=en&preferred_locales[]=fr",
        )
        assert resp.status_code == 200
        assert resp.headers["Request-Id"].startswith("req_")
        assert resp.headers["Stripe-Version"] == "2026-10-28.endive"
        body = resp.json()
        assert body["metadata"] == {"a": "1"} and body["preferred_locales"] == ["en", "fr"]
        assert body["object"] == "customer" and body["livemode"] is False
        unknown = raw.get("/v1/nope")
        assert unknown.status_code == 404
        assert unknown.json()["error"]["message"].startswith(
            "Unrecognized request URL (GET: /v1/nope)"
        )
        wrong_method = raw.delete("/v1/invoices")
        assert wrong_method.status_code == 404
        missing = raw.get("/v1/invoices/in_missing")
        err = missing.json()["error"]
        assert missing.status_code == 404 and err["code"] == "resource_missing"
        assert err["message"] == "No such invoice: 'in_missing'"
        assert err["request_log_url"] and err["type"] == "invalid_request_error"


def test_admin_surface(emu: StripeEmulator, client: stripe.StripeClient) -> None:
    cus = client.v1.customers.create()
    draft_invoice(client, cus.id)
    with httpx.Client(base_url=emu.base_url) as raw:
        assert len(raw.get("/_emulator/invoices").json()) == 1
        fault = {"kind": "status", "status": 503, "count": 1, "path_prefix": "/v1/invoices"}
        assert raw.post("/_emulator/faults", content=json.dumps(fault)).status_code == 200
        assert raw.post("/_emulator/faults", content='{"kind": "nope"}').status_code == 400
        with pytest.raises(stripe.APIError):
            client.v1.invoices.list()
        logged = raw.get("/_emulator/requests").json()
        assert logged[-1]["status"] == 503 and logged[-1]["fault"] == "status"
        assert all(r["path"].startswith("/v1/") for r in logged)
        assert raw.delete("/_emulator/faults").status_code == 200
        assert raw.post("/_emulator/expire-idempotency-keys").status_code == 200
        assert raw.post("/_emulator/reset").status_code == 200
        assert raw.get("/_emulator/invoices").json() == []
        assert raw.get("/_emulator/requests").json() == []


def test_form_decoding() -> None:
    assert decode(
        "lines[0][metadata][k]=v&lines[0][amount]=5&lines[1][amount]=-3&expand[]=a&expand[]=b"
        "&metadata[0]=zero&x="
    ) == {
        "lines": [{"metadata": {"k": "v"}, "amount": "5"}, {"amount": "-3"}],
        "expand": ["a", "b"],
        "metadata": ["zero"],
        "x": "",
    }


def test_module_entrypoint_prints_base_url() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "billbridge.emulators.stripe", "--port", "0", "--rate-limit", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:")
        assert httpx.get(f"{base_url}/_emulator/health").json() == {"ok": True}
    finally:
        proc.terminate()
        proc.wait(timeout=10)
