"""Property: a malformed invoice is refused at the door with a message naming the offending field,
and nothing happens in between -- no row written or changed in the store, no workflow started.

Every example is a valid generated invoice (tests/billing_strategies.py) with one thing broken:
a field missing or of the wrong type, an amount that is garbage, infinite or has more decimals
than its currency, lines that do not add up, an unknown currency, text that is not Unicode or
holds NUL, or a payload that is not JSON at all.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from billing_strategies import CHARACTERS, examples, ids, invoices, one_line_invoice
from hypothesis import example, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from stores import throwaway_postgres  # noqa: F401 (the postgres_url fixture)
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from billbridge.activities.store import Store, _StoreModel
from billbridge.core.models import DECIMAL_TEXT_PATTERN
from billbridge.core.money import ISO_4217_EXPONENTS, minor_unit_exponent
from billbridge.starter.door import InvalidPayload, export_invoice, submit_invoice, upsert_customers
from billbridge.starter.samples import build_customer
from billbridge.workflows.export_invoice import workflow_id

STORED = one_line_invoice("inv_stored", "USD", "3", "36.00")

Broken = tuple[Any, str]  # (payload, what the refusal must say)


def snapshot(store: Store) -> dict[str, list[Any]]:
    """Every row of every table: what "nothing stored, nothing changed" is checked against."""
    with store._engine.connect() as connection:
        return {
            table.name: [tuple(row) for row in connection.execute(select(table))]
            for table in _StoreModel.metadata.sorted_tables
        }


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def door_store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Store]:
    """A store holding one invoice and its customer, on both databases: refused payloads must
    leave both alone."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('door') / 'billbridge.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    store = Store(url)
    upsert_customers(store, [build_customer("cust_regression")])
    submit_invoice(store, STORED)
    yield store
    store.close()


def _copy(payload: dict[str, Any]) -> dict[str, Any]:
    copied: dict[str, Any] = json.loads(json.dumps(payload))
    return copied


# --------------------------------------------------------------------------- one thing broken

HEADER_FIELDS = (
    "id invoice_number customer currency invoice_date status subtotal total amount_due line_items"
).split()
LINE_FIELDS = "id name quantity amount subtotal start_date end_date price".split()
MONEY_FIELDS = ("subtotal", "total", "amount_due")
LINE_MONEY_FIELDS = ("amount", "subtotal", "adjusted_subtotal", "credits_applied")
WRONG_TYPES = st.sampled_from(([1], {"a": 1}, None))
garbage_numbers = st.text(CHARACTERS, max_size=12).filter(
    lambda text: re.fullmatch(DECIMAL_TEXT_PATTERN, text) is None
)


def _line(draw: st.DrawFn, invoice: dict[str, Any]) -> int:
    if not invoice["line_items"]:
        invoice["line_items"].append(one_line_invoice("inv_x", "USD", "1", "0")["line_items"][0])
        invoice["line_items"][0]["amount"] = invoice["line_items"][0]["subtotal"] = "0"
        invoice["line_items"][0]["adjusted_subtotal"] = "0"
    return draw(st.integers(0, len(invoice["line_items"]) - 1))


def missing_field(draw: st.DrawFn, invoice: dict[str, Any]) -> Broken:
    if draw(st.booleans()):
        field = draw(st.sampled_from(HEADER_FIELDS))
        del invoice[field]
        return invoice, f"{field}: Field required"
    i = _line(draw, invoice)
    field = draw(st.sampled_from(LINE_FIELDS))
    del invoice["line_items"][i][field]
    return invoice, f"line_items.{i}.{field}: Field required"


def wrong_type(draw: st.DrawFn, invoice: dict[str, Any]) -> Broken:
    field = draw(st.sampled_from((*MONEY_FIELDS, "customer", "line_items", "invoice_date")))
    invoice[field] = value = draw(WRONG_TYPES)
    if field == "line_items" and isinstance(value, list):
        return invoice, "line_items.0: "  # a list, of something else than lines
    if field == "customer" and isinstance(value, dict):
        return invoice, "customer.id: Field required"  # an object, not a customer
    return invoice, f"{field}: "


def garbage_amount(draw: st.DrawFn, invoice: dict[str, Any]) -> Broken:
    text = draw(garbage_numbers)
    if draw(st.booleans()):
        field = draw(st.sampled_from(MONEY_FIELDS))
        invoice[field] = text
        return invoice, f"{field}: "
    i = _line(draw, invoice)
    field = draw(st.sampled_from((*LINE_MONEY_FIELDS, "quantity")))
    invoice["line_items"][i][field] = text
    return invoice, f"line_items.{i}.{field}: "


