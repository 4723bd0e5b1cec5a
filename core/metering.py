"""Hour arithmetic of marketplace metering: pure, so the workflow and its activities agree.

Which hours are due, until when a marketplace still takes an hour, and how much of a customer's
usage an hour reports. The quantity rule is cumulative, which is what conserves usage:

    report(hour) = ingested(events timestamped before the hour's end, received by now)
                   - reported(every earlier report of this customer and dimension)

rounded down to a whole number where the marketplace takes integers only. So an event that
arrives after its hour was reported is counted in the next hour that is reported (never a
second report for a closed hour, never lost), a fractional remainder rides along to the next
hour instead of being rounded away, and over any run of hours what was reported equals what was
ingested, up to a remainder below 1 where only integers are taken.

Billing-amount mode (the set-up Orb and Metronome recommend) is the same rule on another
quantity: "ingested" is the customer's charges to date in cents, as the billing system sends
them; the hour reports their increase.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from billbridge.core.usage import LedgerRecord

__all__ = [
    "HOUR",
    "billing_month_cutoff",
    "counts_as_reported",
    "due_hours",
    "hour_quantity",
    "hour_start",
    "oldest_open_hour",
    "still_open",
    "window_closes",
]

HOUR = timedelta(hours=1)
# AWS: "usage records are accepted up to 24 hours after the event", and usage of a billing month
# only until 06:00 UTC on the first day of the next month (BatchMeterUsage API reference,
# https://docs.aws.amazon.com/marketplace/latest/APIReference/API_marketplace-metering_BatchMeterUsage.html;
# ../shared/contracts/aws-marketplace.md). Azure: "the usage event ... within 24 hours"
# (https://learn.microsoft.com/partner-center/marketplace/marketplace-metering-service-apis).
WINDOWS: dict[str, timedelta] = {
    "aws": timedelta(hours=24),
    "azure": timedelta(hours=24),
    # UNCONFIRMED: Google documents no hard limit; billbridge keeps to a day like the others.
    "gcp": timedelta(hours=24),
}
AWS_MONTH_END_GRACE = timedelta(hours=6)
# Words a marketplace client puts in a refusal's detail when the marketplace does hold a record
# for the hour (another quantity: AWS's DuplicateRecord), so the hour is not carried forward.
HOLDS_ANOTHER_QUANTITY = "holds another quantity"


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"{moment.isoformat()} has no time zone; metering hours are UTC")
    return moment.astimezone(UTC)


def hour_start(moment: datetime) -> datetime:
    """The start (UTC, on the hour) of the hour `moment` falls in."""
    return _utc(moment).replace(minute=0, second=0, microsecond=0)


def due_hours(
    next_hour: datetime, now: datetime, grace: timedelta, *, at_most: int = 24 * 7
) -> list[datetime]:
    """The hours from `next_hour` on that have closed and whose grace for late events has
    passed by `now`, oldest first (at most `at_most` of them: a workflow catching up after an
    outage takes them a batch at a time)."""
    if grace < timedelta(0):
        raise ValueError("grace must not be negative")
    hour, now = hour_start(next_hour), _utc(now)
    hours: list[datetime] = []
    while hour + HOUR + grace <= now and len(hours) < at_most:
        hours.append(hour)
        hour += HOUR
    return hours


def billing_month_cutoff(hour: datetime) -> datetime:
    """06:00 UTC on the first day of the month after the one `hour` belongs to (AWS)."""
    start = hour_start(hour)
    first_next = (start.replace(day=1) + timedelta(days=32)).replace(day=1, hour=0)
    return first_next + AWS_MONTH_END_GRACE


def window_closes(hour: datetime, marketplace: str) -> datetime:
    """The moment from which `marketplace` no longer takes usage of `hour` (exclusive).

    Counted from the hour's start: its records carry the hour's start as their timestamp.
    """
    start = hour_start(hour)
    closes = start + WINDOWS[marketplace]
    if marketplace == "aws":
        closes = min(closes, billing_month_cutoff(start))
    return closes


def still_open(hour: datetime, now: datetime, marketplace: str) -> bool:
    """Whether `marketplace` still takes usage of `hour` at `now`."""
    return _utc(now) < window_closes(hour, marketplace)


def oldest_open_hour(now: datetime, marketplace: str) -> datetime:
    """The oldest hour `marketplace` still takes at `now` (where a catch-up may start)."""
    hour = hour_start(_utc(now) - WINDOWS[marketplace])
    while not still_open(hour, now, marketplace):
        hour += HOUR
    return hour


def hour_quantity(
    ingested_to_date: Decimal, reported_to_date: Decimal, *, integers: bool
) -> Decimal:
    """What an hour reports: the usage ingested up to the hour's end less everything reported
    before, never negative, rounded down to a whole number for integer-only marketplaces (the
    rest stays in `ingested - reported` and rides along to the next hour)."""
    owed = ingested_to_date - reported_to_date
    if owed <= 0:
        # Usage taken back (a negative event) is netted against later usage, never sent as a
        # negative quantity, which no marketplace takes.
        return Decimal(0)
    return owed.to_integral_value(rounding=ROUND_FLOOR) if integers else owed


def counts_as_reported(record: LedgerRecord, now: datetime) -> bool:
    """Whether a ledger record's quantity counts as reported in the cumulative rule.

    Delivered records count, and so do records kept for a resend while their hour is still open
    and records whose answer is unknown (saved, maybe at the marketplace: never reported a
    second time; `marketplace reconcile` shows them held). A record the marketplace refused
    (throttled, unprocessed, customer not subscribed, resource not active) whose window closed
    before a resend was accepted holds nothing at the marketplace: it no longer counts, so its
    usage goes out with the next hour that is open (conservation), unless the marketplace said
    it holds another quantity for that hour (a person decides).
    """
    if record.delivered or record.outcome in ("pending", "queued"):
        return True
    if record.outcome == "duplicate" or HOLDS_ANOTHER_QUANTITY in record.detail:
        return True
    return still_open(record.hour_start, now, record.marketplace)
