"""The door refuses every invoice that cannot export, before storing anything, and a dry run
plans exactly what the export then sends (CLI, Python API and published schema agree)."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from temporalio.client import Client

from billbridge.activities.store import Store
from billbridge.core.config import Settings
from billbridge.core.messages import ExportStatus
from billbridge.core.models import invoice_json_schema
from billbridge.emulators.stripe import StripeEmulator
from billbridge.starter.door import InvalidPayload, export_invoice, parse_invoice
from billbridge.starter.samples import SampleLine, build_invoice
from conftest import StripeAccount, billbridge

LINES = [
    SampleLine("item_api_calls", "API calls", Decimal("1000"), Decimal("0.012")),
    SampleLine("item_seats", "Seats", Decimal("4"), Decimal("25.00")),
]


def _total_raised(invoice: dict[str, Any]) -> None:
    invoice["total"] = str(Decimal(invoice["total"]) + 1)
    invoice["amount_due"] = invoice["total"]


def _negative_quantity(invoice: dict[str, Any]) -> None:
    line = invoice["line_items"][1]
    line["quantity"] = "-4"  # Orb sends a number; the door reads decimal strings too


@pytest.mark.parametrize(
    ("break_it", "named"),
    [
        (_total_raised, "total: 113.00 differs from the sum of line_items[].amount"),
        (_total_raised, "by 1.00 USD"),
        (_negative_quantity, "line_items.1.quantity: -4 is negative"),
    ],
)
async def test_an_inconsistent_invoice_leaves_no_trace_and_its_fix_goes_through(
    client: Client,
    store: Store,
    worker: Settings,
    emulator: StripeEmulator,
    stripe_account: StripeAccount,
    break_it: Any,
    named: str,
) -> None:
    good = build_invoice("inv_door", "cust_1", "USD", LINES)
    bad = json.loads(json.dumps(good))
    break_it(bad)
    seeded = len(emulator.requests())

    with pytest.raises(InvalidPayload) as refused:
        await export_invoice(client, store, bad, worker.task_queue)
    assert named in str(refused.value)
    assert store.get_invoice_header("inv_door") is None
    assert emulator.requests()[seeded:] == []

    # The corrected invoice under the same id is not blocked by the refused one.
    result = await export_invoice(client, store, good, worker.task_queue)
    assert result.status == ExportStatus.EXPORTED, result.reason
    assert result.provider_total == good["total"]


def test_the_cli_refuses_it_with_the_field_and_stores_nothing(
    settings: Settings, tmp_path: Path
) -> None:
    invoice = build_invoice("inv_door_cli", "cust_1", "USD", LINES)
    _total_raised(invoice)
    path = tmp_path / "invoice.json"
    path.write_text(json.dumps(invoice))
    for args in (["export", str(path)], ["export", "--dry-run", str(path)]):
        done = billbridge(settings, *args)
        assert done.returncode == 2, done.stderr
        assert "invalid invoice: total: 113.00 differs" in done.stderr
    with Store(settings.database_url) as store:
        assert store.get_invoice_header("inv_door_cli") is None


@pytest.mark.parametrize("text", ["12.3.4", "many", "1_000", " 12.30", "1e3"])
def test_the_published_schema_refuses_what_the_door_refuses(text: str) -> None:
    schema = invoice_json_schema()
    invoice = build_invoice("inv_schema", "cust_1", "USD", LINES)
    jsonschema.validate(invoice, schema)  # a good invoice passes both
    amount = json.loads(json.dumps(invoice))
    amount["line_items"][0]["amount"] = text
    with pytest.raises(jsonschema.ValidationError, match=r"does not match|is not valid"):
        jsonschema.validate(amount, schema)
    with pytest.raises(InvalidPayload, match=r"line_items\.0\.amount"):
        parse_invoice(amount)
    quantity = json.loads(json.dumps(invoice))
    quantity["line_items"][0]["quantity"] = text
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(quantity, schema)
    with pytest.raises(InvalidPayload, match=r"line_items\.0\.quantity"):
        parse_invoice(quantity)


def _form(value: Any) -> Any:
    """A request parameter as the emulator decodes Stripe's form encoding: text leaves."""
    if isinstance(value, dict):
        return {key: _form(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_form(item) for item in value]
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


async def test_a_dry_run_writes_nothing_and_plans_exactly_what_the_export_sends(
    client: Client,
    store: Store,
    worker: Settings,
    emulator: StripeEmulator,
    stripe_account: StripeAccount,
    tmp_path: Path,
) -> None:
    # The customer is linked in the store only (no payment_provider_id): the dry run plans
    # with the customer the push will use.
    customer = store.get_customer("cust_1")
    assert customer is not None
    store.upsert_customers([customer.model_copy(update={"payment_provider_id": None})])
    store.link_customer("stripe_invoice", "cust_1", stripe_account.customer_id)
    invoice = build_invoice(
        "inv_dry", "cust_1", "USD", LINES, credits=Decimal("5.00"), balance_applied=Decimal("-3")
    )
    path = tmp_path / "invoice.json"
    path.write_text(json.dumps(invoice))
    seeded = len(emulator.requests())

    dry = billbridge(worker, "export", "--dry-run", str(path))
    assert dry.returncode == 0, dry.stderr
    planned = json.loads(dry.stdout)
    assert planned["customer"] == {"id": stripe_account.customer_id, "source": "stored link"}
    assert store.get_invoice_header("inv_dry") is None
    assert [r for r in emulator.requests()[seeded:] if r.method != "GET"] == []

    result = await export_invoice(client, store, invoice, worker.task_queue)
    assert result.status == ExportStatus.EXPORTED, result.reason
    sent = [r for r in emulator.requests()[seeded:] if r.method == "POST"]
    draft = result.external_id
    expected = [
        (
            request["path"].replace("{draft_invoice_id}", draft),
            request["idempotency_key"],
            _form(request["params"]),
        )
        for request in planned["requests"]
    ]
    assert [(r.path, r.idempotency_key, r.params) for r in sent] == expected
