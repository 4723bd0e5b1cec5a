"""`billbridge reconcile`: the comparison (core/reconcile.py) on its own, and end to end against
each provider's emulator: invoices exported through the provider module, then one duplicated,
one removed and one altered at the provider, and the CLI must report exactly those."""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from billbridge.activities.export import ExportActivities
from billbridge.activities.providers.base import PushContext
from billbridge.activities.store import Store
from billbridge.core.config import Settings
from billbridge.core.errors import ExportError
from billbridge.core.messages import ExportStatus
from billbridge.core.providers import PROVIDER_ENTRIES
from billbridge.core.reconcile import ExpectedInvoice, ProviderInvoice, reconcile
from billbridge.emulators.billcom import BillcomEmulator
from billbridge.emulators.netsuite import NetSuiteEmulator
from billbridge.emulators.quickbooks import QuickBooksEmulator
from billbridge.emulators.stripe import StripeEmulator
from billbridge.starter.authorize import store_grant
from billbridge.starter.cli import build_parser
from billbridge.starter.door import submit_invoice, upsert_customers
from billbridge.starter.samples import SampleLine, build_customer, build_invoice
from billbridge.starter.seed_providers import store_emulator_credential
from conftest import BILLBRIDGE_CLI, CODEC_TEST_KEY, STRIPE_TEST_KEY, StripeAccount, emulator_grant

T0 = datetime(2025, 3, 1, 12, tzinfo=UTC)


def expected(
    invoice_id: str,
    total: str,
    currency: str = "USD",
    *,
    at: datetime = T0,
    ref: str | None = None,
    recorded: str | None = None,
) -> ExpectedInvoice:
    return ExpectedInvoice(
        invoice_id=invoice_id,
        ref=ref or invoice_id,
        total=Decimal(total),
        currency=currency,
        exported_at=at,
        external_id=f"ext_{invoice_id}",
        recorded_total=Decimal(recorded) if recorded is not None else None,
    )


def found(
    provider_id: str,
    ref: str,
    total: str,
    currency: str | None = "USD",
    *,
    at: datetime | None = T0,
    marked: bool = True,
    active: bool = True,
) -> ProviderInvoice:
    return ProviderInvoice(
        provider_invoice_id=provider_id,
        ref=ref,
        total=Decimal(total),
        currency=currency,
        status="open" if active else "void",
        created_at=at,
        marked=marked,
        active=active,
    )


def test_once_duplicated_missing_mismatched_and_extra_are_told_apart() -> None:
    report = reconcile(
        "stripe_invoice",
        "stripe_invoice",
        [
            expected("inv_once", "10.00"),
            expected("inv_dup", "20.00"),
            expected("inv_missing", "30.00"),
            expected("inv_off", "40.00"),
        ],
        [
            found("in_1", "inv_once", "10"),
            found("in_2", "inv_dup", "20.00"),
            found("in_3", "inv_dup", "20.00"),
            found("in_4", "inv_off", "40.01"),
            found("in_5", "inv_stranger", "5.00"),
        ],
    )
    assert (report.expected, report.exported_once) == (4, 2)
    assert [(f.invoice_id, f.provider_invoice_ids) for f in report.duplicated] == [
        ("inv_dup", ["in_2", "in_3"])
    ]
    assert [(f.invoice_id, f.billing_total, f.note) for f in report.missing] == [
        ("inv_missing", "30.00", "the export recorded ext_inv_missing")
    ]
    [off] = report.mismatched
    assert (off.invoice_id, off.billing_total, off.provider_totals) == (
        "inv_off",
        "40.00",
        ["40.01"],
    )
    assert off.note == "provider total differs by 0.01"
    assert [(f.invoice_id, f.ref, f.provider_invoice_ids) for f in report.extra] == [
        (None, "inv_stranger", ["in_5"])
    ]
    assert not report.clean
    assert report.model_dump(mode="json")["clean"] is False


def test_a_clean_report_and_what_does_not_make_it_unclean() -> None:
    report = reconcile(
        "quickbooks",
        "quickbooks",
        [expected("inv_1", "12.30")],
        # An extra invoice (an export in progress has one) is reported, not failed.
        [found("1", "inv_1", "12.3"), found("2", "inv_2", "1.00")],
    )
    assert report.clean and report.exported_once == 1 and len(report.extra) == 1