def non_finite_amount(draw: st.DrawFn, invoice: dict[str, Any]) -> Broken:
    """JSON text with Infinity, NaN or 1e400 (Python's json reads all three)."""
    field = draw(st.sampled_from(MONEY_FIELDS))
    invoice[field] = "__NUMBER__"
    text = json.dumps(invoice).replace('"__NUMBER__"', draw(st.sampled_from(NON_FINITE)))
    return text, f"{field}: "


NON_FINITE = ("Infinity", "-Infinity", "NaN", "1e400")


def too_many_decimals(draw: st.DrawFn, invoice: dict[str, Any]) -> Broken:
    exponent = minor_unit_exponent(invoice["currency"])
    text = f"{draw(st.integers(0, 10**6))}.{'0' * exponent}{draw(st.integers(1, 9))}"
    if draw(st.booleans()):
        field = draw(st.sampled_from(MONEY_FIELDS))
        invoice[field] = text
        return invoice, f"{field}: amount {text} is not representable"
    i = _line(draw, invoice)
    field = draw(st.sampled_from(LINE_MONEY_FIELDS))
    invoice["line_items"][i][field] = text
    return invoice, f"line_items.{i}.{field}: amount {text} is not representable"


def unknown_currency(draw: st.DrawFn, invoice: dict[str, Any]) -> Broken:
    invoice["currency"] = draw(
        st.text(CHARACTERS, max_size=5).filter(
            lambda code: code.strip().upper() not in ISO_4217_EXPONENTS
        )
    )
    return invoice, "currency: unknown currency"


def lines_do_not_add_up(draw: st.DrawFn, invoice: dict[str, Any]) -> Broken:
    """A total no line, tax or invoice-level discount, minimum or maximum explains."""
    for explanation in ("discounts", "minimum", "maximum"):
        invoice.pop(explanation, None)
    lines = sum((Decimal(line["amount"]) for line in invoice["line_items"]), Decimal(0))
    taxes = sum(
        (Decimal(t["amount"]) for line in invoice["line_items"] for t in line["tax_amounts"]),
        Decimal(0),
    )
    step = Decimal(1).scaleb(-minor_unit_exponent(invoice["currency"]))
    residual = draw(st.integers(-(10**6), 10**6).filter(lambda n: n != 0)) * step
    if residual == taxes:
        residual += step
    invoice["total"] = format(lines + residual, "f")
    return invoice, "total: "


def line_does_not_add_up(draw: st.DrawFn, invoice: dict[str, Any]) -> Broken:
    i = _line(draw, invoice)
    step = Decimal(1).scaleb(-minor_unit_exponent(invoice["currency"]))
    line = invoice["line_items"][i]
    line["amount"] = format(Decimal(line["amount"]) + draw(st.integers(1, 10**6)) * step, "f")
    return invoice, f"line_items.{i}.amount: "


def negative_quantity_positive_subtotal(draw: st.DrawFn, invoice: dict[str, Any]) -> Broken:
    i = _line(draw, invoice)
    line = invoice["line_items"][i]
    line["quantity"] = f"-{draw(st.integers(1, 10**6))}"
    line["subtotal"] = "1"
    return invoice, f"line_items.{i}.quantity: "


def duplicate_line_id(draw: st.DrawFn, invoice: dict[str, Any]) -> Broken:
    lines = invoice["line_items"]
    lines.append({**lines[_line(draw, invoice)]})
    return invoice, f"line_items.{len(lines) - 1}.id: duplicate line item id"


def bad_text(draw: st.DrawFn, invoice: dict[str, Any]) -> Broken:
    """A lone surrogate (JSON can escape one: "\\ud800") or a NUL somewhere in the text."""
    bad = draw(st.sampled_from(("\ud800", "\udfff", "\x00")))
    i = _line(draw, invoice)
    where: tuple[str | int, ...] = draw(
        st.sampled_from(
            (
                ("id",),
                ("invoice_number",),
                ("memo",),
                ("customer", "id"),
                ("line_items", i, "id"),
                ("line_items", i, "name"),
                ("line_items", i, "price", "item", "id"),
                ("metadata", "note"),
            )
        )
    )
    holder: Any = invoice
    for part in where[:-1]:
        holder = holder[part]
    holder[where[-1]] = f"{draw(ids)}{bad}{draw(st.text(CHARACTERS, max_size=3))}"
    # Sent as JSON text (the escape) or as a Python dict.
    payload = json.dumps(invoice) if draw(st.booleans()) else invoice
    named = ".".join(str(part) for part in where)
    return payload, f"{named}: {'NUL' if bad == chr(0) else 'lone surrogate'}"


