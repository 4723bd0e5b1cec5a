"""Orb models, money helpers and settings (billbridge.core)."""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import orb
import pydantic
import pytest

from billbridge.core.config import Settings
from billbridge.core.models import (
    EXPORTABLE_PROVIDERS,
    Customer,
    Invoice,
    InvoiceIssuedWebhook,
    LineItem,
    format_validation_error,
    invoice_json_schema,
    parse_invoice_payload,
)
from billbridge.core.money import (
    InexactAmountError,
    UnknownCurrencyError,
    format_amount,
    from_minor,
    is_representable,
    minor_unit_exponent,
    round_to_minor,
    to_minor,
)
from billbridge.core.providers import PROVIDER_ENTRIES
from billbridge.starter.samples import (
    LineDiscount,
    SampleLine,
    build_customer,
    build_invoice,
    build_invoice_issued_event,
    demo_catalog,
    demo_customers,
    large_invoice,
)

D = Decimal


def _spec(key: str) -> dict[str, Any]:
    return next(s for s in demo_catalog() if s.key == key).build()


def _errors(exc: pytest.ExceptionInfo[pydantic.ValidationError]) -> dict[str, str]:
    return {".".join(map(str, e["loc"])): e["msg"] for e in exc.value.errors()}


# --------------------------------------------------------------------------- money


@pytest.mark.parametrize(
    ("currency", "exponent"),
    [
        ("USD", 2),
        ("usd", 2),
        ("EUR", 2),
        ("GBP", 2),
        ("JPY", 0),
        ("krw", 0),
        ("XOF", 0),
        ("UYI", 0),
        ("KWD", 3),
        ("BHD", 3),
        ("TND", 3),
        ("CLF", 4),
        ("UYW", 4),
        ("CHF", 2),
    ],
)
def test_minor_unit_exponent(currency: str, exponent: int) -> None:
    assert minor_unit_exponent(currency) == exponent


@pytest.mark.parametrize("currency", ["XYZ", "", "credits", "XAU", "US", "usd "[:2]])
def test_unknown_currency(currency: str) -> None:
    with pytest.raises(UnknownCurrencyError) as info:
        minor_unit_exponent(currency)
    assert isinstance(info.value, ValueError)


def test_to_minor_exact() -> None:
    assert to_minor(D("12.30"), "USD") == 1230
    assert to_minor(D("-0.01"), "USD") == -1
    assert to_minor(D("10.00"), "JPY") == 10
    assert to_minor(D("10"), "JPY") == 10
    assert to_minor(D("15.185"), "KWD") == 15185
    assert to_minor(D("1.5"), "KWD") == 1500
    assert to_minor(D("0"), "CLF") == 0
    big = D("123456789012345678901234567890.12")
    assert to_minor(big, "USD") == 12345678901234567890123456789012


@pytest.mark.parametrize(
    ("amount", "currency", "allowed"),
    [
        ("10.50", "JPY", "no decimals"),
        ("0.001", "USD", "at most 2 decimals"),
        ("1.2345", "KWD", "at most 3 decimals"),
    ],
)
def test_to_minor_inexact(amount: str, currency: str, allowed: str) -> None:
    with pytest.raises(InexactAmountError) as info:
        to_minor(D(amount), currency)
    message = str(info.value)
    assert amount in message and currency in message and allowed in message
    assert isinstance(info.value, ValueError)
    assert not is_representable(D(amount), currency)


def test_from_minor_and_helpers() -> None:
    assert str(from_minor(1230, "USD")) == "12.30"
    assert str(from_minor(0, "USD")) == "0.00"
    assert str(from_minor(5, "JPY")) == "5"
    assert str(from_minor(-1, "KWD")) == "-0.001"
    assert from_minor(to_minor(D("99.99"), "EUR"), "EUR") == D("99.99")
    assert is_representable(D("1.2340"), "KWD")
    assert not is_representable(D("NaN"), "USD")
    with pytest.raises(UnknownCurrencyError):
        is_representable(D("1"), "ZZZ")
    assert round_to_minor(D("15.1851741"), "USD") == D("15.19")
    assert round_to_minor(D("0.005"), "USD") == D("0.01")
    assert round_to_minor(D("-0.005"), "USD") == D("-0.01")
    assert round_to_minor(D("3703.5"), "JPY") == D("3704")
    assert format_amount(D("12.3"), "USD") == "12.30"
    assert format_amount(D("1E+3"), "JPY") == "1000"
    with pytest.raises(ValueError, match="finite"):
        to_minor(D("Infinity"), "USD")