def test_totals_compare_exactly_by_each_currencys_minor_unit() -> None:
    report = reconcile(
        "stripe_invoice",
        "stripe_invoice",
        [
            expected("inv_jpy", "1000", "JPY"),
            expected("inv_kwd", "1.234", "KWD"),
            expected("inv_kwd_ok", "5.120", "KWD"),
            expected("inv_isk", "18056", "ISK"),
            expected("inv_cur", "10.00", "EUR"),
        ],
        [
            # Stripe's units turned into Decimals: JPY has none, ISK two at Stripe.
            found("in_1", "inv_jpy", "1000", "JPY"),
            found("in_2", "inv_kwd", "1.230", "KWD"),
            found("in_3", "inv_kwd_ok", "5.12", "KWD"),
            found("in_4", "inv_isk", "18056.00", "ISK"),
            found("in_5", "inv_cur", "10.00", "USD"),
        ],
    )
    assert report.exported_once == 5
    assert {
        f.invoice_id: (f.billing_total, f.provider_totals, f.note) for f in report.mismatched
    } == {
        "inv_kwd": ("1.234", ["1.230"], "provider total differs by -0.004"),
        "inv_cur": ("10.00", ["10.00"], "currency USD at the provider, EUR billed"),
    }


def test_a_total_the_export_recorded_as_rounded_is_no_mismatch() -> None:
    report = reconcile(
        "stripe_invoice",
        "stripe_invoice",
        [expected("inv_isk", "100.50", "ISK", recorded="101.00")],
        [found("in_1", "inv_isk", "101.00", "ISK")],
    )
    assert report.clean


def test_an_inactive_invoice_is_no_export_and_no_duplicate() -> None:
    report = reconcile(
        "bill.com",
        "bill.com",
        [expected("inv_kept", "10.00"), expected("inv_voided", "20.00")],
        [
            found("00e1", "inv_kept", "10.00", None, marked=False),
            # A duplicate the export archived again, and an invoice a person voided.
            found("00e2", "inv_kept", "10.00", None, marked=False, active=False),
            found("00e3", "inv_voided", "20.00", None, marked=False, active=False),
        ],
    )
    assert report.exported_once == 1 and not report.duplicated
    [gone] = report.missing
    assert gone.invoice_id == "inv_voided"
    assert gone.note == "voided or archived at the provider: 00e3 (void)"


def test_unmarked_invoices_are_extra_only_when_the_ref_is_billbridges() -> None:
    report = reconcile(
        "bill.com",
        "bill.com",
        [],
        [
            found("00e1", "INV-7", "10.00", None, marked=False),
            found("00e2", "hand-made-42", "10.00", None, marked=False),
        ],
        known_refs={"INV-7"},
    )
    assert [f.ref for f in report.extra] == ["INV-7"]


def test_since_keeps_exports_of_the_window_and_later_invoices_of_earlier_exports() -> None:
    since = T0
    before, after = T0 - timedelta(days=2), T0 + timedelta(hours=1)
    report = reconcile(
        "stripe_invoice",
        "stripe_invoice",
        [
            expected("inv_old", "1.00", at=before),
            expected("inv_old_missing", "1.00", at=before),
            expected("inv_old_late", "1.00", at=before),
            expected("inv_new", "2.00", at=after),
            expected("inv_new_missing", "2.00", at=after),
        ],
        [
            found("in_1", "inv_old", "1.00", at=before),
            # An export begun before the window whose invoice was made in it (it waited).
            found("in_2", "inv_old_late", "9.00", at=after),
            found("in_3", "inv_new", "2.00", at=after),
            found("in_4", "inv_stranger_old", "3.00", at=before),
            found("in_5", "inv_stranger_new", "3.00", at=after),
            # NetSuite says no time of creation: its own date filter stands.
            found("in_6", "inv_stranger_undated", "3.00", at=None),
        ],
        since=since,
    )
    assert report.expected == 3
    assert [f.invoice_id for f in report.missing] == ["inv_new_missing"]
    assert [f.invoice_id for f in report.mismatched] == ["inv_old_late"]
    assert sorted(f.ref for f in report.extra) == ["inv_stranger_new", "inv_stranger_undated"]


