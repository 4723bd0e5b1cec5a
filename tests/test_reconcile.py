"""`billbridge reconcile`: the comparison (core/reconcile.py) on its own, and end to end against
each provider's emulator: invoices exported through the provider module, then one duplicated,
one removed and one altered at the provider, and the CLI must report exactly those."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from billbridge.core.reconcile import ExpectedInvoice, ProviderInvoice, reconcile

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