# --------------------------------------------------------------------------- parsing


def test_parse_realistic_invoice() -> None:
    payload = _spec("usd-usage")
    invoice = Invoice.model_validate(payload)
    assert invoice.id == "inv_demo_usd_usage"
    assert invoice.customer.id == "cust_acme_usd"
    assert invoice.customer.external_customer_id == "ext-cust_acme_usd"
    assert invoice.status == "issued"
    assert invoice.currency == "USD"
    assert invoice.invoice_date.tzinfo is not None
    assert invoice.due_date is not None and (invoice.due_date - invoice.invoice_date).days == 30
    assert isinstance(invoice.total, Decimal) and invoice.total == D("169.61")
    assert invoice.amount_due == invoice.total
    assert invoice.metadata == {} and invoice.discounts == [] and invoice.minimum is None
    storage = invoice.line_items[0]
    assert storage.quantity == D("1234.567")
    assert storage.subtotal == D("15.19") and storage.amount == D("15.19")
    assert storage.adjusted_subtotal == D("15.19")
    assert storage.credits_applied == D("0.00")
    assert storage.price.item.id == "item_storage_gb"
    assert storage.price.item.name == "Storage (GB-month)"
    assert storage.start_date < storage.end_date
    assert storage.price.model_extra is not None
    assert storage.price.model_extra["model_type"] == "unit"
    assert storage.price.model_extra["unit_config"]["unit_amount"] == "0.0123"


def test_money_serializes_back_as_strings_quantities_as_numbers() -> None:
    invoice = Invoice.model_validate(_spec("usd-usage"))
    dumped = invoice.model_dump(mode="json")
    assert dumped["total"] == "169.61"
    assert dumped["line_items"][0]["amount"] == "15.19"
    assert dumped["line_items"][0]["quantity"] == 1234.567
    assert dumped["line_items"][3]["quantity"] == 1
    assert Invoice.model_validate(dumped) == invoice
    assert Invoice.model_validate_json(invoice.model_dump_json()) == invoice


def test_jpy_and_kwd_minor_units() -> None:
    jpy = Invoice.model_validate(_spec("jpy-usage"))
    assert jpy.exponent == 0
    for line in jpy.line_items:
        assert line.amount == line.amount.to_integral_value()
        to_minor(line.amount, "JPY")
    assert to_minor(jpy.total, jpy.currency) == int(jpy.total)
    kwd = Invoice.model_validate(_spec("kwd-usage"))
    assert kwd.exponent == 3
    assert kwd.line_items[0].subtotal == D("15.185")  # 1234.567 * 0.0123 = 15.1851741
    assert to_minor(kwd.total, "KWD") == 63440
    assert kwd.model_dump(mode="json")["total"] == "63.440"


def test_line_discount_credits_and_balance_fields() -> None:
    inv = Invoice.model_validate(_spec("usd-discount-credits"))
    line = inv.line_items[0]
    assert line.adjustments[0].adjustment_type == "percentage_discount"
    assert line.adjustments[0].amount < 0
    assert line.adjusted_subtotal == line.subtotal + line.adjustments[0].amount
    assert sum(li.credits_applied for li in inv.line_items) == D("75.00")
    bal = Invoice.model_validate(_spec("usd-balance"))
    txn = bal.customer_balance_transactions[0]
    assert txn.action == "applied_to_invoice" and txn.amount == D("-25.00")
    assert bal.balance_applied == D("-25.00")
    assert bal.amount_due == bal.total + txn.amount


def test_adjusted_subtotal_defaults_to_subtotal() -> None:
    payload = _spec("usd-seats")
    del payload["line_items"][0]["adjusted_subtotal"]
    invoice = Invoice.model_validate(payload)
    line = invoice.line_items[0]
    assert line.adjusted_subtotal == line.subtotal == line.effective_adjusted_subtotal


