"""The hour arithmetic of marketplace metering (core/metering.py): windows, due hours, and the
cumulative quantity rule that conserves usage across late events and fractional remainders."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from billbridge.core.metering import (
    HOUR,
    billing_month_cutoff,
    due_hours,
    hour_quantity,
    hour_start,
    oldest_open_hour,
    still_open,
    window_closes,
)

D = Decimal


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_hour_start_is_utc_on_the_hour() -> None:
    cet = timezone(timedelta(hours=1))
    assert hour_start(datetime(2026, 3, 1, 0, 59, 59, tzinfo=cet)) == at("2026-02-28 23:00")
    with pytest.raises(ValueError, match="no time zone"):
        hour_start(datetime(2026, 3, 1))


def test_an_hour_is_due_once_it_closed_and_its_grace_passed() -> None:
    grace = timedelta(minutes=10)
    assert due_hours(at("2026-05-01 10:00"), at("2026-05-01 11:09"), grace) == []
    assert due_hours(at("2026-05-01 10:00"), at("2026-05-01 11:10"), grace) == [
        at("2026-05-01 10:00")
    ]
    # After an outage: every missed hour, oldest first, a bounded batch at a time.
    missed = due_hours(at("2026-05-01 00:00"), at("2026-05-02 00:30"), grace, at_most=5)
    assert missed == [at("2026-05-01 00:00") + n * HOUR for n in range(5)]


def test_aws_takes_a_day_but_a_month_only_until_six_on_the_first() -> None:
    # Mid-month: 24 hours from the hour's start.
    assert window_closes(at("2026-05-14 09:00"), "aws") == at("2026-05-15 09:00")
    # The last hours of a month close at 06:00 UTC on the 1st, before their 24 hours.
    assert billing_month_cutoff(at("2026-05-31 23:00")) == at("2026-06-01 06:00")
    assert window_closes(at("2026-05-31 23:00"), "aws") == at("2026-06-01 06:00")
    assert window_closes(at("2026-05-31 03:00"), "aws") == at("2026-06-01 03:00")
    assert still_open(at("2026-05-31 23:00"), at("2026-06-01 05:59"), "aws")
    assert not still_open(at("2026-05-31 23:00"), at("2026-06-01 06:00"), "aws")
    # December closes on 1 January.
    assert billing_month_cutoff(at("2026-12-31 23:00")) == at("2027-01-01 06:00")
    # Azure has no month-end rule.
    assert window_closes(at("2026-05-31 23:00"), "azure") == at("2026-06-01 23:00")


def test_oldest_open_hour_respects_the_month_end() -> None:
    assert oldest_open_hour(at("2026-05-14 09:30"), "azure") == at("2026-05-13 10:00")
    # At 07:00 on the 1st nothing of May can be reported to AWS any more.
    assert oldest_open_hour(at("2026-06-01 07:00"), "aws") == at("2026-06-01 00:00")
    assert oldest_open_hour(at("2026-06-01 07:00"), "azure") == at("2026-05-31 08:00")


def test_quantity_is_what_was_ingested_less_what_was_reported() -> None:
    assert hour_quantity(D("17.42"), D("0"), integers=False) == D("17.42")
    assert hour_quantity(D("17.42"), D("0"), integers=True) == D("17")
    assert hour_quantity(D("17.42"), D("17"), integers=True) == D("0")
    assert hour_quantity(D("18.1"), D("17"), integers=True) == D("1")
    # Usage taken back is netted against later usage, never reported negative.
    assert hour_quantity(D("5"), D("7"), integers=False) == D("0")


def test_cumulative_reports_conserve_usage_with_late_events_and_remainders() -> None:
    """Simulated days of events, some arriving after their hour was reported: every hour is
    reported once, and reported equals ingested (integers: up to a remainder below 1)."""
    rng = random.Random(9)
    start = at("2026-05-01 00:00")
    hours = [start + n * HOUR for n in range(72)]
    # (timestamp, received at, quantity): a tenth arrive up to 5 hours late.
    events = []
    for _ in range(2000):
        stamp = start + timedelta(seconds=rng.randrange(72 * 3600))
        late = timedelta(hours=rng.randint(1, 5)) if rng.random() < 0.1 else timedelta(0)
        events.append((stamp, stamp + late, D(rng.randint(1, 999)) / 100))
    for integers in (False, True):
        reported: list[Decimal] = []
        for hour in hours:
            report_time = hour + HOUR + timedelta(minutes=10)  # the grace period
            ingested = sum(
                (
                    q
                    for stamp, received, q in events
                    if stamp < hour + HOUR and received <= report_time
                ),
                D(0),
            )
            quantity = hour_quantity(ingested, sum(reported, D(0)), integers=integers)
            assert quantity >= 0 and (not integers or quantity == quantity.to_integral_value())
            reported.append(quantity)
        total_in = sum((q for *_, q in events), D(0))
        # Events received after the last report are owed to the next hour, not lost.
        owed_later = sum(
            (q for _, received, q in events if received > hours[-1] + HOUR + timedelta(minutes=10)),
            D(0),
        )
        left = total_in - owed_later - sum(reported, D(0))
        assert len(reported) == len(hours)
        assert left == 0 if not integers else D(0) <= left < 1


def test_marketplace_endpoints_follow_the_emulator_rule() -> None:
    from billbridge.core.config import Settings

    embedded = Settings.from_env({})
    assert embedded.marketplace_endpoint("aws") is None  # the local emulator
    cluster = Settings.from_env({"TEMPORAL_ADDRESS": "temporal:7233"})
    assert cluster.marketplace_endpoint("aws") == (
        "https://metering.marketplace.{region}.amazonaws.com"
    )
    assert cluster.marketplace_endpoint("azure") == "https://marketplaceapi.microsoft.com"
    pointed = Settings.from_env(
        {"TEMPORAL_ADDRESS": "temporal:7233", "GCP_MARKETPLACE_ENDPOINT": "http://127.0.0.1:9"}
    )
    assert pointed.marketplace_endpoint("gcp") == "http://127.0.0.1:9"
