"""Store on SQLite (file) and PostgreSQL (throwaway database, psycopg 3)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from stores import (  # noqa: F401 (fixtures)
    both_database_urls,
    both_databases_store,
    drop_all,
    throwaway_postgres,
)

from billbridge.activities.store import (
    AttemptRow,
    ConnectionRow,
    ExportRow,
    InvoiceConflictError,
    Store,
    normalize_database_url,
)
from billbridge.core.models import Customer, Invoice
from billbridge.starter.samples import build_customer, demo_catalog, large_invoice


def _spec_invoice(key: str) -> Invoice:
    return Invoice.model_validate(next(s for s in demo_catalog() if s.key == key).build())


# --------------------------------------------------------------------------- basics


def test_normalize_database_url() -> None:
    assert normalize_database_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_database_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_database_url("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_database_url("sqlite:///x.db") == "sqlite:///x.db"


def test_sqlite_creates_parent_dir_and_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "bb.db"
    with Store(f"sqlite:///{path}") as s:
        assert path.exists()
        with s._engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000


def test_in_memory_sqlite() -> None:
    with Store("sqlite://") as s:
        assert s.save_invoice(_spec_invoice("usd-seats"))
        assert s.get_invoice_header("inv_demo_usd_seats") is not None


def test_unsupported_database() -> None:
    with pytest.raises(ValueError, match="unsupported database"):
        Store("mysql://u@h/db")


# --------------------------------------------------------------------------- invoices


def test_save_and_read_invoice(store: Store) -> None:
    invoice = _spec_invoice("usd-discount-credits")
    assert store.save_invoice(invoice) is True
    header = store.get_invoice_header(invoice.id)
    assert header is not None
    assert header.line_items == []
    assert header == invoice.model_copy(update={"line_items": []})
    assert header.total == invoice.total and isinstance(header.total, Decimal)
    assert store.get_invoice_line_count(invoice.id) == len(invoice.line_items) == 3
    assert store.get_invoice_lines(invoice.id, 0, 10) == invoice.line_items
    assert store.get_invoice_lines(invoice.id, 1, 1) == invoice.line_items[1:2]
    assert store.get_invoice_lines(invoice.id, 3, 10) == []
    assert store.get_invoice_lines(invoice.id, 0, 0) == []
    with pytest.raises(ValueError):
        store.get_invoice_lines(invoice.id, -1, 10)


def test_unknown_invoice(store: Store) -> None:
    assert store.get_invoice_header("nope") is None
    assert store.get_invoice_line_count("nope") is None
    assert store.get_invoice_lines("nope", 0, 100) == []


def test_unknown_fields_survive_storage(store: Store) -> None:
    payload = next(s for s in demo_catalog() if s.key == "kwd-usage").build()
    payload["x_new_header_field"] = {"a": [1, 2]}
    payload["line_items"][0]["x_new_line_field"] = "kept"
    invoice = Invoice.model_validate(payload)
    store.save_invoice(invoice)
    header = store.get_invoice_header(invoice.id)
    assert header is not None and header.model_extra == {"x_new_header_field": {"a": [1, 2]}} | {
        k: v for k, v in (invoice.model_extra or {}).items() if k != "x_new_header_field"
    }
    line = store.get_invoice_lines(invoice.id, 0, 1)[0]
    assert line.model_extra is not None and line.model_extra["x_new_line_field"] == "kept"
    assert str(line.amount) == payload["line_items"][0]["amount"]  # "15.185" KWD


def test_resave_identical_is_a_no_op(store: Store) -> None:
    invoice = _spec_invoice("jpy-usage")
    assert store.save_invoice(invoice) is True
    assert store.save_invoice(invoice) is False
    assert store.save_invoice(Invoice.model_validate(invoice.model_dump(mode="json"))) is False
    # lifecycle fields Orb changes after issuing do not make it a different invoice
    synced = invoice.model_copy(update={"status": "synced", "sync_failed_at": None})
    assert store.save_invoice(synced) is False
    header = store.get_invoice_header(invoice.id)
    assert header is not None and header.status == "issued"  # the first copy is kept
    assert store.get_invoice_line_count(invoice.id) == len(invoice.line_items)


def test_resave_different_content_conflicts(store: Store) -> None:
    invoice = _spec_invoice("usd-usage")
    store.save_invoice(invoice)
    changed_total = invoice.model_copy(update={"total": invoice.total + 1})
    with pytest.raises(InvoiceConflictError) as info:
        store.save_invoice(changed_total)
    assert info.value.invoice_id == invoice.id
    assert "immutable" in str(info.value)
    lines = list(invoice.line_items)
    lines[2] = lines[2].model_copy(update={"name": "renamed"})
    with pytest.raises(InvoiceConflictError):
        store.save_invoice(invoice.model_copy(update={"line_items": lines}))
    with pytest.raises(InvoiceConflictError):
        store.save_invoice(invoice.model_copy(update={"line_items": invoice.line_items[:-1]}))
    assert store.get_invoice_lines(invoice.id, 0, 100) == invoice.line_items


def test_invoice_without_lines(store: Store) -> None:
    invoice = _spec_invoice("usd-tiny").model_copy(update={"line_items": []})
    assert store.save_invoice(invoice)
    assert store.get_invoice_line_count(invoice.id) == 0
    assert store.save_invoice(invoice) is False


def test_ten_thousand_lines(store: Store) -> None:
    invoice = Invoice.model_validate(large_invoice("inv_10k", "cus_big", 10_000))
    started = time.perf_counter()
    assert store.save_invoice(invoice) is True
    elapsed = time.perf_counter() - started
    assert elapsed < 5.0, f"saving 10,000 lines took {elapsed:.2f}s"
    assert store.get_invoice_line_count(invoice.id) == 10_000
    started = time.perf_counter()
    read: list[str] = []
    offset = 0
    while page := store.get_invoice_lines(invoice.id, offset, 1_000):
        read.extend(line.id for line in page)
        offset += len(page)
    assert time.perf_counter() - started < 5.0
    assert read == [line.id for line in invoice.line_items]
    assert store.get_invoice_lines(invoice.id, 9_990, 1_000) == invoice.line_items[9_990:]
    assert store.get_invoice_lines(invoice.id, 4_321, 3) == invoice.line_items[4_321:4_324]
    started = time.perf_counter()
    assert store.save_invoice(invoice) is False
    assert time.perf_counter() - started < 5.0


def test_concurrent_saves_of_the_same_invoice(store: Store, database_url: str) -> None:
    invoice = _spec_invoice("eur-vat")
    other = Store(database_url)
    results: list[bool] = []
    errors: list[BaseException] = []

    def save(s: Store) -> None:
        try:
            results.append(s.save_invoice(invoice))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=save, args=(s,)) for s in (store, other, store, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    other.close()
    assert errors == []
    assert sorted(results) == [False, False, False, True]
    assert store.get_invoice_line_count(invoice.id) == len(invoice.line_items)


def test_second_store_on_same_database_sees_writes(store: Store, database_url: str) -> None:
    with Store(database_url) as cli:
        store.upsert_export("inv_a", "stripe", status="exporting")
        row = cli.get_export("inv_a", "stripe")
        assert row is not None and row.status == "exporting"
        cli.upsert_export("inv_a", "stripe", status="exported")
    row = store.get_export("inv_a", "stripe")
    assert row is not None and row.status == "exported"


# --------------------------------------------------------------------------- customers


def test_customers(store: Store) -> None:
    a = Customer.model_validate(build_customer("cus_a", payment_provider_id="cus_stripe_a"))
    raw_b = build_customer("cus_b", payment_provider="quickbooks", currency="EUR")
    raw_b["x_extra"] = [1]
    b = Customer.model_validate(raw_b)
    assert store.upsert_customers([a, b]) == 2
    assert store.upsert_customers([a, b]) == 0
    assert store.upsert_customers([]) == 0
    assert store.get_customer("cus_a") == a
    got_b = store.get_customer("cus_b")
    assert got_b is not None and got_b.payment_provider == "quickbooks"
    assert got_b.model_extra == {**(b.model_extra or {})}
    changed = a.model_copy(update={"payment_provider_id": "cus_stripe_a2"})
    assert store.upsert_customers([changed, b]) == 1
    got = store.get_customer("cus_a")
    assert got is not None and got.payment_provider_id == "cus_stripe_a2"
    assert store.get_customer("cus_missing") is None
    many = [Customer.model_validate(build_customer(f"cus_{i:04d}")) for i in range(1_200)]
    assert store.upsert_customers(many) == 1_200
    assert store.upsert_customers(many) == 0


# --------------------------------------------------------------------------- connections etc.


def test_connections(store: Store) -> None:
    assert store.get_connection("stripe") is None
    store.upsert_connection(
        "stripe",
        "stripe_invoice",
        credentials_ref="env:STRIPE_API_KEY",
        settings={"days_until_due": 30, "auto_advance": False},
    )
    row = store.get_connection("stripe")
    assert isinstance(row, ConnectionRow)
    assert row.id == "stripe" and row.provider == "stripe_invoice" and row.enabled is True
    assert row.credentials_ref == "env:STRIPE_API_KEY"
    assert row.settings == {"days_until_due": 30, "auto_advance": False}
    assert row.created_at.tzinfo is not None
    store.upsert_connection("stripe", "stripe_invoice", enabled=False)
    updated = store.get_connection("stripe")
    assert updated is not None
    assert updated.enabled is False and updated.settings == {} and updated.credentials_ref is None
    assert updated.created_at == row.created_at and updated.updated_at >= row.updated_at


def test_item_mappings(store: Store) -> None:
    assert store.list_mappings("stripe") == {}
    assert store.get_mappings("stripe", []) == {}
    store.set_mapping("stripe", "item_storage_gb", "price_storage")
    store.set_mapping("stripe", "item_api_calls", "price_api")
    store.set_mapping("stripe", "adjustment:discount", "price_discount")
    store.set_mapping("qbo", "item_storage_gb", "qbo_17")
    store.set_mapping("stripe", "item_api_calls", "price_api_v2")  # overwrite
    assert store.get_mappings("stripe", ["item_api_calls", "item_unknown", "item_api_calls"]) == {
        "item_api_calls": "price_api_v2"
    }
    assert store.list_mappings("stripe") == {
        "adjustment:discount": "price_discount",
        "item_api_calls": "price_api_v2",
        "item_storage_gb": "price_storage",
    }
    assert list(store.list_mappings("stripe")) == sorted(store.list_mappings("stripe"))
    assert store.list_mappings("qbo") == {"item_storage_gb": "qbo_17"}
    for i in range(0, 1_100, 100):
        store.set_mapping("bulk", f"item_{i:04d}", f"p_{i}")
    ids = (f"item_{i:04d}" for i in range(1_100))  # an iterable, > one IN chunk
    expected = {f"item_{i:04d}": f"p_{i}" for i in range(0, 1_100, 100)}
    assert store.get_mappings("bulk", ids) == expected


def test_customer_links(store: Store) -> None:
    assert store.get_customer_link("stripe", "cus_a") is None
    store.link_customer("stripe", "cus_a", "cus_S1")
    store.link_customer("qbo", "cus_a", "77")
    assert store.get_customer_link("stripe", "cus_a") == "cus_S1"
    store.link_customer("stripe", "cus_a", "cus_S2")
    assert store.get_customer_link("stripe", "cus_a") == "cus_S2"
    assert store.get_customer_link("qbo", "cus_a") == "77"
    assert store.get_customer_link("stripe", "cus_b") is None


# --------------------------------------------------------------------------- exports


def test_exports(store: Store) -> None:
    assert store.get_export("inv_1") is None
    assert store.list_exports() == []
    store.upsert_export("inv_1", "stripe")
    first = store.get_export("inv_1", "stripe")
    assert isinstance(first, ExportRow)
    assert first.status == "pending" and first.request_count == 0 and first.external_id is None
    assert first.created_at.tzinfo is not None and first.created_at == first.updated_at
    time.sleep(0.01)
    store.upsert_export(
        "inv_1",
        "stripe",
        status="exported",
        external_id="in_123",
        external_url="https://dashboard.stripe.com/invoices/in_123",
        billing_total=Decimal("310.31"),
        provider_total="310.31",
        provider_amount_due=Decimal("0.00"),
        line_count=3,
        request_count=7,
    )
    row = store.get_export("inv_1", "stripe")
    assert row is not None
    assert (row.status, row.external_id, row.request_count, row.line_count) == (
        "exported",
        "in_123",
        7,
        3,
    )
    assert row.billing_total == "310.31" and row.provider_amount_due == "0.00"
    assert row.created_at == first.created_at and row.updated_at > first.updated_at
    store.upsert_export("inv_1", "stripe", error="boom")
    row = store.get_export("inv_1", "stripe")
    assert row is not None and row.status == "exported" and row.error == "boom"  # partial update
    store.upsert_export("inv_1", "stripe", error=None)
    row = store.get_export("inv_1", "stripe")
    assert row is not None and row.error is None
    time.sleep(0.01)
    store.upsert_export("inv_1", "quickbooks", status="skipped_zero_total")
    latest = store.get_export("inv_1")
    assert latest is not None and latest.provider == "quickbooks"
    store.upsert_export("inv_2", "stripe", status="failed", error="card declined")
    assert [(r.invoice_id, r.provider) for r in store.list_exports()] == [
        ("inv_1", "stripe"),
        ("inv_1", "quickbooks"),
        ("inv_2", "stripe"),
    ]
    assert [r.invoice_id for r in store.list_exports(status="failed")] == ["inv_2"]
    with pytest.raises(TypeError, match="unknown field"):
        store.upsert_export("inv_1", "stripe", colour="red")
    with pytest.raises(TypeError):
        store.upsert_export("inv_1", "stripe", request_count="7")
    with pytest.raises(TypeError):
        store.upsert_export("inv_1", "stripe", status=None)


def test_attempts(store: Store) -> None:
    assert store.list_attempts("inv_1") == []
    store.add_attempt("inv_1", "stripe", "link_customer", "timeout")
    store.add_attempt("inv_2", "stripe", "push_lines", "rate limited")
    store.add_attempt("inv_1", "stripe", "push_lines", "HTTP 500: upstream error")
    attempts = store.list_attempts("inv_1")
    assert all(isinstance(a, AttemptRow) for a in attempts)
    assert [(a.step, a.error) for a in attempts] == [
        ("link_customer", "timeout"),
        ("push_lines", "HTTP 500: upstream error"),
    ]
    assert attempts[0].id < attempts[1].id
    assert attempts[0].at.tzinfo is not None
    assert attempts[0].at <= datetime.now(UTC)
    assert [a.provider for a in store.list_attempts("inv_2")] == ["stripe"]


def test_close_is_idempotent(database_url: str) -> None:
    s = Store(database_url)
    s.close()
    s.close()
    if database_url.startswith("postgresql"):
        with Store(database_url) as again:  # tables already exist: create_all is a no-op
            again.upsert_export("x", "stripe")
            drop_all(again)