def test_unknown_fields_are_kept_and_round_trip() -> None:
    payload = _spec("usd-discount-credits")
    payload["brand_new_field"] = {"nested": [1, "two"]}
    payload["line_items"][0]["x_line_extra"] = "kept"
    payload["line_items"][0]["price"]["x_price_extra"] = 3
    payload["line_items"][0]["adjustments"][0]["x_adj_extra"] = True
    payload["customer"]["x_customer_extra"] = None
    invoice = Invoice.model_validate(payload)
    assert invoice.model_extra is not None
    assert invoice.model_extra["brand_new_field"] == {"nested": [1, "two"]}
    dumped = invoice.model_dump(mode="json")
    assert dumped["brand_new_field"] == {"nested": [1, "two"]}
    assert dumped["line_items"][0]["x_line_extra"] == "kept"
    assert dumped["line_items"][0]["price"]["x_price_extra"] == 3
    assert dumped["line_items"][0]["adjustments"][0]["x_adj_extra"] is True
    assert dumped["line_items"][0]["adjustments"][0]["percentage_discount"] == 0.1
    assert "x_customer_extra" in dumped["customer"]
    assert Invoice.model_validate(json.loads(json.dumps(dumped))) == invoice


def test_webhook_envelope_and_parse_helper() -> None:
    payload = _spec("eur-vat")
    event = build_invoice_issued_event(payload)
    parsed = InvoiceIssuedWebhook.model_validate(event)
    assert parsed.type == "invoice.issued"
    assert parsed.invoice.id == payload["id"]
    assert parse_invoice_payload(event) == parsed.invoice
    assert parse_invoice_payload(payload) == parsed.invoice
    assert parse_invoice_payload(json.dumps(event)) == parsed.invoice
    assert parse_invoice_payload(json.dumps(payload).encode()) == parsed.invoice
    with pytest.raises(pydantic.ValidationError) as info:
        parse_invoice_payload({**event, "invoice": {**payload, "total": "x"}})
    assert "invoice.total" in _errors(info)


# --------------------------------------------------------------------------- errors


def test_missing_customer_id_names_the_field() -> None:
    payload = _spec("usd-usage")
    del payload["customer"]["id"]
    with pytest.raises(pydantic.ValidationError) as info:
        Invoice.model_validate(payload)
    assert _errors(info) == {"customer.id": "Field required"}
    assert format_validation_error(info.value) == "customer.id: Field required"


def test_bad_amount_string_names_the_field() -> None:
    payload = _spec("usd-usage")
    payload["line_items"][2]["amount"] = "12,50"
    with pytest.raises(pydantic.ValidationError) as info:
        Invoice.model_validate(payload)
    assert list(_errors(info)) == ["line_items.2.amount"]
    text = format_validation_error(info.value)
    assert text == "line_items.2.amount: '12,50' is not a decimal number written like 12.30"


@pytest.mark.parametrize("bad", ["NaN", "Infinity"])
def test_non_finite_amount_rejected(bad: str) -> None:
    payload = _spec("usd-usage")
    payload["total"] = bad
    with pytest.raises(pydantic.ValidationError) as info:
        Invoice.model_validate(payload)
    assert list(_errors(info)) == ["total"]


def test_inexact_jpy_amount_names_the_line() -> None:
    payload = _spec("jpy-usage")
    payload["line_items"][0]["amount"] = "10.50"
    with pytest.raises(pydantic.ValidationError) as info:
        Invoice.model_validate(payload)
    errors = info.value.errors()
    assert [e["loc"] for e in errors] == [("line_items", 0, "amount")]
    assert errors[0]["type"] == "inexact_amount"
    assert format_validation_error(info.value) == (
        "line_items.0.amount: amount 10.50 is not representable in JPY: JPY allows no decimals"
    )


def test_trailing_zero_jpy_amount_is_fine() -> None:
    payload = _spec("jpy-usage")
    line = payload["line_items"][0]
    line["amount"] = line["amount"] + ".00"
    invoice = Invoice.model_validate(payload)
    assert to_minor(invoice.line_items[0].amount, "JPY") == int(line["amount"][:-3])