# -- the CLI against each provider's emulator ----------------------------------------------------


@dataclass
class Exported:
    invoice_id: str
    external_id: str
    plan: Any


@dataclass
class Account:
    """One provider's connection as a test sees it: the store, the settings a process uses, and
    invoices exported into its emulator through the provider module."""

    name: str
    settings: Settings
    store: Store

    def provider(self) -> Any:
        return ExportActivities(self.store, self.settings).provider(self.name, self.name)

    def export(self, invoice_id: str, customer_id: str, lines: list[SampleLine]) -> Exported:
        """The export's own steps without Temporal: prepare (decide, map, link, plan, check),
        the provider's push, and the record the push step writes."""
        invoice = submit_invoice(self.store, build_invoice(invoice_id, customer_id, "USD", lines))
        activities = ExportActivities(self.store, self.settings)
        prepared = activities.prepare(invoice, invoice.line_items, time.time(), write=True)
        assert prepared.plan is not None
        decision = prepared.decision
        provider = activities.provider(decision.provider, decision.connection_id)
        context = PushContext(invoice.id, prepared.provider_customer_id, time.time())
        result = provider.push(prepared.plan, context)
        self.store.upsert_export(
            invoice.id,
            decision.provider,
            status=ExportStatus.EXPORTED.value,
            billing_total=decision.billing_total,
            external_id=result.external_id,
            external_url=result.external_url,
            provider_total=result.provider_total,
        )
        return Exported(invoice.id, result.external_id, prepared.plan)

    def reconcile(self, *options: str) -> subprocess.CompletedProcess[str]:
        """`billbridge reconcile` in its own process, on this test's store and emulators."""
        inherited = {
            k: v
            for k, v in os.environ.items()
            if k not in ("BILLBRIDGE_CODEC_KEY_FILE", "TEMPORAL_ADDRESS", "DATABASE_URL")
        }
        bases = {
            entry.api_base_env: base
            for entry in PROVIDER_ENTRIES
            if (base := self.settings.api_base(entry.name))
        }
        env = {
            **inherited,
            **bases,
            "DATABASE_URL": self.settings.database_url,
            "STRIPE_API_KEY": self.settings.stripe_api_key,
            "BILLBRIDGE_CODEC_KEY": CODEC_TEST_KEY,
            "BILLBRIDGE_DATA_DIR": str(self.settings.data_dir),
        }
        return subprocess.run(
            [*BILLBRIDGE_CLI, "reconcile", *options],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def report(self, *options: str) -> tuple[int, dict[str, Any]]:
        done = self.reconcile("--provider", self.name, "--json", *options)
        assert done.returncode in (0, 1), done.stderr
        return done.returncode, json.loads(done.stdout)


def account(
    name: str, tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch, base: str
) -> Account:
    monkeypatch.setenv("BILLBRIDGE_CODEC_KEY", CODEC_TEST_KEY)  # seals and opens credentials
    settings = Settings(
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'billbridge.db'}",
        stripe_api_key=STRIPE_TEST_KEY,
        api_bases={name: base},
    )
    return Account(name, settings, store)


def link_customer(store: Store, customer_id: str, provider: str, provider_id: str) -> None:
    upsert_customers(
        store,
        [
            build_customer(
                customer_id,
                payment_provider=provider,
                payment_provider_id=provider_id,
                name="Acme Corp",
                email="billing@acme.test",
            )
        ],
    )


def exported_four(books: Account, customer_id: str) -> list[Exported]:
    """inv_once stays as exported; inv_dup, inv_gone and inv_off are then tampered with."""
    return [
        books.export(invoice_id, customer_id, LINES)
        for invoice_id in ("inv_once", "inv_dup", "inv_gone", "inv_off")
    ]