def not_json(draw: st.DrawFn, invoice: dict[str, Any]) -> Broken:
    text = json.dumps(invoice)
    cut = draw(st.integers(0, len(text) - 1))
    if draw(st.booleans()):
        return text[:cut], "not JSON"
    # Bytes that are not UTF-8 (a Latin-1 file, a stray byte).
    raw = text.encode()
    return raw[:cut] + draw(st.sampled_from((b"\xff", b"\xc3(", b"\xe9"))) + raw[cut:], "UTF-8"


BREAKAGES: tuple[Callable[[st.DrawFn, dict[str, Any]], Broken], ...] = (
    missing_field,
    wrong_type,
    garbage_amount,
    non_finite_amount,
    too_many_decimals,
    unknown_currency,
    lines_do_not_add_up,
    line_does_not_add_up,
    negative_quantity_positive_subtotal,
    duplicate_line_id,
    bad_text,
    not_json,
)


@st.composite
def malformed_invoices(draw: st.DrawFn) -> Broken:
    invoice = _copy(draw(invoices(max_lines=4)))
    if draw(st.integers(0, 3)) == 0:
        invoice["id"] = STORED["id"]  # a broken resubmission of a stored invoice
    breakage = draw(st.sampled_from(BREAKAGES))
    return breakage(draw, invoice)


def _with(changes: dict[str, Any], line: dict[str, Any] | None = None) -> dict[str, Any]:
    invoice = {**one_line_invoice("inv_found", "USD", "3", "36.00"), **changes}
    invoice["line_items"] = [{**invoice["line_items"][0], **(line or {})}]
    return invoice


@settings(max_examples=examples(150))
@given(broken=malformed_invoices())
# Found by this property: a lone surrogate (JSON "\ud800") passed the door and crashed the store
# with UnicodeEncodeError; so did bytes in another encoding than UTF-8; a NUL in an id passed it
# and crashed PostgreSQL with DataError.
@example(broken=(_with({}, {"name": "Usage \ud800"}), "line_items.0.name: lone surrogate"))
@example(broken=(json.dumps(_with({"memo": "\udfff"})), "memo: lone surrogate"))
@example(
    broken=(json.dumps(_with({"memo": "café"}), ensure_ascii=False).encode("latin-1"), "UTF-8")
)
@example(broken=(_with({"id": "inv\x00"}), "id: NUL"))
def test_a_malformed_invoice_is_refused_naming_the_field_and_nothing_is_stored(
    door_store: Store, broken: Broken
) -> None:
    payload, named = broken
    before = snapshot(door_store)
    with pytest.raises(InvalidPayload) as refused:
        submit_invoice(door_store, payload)
    message = str(refused.value)
    assert message.startswith("invalid invoice: ")
    assert named in message, message
    message.encode()  # printable: no lone surrogate of the payload is echoed back
    assert snapshot(door_store) == before


@pytest.mark.parametrize("bad", ["\ud800", "\x00"])
def test_a_customer_with_text_no_store_keeps_is_refused(door_store: Store, bad: str) -> None:
    before = snapshot(door_store)
    customer = build_customer("cust_text", name=f"Acme{bad}")
    with pytest.raises(InvalidPayload, match=r"invalid customer at \[1\]: name: "):
        upsert_customers(door_store, [build_customer("cust_fine"), customer])
    assert snapshot(door_store) == before


# --------------------------------------------------------------------------- through the entrance

BROKEN_AT_THE_ENTRANCE: dict[str, Callable[[dict[str, Any]], None]] = {
    "line amount missing": lambda invoice: invoice["line_items"][0].pop("amount"),
    "total not the lines'": lambda invoice: invoice.update(total="37.00"),
    "lone surrogate": lambda invoice: invoice["line_items"][0].update(name="Usage \ud800"),
}


@pytest.mark.parametrize("break_it", BROKEN_AT_THE_ENTRANCE.values(), ids=BROKEN_AT_THE_ENTRANCE)
async def test_the_entrance_refuses_it_without_starting_a_workflow(
    client: Client, tmp_path: Path, break_it: Callable[[dict[str, Any]], None]
) -> None:
    """export_invoice (validate, store, start, wait) against the dev server: no worker is
    needed, because nothing may get as far as a workflow."""
    with Store(f"sqlite:///{tmp_path / 'billbridge.db'}") as store:
        payload = one_line_invoice("inv_entrance", "USD", "3", "36.00")
        break_it(payload)
        before = snapshot(store)
        with pytest.raises(InvalidPayload):
            await export_invoice(client, store, payload, "no-worker-listens-here")
        assert snapshot(store) == before
    with pytest.raises(RPCError) as missing:
        await client.get_workflow_handle(workflow_id("inv_entrance")).describe()
    assert missing.value.status == RPCStatusCode.NOT_FOUND