def test_every_money_field_is_checked_with_its_location() -> None:
    payload = _spec("kwd-discount-balance")
    payload["subtotal"] = "1.0001"
    payload["total"] = "1.00001"
    payload["amount_due"] = "0.0001"
    line = payload["line_items"][1]
    for name in (
        "amount",
        "subtotal",
        "adjusted_subtotal",
        "credits_applied",
        "partially_invoiced_amount",
    ):
        line[name] = "0.0005"
    line["adjustments"][0]["amount"] = "-0.0001"
    line["tax_amounts"] = [
        {
            "amount": "0.1234",
            "tax_rate_description": "VAT",
            "tax_rate_percentage": "5",
            "tax_reason": "taxed",
        }
    ]
    payload["customer_balance_transactions"][0]["amount"] = "-1.1055"
    with pytest.raises(pydantic.ValidationError) as info:
        Invoice.model_validate(payload)
    locs = set(_errors(info))
    assert locs == {
        "subtotal",
        "total",
        "amount_due",
        "line_items.1.amount",
        "line_items.1.subtotal",
        "line_items.1.adjusted_subtotal",
        "line_items.1.credits_applied",
        "line_items.1.partially_invoiced_amount",
        "line_items.1.adjustments.0.amount",
        "line_items.1.tax_amounts.0.amount",
        "customer_balance_transactions.0.amount",
    }
    assert all("allows at most 3 decimals" in msg for msg in _errors(info).values())
    assert len(format_validation_error(info.value).splitlines()) == len(locs)


def test_unknown_currency_names_the_field() -> None:
    payload = _spec("usd-usage")
    payload["currency"] = "credits"
    with pytest.raises(pydantic.ValidationError) as info:
        Invoice.model_validate(payload)
    assert list(_errors(info)) == ["currency"]
    assert format_validation_error(info.value).startswith("currency: unknown currency 'credits'")


def test_duplicate_line_id_names_the_line() -> None:
    payload = _spec("usd-usage")
    payload["line_items"][3]["id"] = payload["line_items"][1]["id"]
    with pytest.raises(pydantic.ValidationError) as info:
        Invoice.model_validate(payload)
    assert list(_errors(info)) == ["line_items.3.id"]
    assert "already used by line_items.1" in format_validation_error(info.value)


def test_error_locations_nest_under_the_webhook_envelope() -> None:
    payload = _spec("jpy-usage")
    payload["line_items"][1]["subtotal"] = "1.5"
    with pytest.raises(pydantic.ValidationError) as info:
        InvoiceIssuedWebhook.model_validate(build_invoice_issued_event(payload))
    assert list(_errors(info)) == ["invoice.line_items.1.subtotal"]


def test_customer_model_and_payment_provider() -> None:
    raw = build_customer("cus_1", payment_provider="netsuite", payment_provider_id="123")
    raw["x_extra"] = {"a": 1}
    customer = Customer.model_validate(raw)
    assert customer.payment_provider == "netsuite" and customer.exports_invoices
    assert customer.model_dump(mode="json")["x_extra"] == {"a": 1}
    assert Customer.model_validate({**raw, "payment_provider": None}).payment_provider is None
    charge = Customer.model_validate({**raw, "payment_provider": "stripe_charge"})
    assert not charge.exports_invoices
    assert EXPORTABLE_PROVIDERS == {"stripe_invoice", "quickbooks", "bill.com", "netsuite"}
    with pytest.raises(pydantic.ValidationError) as info:
        Customer.model_validate({**raw, "payment_provider": "xero"})
    assert list(_errors(info)) == ["payment_provider"]
    line = format_validation_error(info.value)
    assert line.startswith("payment_provider: Input should be ") and "(got 'xero')" in line


def test_invoice_json_schema() -> None:
    schema = invoice_json_schema()
    json.dumps(schema)
    assert {"id", "customer", "currency", "line_items", "total", "amount_due"} <= set(
        schema["required"]
    )
    assert "customer_balance_transactions" in schema["properties"]
    assert "LineItem" in schema["$defs"]


# --------------------------------------------------------------------------- SDK parity