def assert_found_exactly(
    report: dict[str, Any],
    invoices: list[Exported],
    *,
    duplicate: str | None,
    missing: str,
    mismatched: str,
    mismatched_total: str,
) -> None:
    by_id = {e.invoice_id: e for e in invoices}
    assert report["expected"] == 4
    assert report["exported_once"] == (2 if duplicate else 3)
    assert [(f["invoice_id"], f["billing_total"]) for f in report["missing"]] == [
        (missing, BILLING_TOTAL)
    ]
    assert [
        (f["invoice_id"], f["provider_invoice_ids"], f["billing_total"], f["provider_totals"])
        for f in report["mismatched"]
    ] == [(mismatched, [by_id[mismatched].external_id], BILLING_TOTAL, [mismatched_total])]
    if duplicate is not None:
        [dup] = report["duplicated"]
        assert dup["invoice_id"] == duplicate and len(dup["provider_invoice_ids"]) == 2
        assert by_id[duplicate].external_id in dup["provider_invoice_ids"]
    else:
        assert report["duplicated"] == []
    assert report["extra"] == [] and report["clean"] is False


LINES = [
    SampleLine("item_seats", "Seats", Decimal(3), Decimal("12.50")),
    SampleLine("item_api_calls", "API calls", Decimal(1234), Decimal("0.0125")),
]
BILLING_TOTAL = "52.93"  # 3 x 12.50 + 1234 x 0.0125 (15.425, billed 15.43)


def test_stripe(
    emulator: StripeEmulator,
    stripe_account: StripeAccount,
    store: Store,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    books = account("stripe_invoice", tmp_path, store, monkeypatch, emulator.base_url)
    before = books.report()
    assert before[0] == 0 and before[1]["expected"] == 0
    invoices = exported_four(books, "cust_1")
    _, dup, gone, off = invoices
    code, clean = books.report()
    assert code == 0 and clean["exported_once"] == 4 and clean["clean"] is True
    # A second Stripe invoice with the same metadata (no idempotency key: a new one).
    stripe_account.client.v1.invoices.create(params=dup.plan.create_params)
    emulator.forget_invoice(gone.external_id)
    with emulator.store.lock:
        emulator.store.invoices[off.external_id].obj["total"] += 100  # one dollar more
    code, report = books.report()
    assert code == 1
    assert_found_exactly(
        report,
        invoices,
        duplicate="inv_dup",
        missing="inv_gone",
        mismatched="inv_off",
        mismatched_total="53.93",
    )
    assert report["mismatched"][0]["note"] == "provider total differs by 1.00"

    # The table names the problems; --since tomorrow leaves today's exports out.
    table = books.reconcile("--provider", "stripe")
    assert table.returncode == 1, table.stderr
    assert "duplicated" in table.stdout and "inv_gone" in table.stdout
    assert "53.93" in table.stdout and off.external_id in table.stdout
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    code, window = books.report("--since", tomorrow)
    assert code == 0 and window["expected"] == 0 and window["extra"] == []

    refused = books.reconcile("--provider", "stripe", "--connection", "quickbooks")
    assert refused.returncode == 2 and "--connection" in refused.stderr


def test_usage_errors_name_the_option(capsys: pytest.CaptureFixture[str]) -> None:
    for options, option in (
        (["--provider", "paypal"], "--provider"),
        (["--provider", "stripe", "--since", "01/02/2025"], "--since"),
    ):
        args = build_parser().parse_args(["reconcile", *options])
        assert args.func(args) == 2
        assert f"billbridge: {option}:" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["reconcile"])
    assert exited.value.code == 2 and "--provider" in capsys.readouterr().err


def test_quickbooks(store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with QuickBooksEmulator(requests_per_minute=None) as qbo:
        books = account("quickbooks", tmp_path, store, monkeypatch, qbo.base_url)
        grant = emulator_grant(qbo)
        store_grant(store, books.settings, "quickbooks", grant)
        store.set_mappings(
            "quickbooks", {ln.item_id: qbo.create_item(ln.item_name) for ln in LINES}
        )
        link_customer(store, "cust_qb", "quickbooks", qbo.create_customer("Acme", "a@acme.test"))
        invoices = exported_four(books, "cust_qb")
        _, dup, gone, off = invoices
        # The same create again without its requestid (and under QuickBooks' next number):
        # a second invoice with our note.
        copy = {k: v for k, v in dup.plan.body.items() if k != "DocNumber"}
        books.provider()._call("duplicating", "POST", "invoice", json_body=copy)
        qbo.delete_invoice(gone.external_id)
        with qbo.store.lock:
            qbo.store.tables["Invoice"][off.external_id]["TotalAmt"] = Decimal("52.90")
        code, report = books.report()
        assert code == 1
        assert_found_exactly(
            report,
            invoices,
            duplicate="inv_dup",
            missing="inv_gone",
            mismatched="inv_off",
            mismatched_total="52.90",
        )
        # The listing is QuickBooks' query language, narrowed by creation time when asked.
        queries = [r.query.get("query", "") for r in qbo.requests() if r.path.endswith("/query")]
        assert any(
            q.startswith("select * from Invoice orderby MetaData.CreateTime") for q in queries
        )
        code, window = books.report("--since", "2000-01-01")
        assert code == 1 and window["expected"] == 4
        queries = [r.query.get("query", "") for r in qbo.requests() if r.path.endswith("/query")]
        assert any("where MetaData.CreateTime >= '1999-12-31T00:00:00+00:00'" in q for q in queries)


def test_billcom(store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with BillcomEmulator() as bill:
        books = account("bill.com", tmp_path, store, monkeypatch, bill.base_url)
        store.set_mappings("bill.com", {ln.item_id: bill.create_item(ln.item_name) for ln in LINES})
        link_customer(store, "cust_bill", "bill.com", bill.create_customer("Acme", "a@acme.test"))
        invoices = exported_four(books, "cust_bill")
        _, dup, gone, off = invoices
        # BILL keeps no key but the number: a second create with it is a second invoice.
        books.provider().client.call("duplicating", "POST", "/v3/invoices", json_body=dup.plan.body)
        bill.archive("invoice", gone.external_id)
        with bill.store.lock:
            bill.store.invoices[off.external_id]["totalAmount"] = 152.93
        # An invoice the organization made by hand, numbered by BILL: not billbridge's.
        with bill.store.lock:
            bill.store.create_invoice(
                {
                    "customer": {"id": dup.plan.customer_id},
                    "invoiceLineItems": [{"quantity": 1, "price": 5}],
                }
            )
        code, report = books.report()
        assert code == 1
        assert_found_exactly(
            report,
            invoices,
            duplicate="inv_dup",
            missing="inv_gone",
            mismatched="inv_off",
            mismatched_total="152.93",
        )
        assert report["missing"][0]["note"].startswith(
            f"voided or archived at the provider: {gone.external_id}"
        )
        code, window = books.report("--since", "2000-01-01")
        assert code == 1 and window["expected"] == 4
        listed = [
            r.query for r in bill.requests() if r.method == "GET" and r.path == "/v3/invoices"
        ]
        assert {"max": "100"} in listed
        assert {"max": "100", "filters": 'createdTime:gte:"1999-12-31T00:00:00.000Z"'} in listed


def test_netsuite(store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with NetSuiteEmulator() as ns:
        books = account("netsuite", tmp_path, store, monkeypatch, ns.base_url)
        store_emulator_credential(
            books.settings, store, "netsuite", ns.m2m_credentials(), {"netsuite_subsidiary": "1"}
        )
        store.set_mappings("netsuite", {ln.item_id: ns.create_item(ln.item_name) for ln in LINES})
        link_customer(store, "cust_ns", "netsuite", ns.create_customer("Acme", "a@acme.test"))
        invoices = exported_four(books, "cust_ns")
        _, dup, gone, off = invoices
        # External ids are unique per record type: NetSuite refuses a second invoice with ours,
        # so an export can never be duplicated there.
        with pytest.raises(ExportError, match="already exists"):
            body = {**dup.plan.body, "externalId": dup.plan.external_id}
            books.provider().client.call("duplicating", "POST", "record/v1/invoice", json_body=body)
        ns.delete_invoice(gone.external_id)
        with ns.store.lock:
            ns.store.records["invoice"][off.external_id]["total"] = Decimal("50.00")
        code, report = books.report()
        assert code == 1
        assert_found_exactly(
            report,
            invoices,
            duplicate=None,
            missing="inv_gone",
            mismatched="inv_off",
            mismatched_total="50.00",
        )
        assert all(f["currency"] == "USD" for f in report["mismatched"])
        code, window = books.report("--since", "2000-01-01")
        assert code == 1 and window["expected"] == 4
        tomorrow = (datetime.now(UTC) + timedelta(days=2)).date().isoformat()
        code, later = books.report("--since", tomorrow)
        assert code == 0 and later["expected"] == 0