def _extra_fields(value: object, path: str = "$") -> list[str]:
    """Paths of fields the SDK model did not declare (i.e. not real Orb fields)."""
    found: list[str] = []
    if isinstance(value, pydantic.BaseModel):
        found += [f"{path}.{name}" for name in (value.model_extra or {})]
        for name in type(value).model_fields:
            found += _extra_fields(getattr(value, name), f"{path}.{name}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += _extra_fields(item, f"{path}[{i}]")
    return found


def _sample_payloads() -> list[tuple[str, dict[str, Any]]]:
    payloads = [(spec.key, spec.build()) for spec in demo_catalog()]
    payloads.append(("large-usd", large_invoice("inv_large_usd", "cus_large", 120)))
    payloads.append(("large-jpy", large_invoice("inv_large_jpy", "cus_large", 40, "JPY")))
    payloads.append(("large-kwd", large_invoice("inv_large_kwd", "cus_large", 40, "KWD")))
    payloads.append(
        (
            "amount-discount-all-kinds",
            build_invoice(
                "inv_kinds",
                "cus_kinds",
                "GBP",
                [
                    SampleLine("item_a", "A", D("3"), D("9.99")),
                    SampleLine("item_b", "B", D("0.5"), D("2")),
                ],
                line_discount=LineDiscount(amount=D("5")),
                credits=D("1.23"),
                invoice_discount=D("1"),
                minimum=D("100"),
                tax_rate=D("20"),
                balance_applied=D("-10"),
            ),
        )
    )
    return payloads


@pytest.mark.parametrize(
    ("key", "payload"), _sample_payloads(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_samples_are_valid_orb_invoices(key: str, payload: dict[str, Any]) -> None:
    sdk_invoice = orb.types.Invoice.model_validate(copy.deepcopy(payload))
    assert _extra_fields(sdk_invoice) == [], "fixture uses fields Orb's Invoice does not have"
    assert sdk_invoice.total == payload["total"]
    ours = Invoice.model_validate(payload)
    # what billbridge stores and re-reads is still a valid Orb invoice
    sdk_again = orb.types.Invoice.model_validate(ours.model_dump(mode="json"))
    assert sdk_again.amount_due == payload["amount_due"]
    assert [li.amount for li in sdk_again.line_items] == [
        li["amount"] for li in payload["line_items"]
    ]


def test_sample_customers_and_event_are_valid_orb_objects() -> None:
    for raw in demo_customers():
        sdk_customer = orb.types.Customer.model_validate(raw)
        assert _extra_fields(sdk_customer) == []
        assert Customer.model_validate(raw).payment_provider in {e.name for e in PROVIDER_ENTRIES}
    event = build_invoice_issued_event(_spec("gbp-vat"))
    sdk_event = orb.types.InvoiceIssuedWebhookEvent.model_validate(event)
    assert _extra_fields(sdk_event) == []


def test_line_item_alone() -> None:
    raw = _spec("usd-usage")["line_items"][0]
    line = LineItem.model_validate(raw)
    assert line.tax_total == 0
    assert LineItem.model_validate_json(line.model_dump_json()) == line


# --------------------------------------------------------------------------- settings


def test_settings_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings.from_env({})
    assert settings.temporal_address is None and settings.uses_embedded_temporal
    assert settings.temporal_namespace == "default"
    assert settings.data_dir == tmp_path.resolve() / ".data"
    assert settings.database_url == f"sqlite:///{tmp_path.resolve()}/.data/billbridge.db"
    assert settings.stripe_api_key == "sk_test_billbridge_emulator"
    assert settings.stripe_api_base is None and settings.uses_stripe_emulator
    assert settings.task_queue == "billbridge-export"
    assert settings.log_level == "INFO"


def test_settings_from_env(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "TEMPORAL_ADDRESS": "temporal:7233",
            "TEMPORAL_NAMESPACE": "billing",
            "BILLBRIDGE_DATA_DIR": str(tmp_path / "d"),
            "DATABASE_URL": "postgresql://u@db/billbridge",
            "STRIPE_API_KEY": "sk_test_x",
            "STRIPE_API_BASE": "http://127.0.0.1:12111",
            "BILLBRIDGE_TASK_QUEUE": "q",
            "BILLBRIDGE_LOG_LEVEL": "debug",
        }
    )
    assert settings == Settings(
        temporal_address="temporal:7233",
        temporal_namespace="billing",
        data_dir=tmp_path / "d",
        database_url="postgresql://u@db/billbridge",
        stripe_api_key="sk_test_x",
        stripe_api_base="http://127.0.0.1:12111",
        task_queue="q",
        log_level="DEBUG",
    )
    derived = Settings.from_env({"BILLBRIDGE_DATA_DIR": str(tmp_path), "TEMPORAL_ADDRESS": ""})
    assert derived.database_url == f"sqlite:///{tmp_path}/billbridge.db"
    assert derived.temporal_address is None
    with pytest.raises(ValueError, match="log level"):
        Settings.from_env({"BILLBRIDGE_LOG_LEVEL": "loud"})
    with pytest.raises(AttributeError):
        settings.task_queue = "other"  # type: ignore[misc]
