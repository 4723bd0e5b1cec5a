"""The report activity of MarketplaceMeteringWorkflow: closed hours from the store to the
marketplace, through the ledger.

For each hour, oldest first, and each of the link's dimensions, the quantity follows the
cumulative rule of core/metering.py: usage ingested up to the hour's end, less every quantity
already in the ledger for earlier hours. It is computed once: the record is saved in the ledger,
with the exact request, before anything is sent, and from then on that record is sent as saved
(a retry, a crash, a fix) and never with another quantity. Hours the marketplace no longer takes
are not sent: their usage stays owed and goes out with the next hour that is (conservation).

Per-record answers: delivered (accepted, or a duplicate of the same quantity) is done; RETRY
(throttled, unprocessed) raises a retryable error, and the retry resends the saved request;
anything a person must fix raises a needs-attention error after the answers are recorded, and the
workflow waits for `retry`, which resends the kept records as saved.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from typing import Any

from temporalio import activity

from billbridge.activities.marketplaces.base import (
    MarketplaceAccount,
    MarketplaceClient,
    MarketplaceConfig,
    Outcome,
    PreparedReport,
    RecordResult,
    UsageRecord,
)
from billbridge.activities.providers.gate import RequestGate, store_gates
from billbridge.activities.secrets import SecretBox
from billbridge.activities.store import SavedRequest, Store
from billbridge.activities.store.metering_queue import (
    QUEUED,
    QueuedRecord,
    RequestBuilder,
    request_age,
)
from billbridge.core import activity_names as names
from billbridge.core.config import Settings
from billbridge.core.errors import (
    ExportError,
    MarketplaceNeedsAttention,
    ProviderCustomerMissing,
    ProviderRejected,
    ProviderSetupNeeded,
    ProviderUnavailable,
)
from billbridge.core.marketplaces import load_client, marketplace_entry
from billbridge.core.metering import HOUR, counts_as_reported, hour_quantity, still_open
from billbridge.core.metering_messages import LastReport, ReportHoursInput, ReportHoursResult
from billbridge.core.usage import (
    BILLING_AMOUNT_EVENT,
    BILLING_AMOUNT_PROPERTY,
    DimensionMapping,
    LedgerRecord,
    MarketplaceLink,
    record_id,
)

# Usage counted from here: before any marketplace existed.
BEGINNING = datetime(1970, 1, 1, tzinfo=UTC)
# Quantities sent to marketplaces that take fractions keep this many decimals; the rest rides
# along to the next hour (AWS QuantityAsDecimal takes at most 6, botocore's model).
FRACTION_PLACES = 6
CENTS = Decimal(100)
# A saved request carrying our records that nobody in this process is sending and that is older
# than this is resent here (its sender crashed or failed); a resend is answered as a duplicate of
# itself, so a second sender costs a call, never a second report.
RESEND_AFTER = timedelta(seconds=5)


ClientFactory = Callable[[Settings, MarketplaceConfig], MarketplaceClient]


def wall_clock() -> datetime:
    return datetime.now(UTC)


class MeteringActivities:
    def __init__(
        self, store: Store, settings: Settings, clock: Callable[[], datetime] = wall_clock
    ) -> None:
        self.store = store
        self.settings = settings
        self.gates = store_gates(store)
        # Which hours a marketplace still takes is judged by this clock (tests move it to a
        # month's end, as the emulators' `set_now` does for the marketplace's side).
        self.clock = clock
        self._box: SecretBox | None = None
        self._clients: dict[str, tuple[object, MarketplaceClient]] = {}
        self._lock = threading.Lock()
        # Saved requests this process is sending now: not resent by a waiting activity.
        self._in_flight: set[int] = set()

    def activities(self) -> list[Callable[..., Any]]:
        return [self.report_metering_hours]

    # -- the activity --------------------------------------------------------------------------

    @activity.defn(name=names.REPORT_METERING_HOURS)
    def report_metering_hours(self, arg: ReportHoursInput) -> ReportHoursResult:
        """Report `arg.hours`; billbridge's errors leave as ApplicationErrors of their type,
        with their retry decision (core/errors.py); anything else is retried."""
        try:
            return self._report(arg)
        except ExportError as err:
            raise err.to_application_error() from err

    def _report(self, arg: ReportHoursInput) -> ReportHoursResult:
        link = self.store.get_marketplace_link(arg.customer_id, arg.marketplace)
        if link is None:
            missing = ProviderCustomerMissing(
                f"customer {arg.customer_id} has no {arg.marketplace} marketplace link: "
                f"`billbridge marketplace link {arg.customer_id} {arg.marketplace} ...`"
            )
            missing.provider, missing.customer_id = arg.marketplace, arg.customer_id
            raise missing
        # A paused connection gets nothing, not even new records queued: the workflow holds.
        self._gate(link.connection_id, arg.marketplace).before_request("reporting usage")
        client = self._client(link.connection_id)
        records = self._records(link, client, arg.hours)
        result = ReportHoursResult(next_hour=arg.hours[-1] + HOUR)
        mine = [r.record_id for r in records]
        if records:
            self.store.queue_records(link.connection_id, records)
            self._deliver(link.connection_id, client, mine)
        problems: list[str] = []
        retry = False
        for row in filter(None, (self.store.ledger_record(rid) for rid in mine)):
            result.records += 1
            if row.outcome == "accepted":
                result.accepted += 1
            elif row.outcome == "duplicate":
                result.duplicates += 1
                if not row.delivered:
                    problems.append(
                        f"{row.record_id}: the marketplace already holds "
                        f"{row.accepted_quantity} for this hour ({row.detail})"
                    )
            elif row.outcome == "needs_attention":
                problems.append(f"{row.record_id}: {row.detail}")
            else:  # retry, or still unanswered
                retry = True
        if problems:
            error: ExportError = MarketplaceNeedsAttention("; ".join(problems[:5]))
            error.provider, error.customer_id = arg.marketplace, arg.customer_id
            raise error
        if retry:
            # Throttled or unprocessed records: the retry sends them again, as saved.
            raise ProviderUnavailable(f"{arg.marketplace}: some records were not processed yet")
        last = arg.hours[-1]
        result.last_report = LastReport(
            hour=last,
            quantities={r.dimension: str(r.quantity) for r in records if r.hour_start == last},
            outcome="accepted",
        )
        return result

    # -- what each hour reports ----------------------------------------------------------------

    def _records(
        self, link: MarketplaceLink, client: MarketplaceClient, hours: Sequence[datetime]
    ) -> list[UsageRecord]:
        """The hours' records: the ones the ledger holds as saved (not yet delivered), new ones
        by the cumulative rule; delivered ones are done, hours the marketplace no longer takes
        are left (their usage goes out with the next hour that is)."""
        account = MarketplaceAccount(link.marketplace, dict(link.account))
        mappings = self.store.dimension_mappings(link.connection_id)
        dimensions = metered_dimensions(link, mappings)
        now = self.clock()
        earlier: dict[str, list[LedgerRecord]] = {
            dimension: self.store.ledger(
                link.customer_id, BEGINNING, dimension=dimension, until=hours[-1] + HOUR
            )
            for dimension in dimensions
        }
        records: list[UsageRecord] = []
        for hour in hours:
            open_now = still_open(hour, now, link.marketplace)
            for dimension in dimensions:
                rid = record_id(link.customer_id, dimension, hour)
                kept = next((r for r in earlier[dimension] if r.record_id == rid), None)
                if kept is not None:
                    if not kept.delivered and open_now:
                        records.append(_record(link, account, dimension, hour, kept.quantity))
                    elif not counts_as_reported(kept, now):
                        _carried_forward(link, dimension, hour, kept.quantity, kept.detail)
                    continue
                if not open_now:
                    _carried_forward(link, dimension, hour, None, "never sent")
                    continue
                reported = sum(
                    (
                        r.quantity
                        for r in earlier[dimension]
                        if r.hour_start < hour and counts_as_reported(r, now)
                    ),
                    Decimal(0),
                )
                ingested = ingested_to_date(self.store, link, mappings, dimension, hour + HOUR)
                quantity = _sendable(
                    hour_quantity(ingested, reported, integers=_integers(link, client))
                )
                if quantity == 0 and not client.reports_zero:
                    continue
                records.append(_record(link, account, dimension, hour, quantity))
                earlier[dimension].append(_pending(link, dimension, hour, quantity))
        return records

    # -- sending, batched across customers ------------------------------------------------------

    def _deliver(self, connection_id: str, client: MarketplaceClient, mine: list[str]) -> None:
        """Send the queued records of the connection (ours and other customers') in batches,
        until each of ours has an answer.

        A full batch goes at once; a partial one only when its oldest record waited
        `metering_gather_seconds` for other customers' records of the same hour. Whoever finds
        a batch ready sends it; a request that carries our records and that nobody is sending
        (its sender crashed or failed) is resent here (activities/store/metering_queue.py).
        """
        gather = self.settings.metering_gather_seconds
        limit = self._batch_size(connection_id, client)
        now = self.clock()
        # Records left queued after this (past their window meanwhile, or unlinked): the caller
        # sees them unanswered and the activity is retried.
        deadline = time.monotonic() + gather + RESEND_AFTER.total_seconds()
        while True:
            saved = self.store.batch_queued(
                connection_id, self._builder(client, now, gather, limit)
            )
            self._send_all(client, saved, mine)
            rows = [self.store.ledger_record(rid) for rid in mine]
            waiting = [r for r in rows if r is not None and r.outcome in (QUEUED, "pending")]
            if not waiting or time.monotonic() >= deadline:
                return
            carrying = self.store.requests_carrying(mine)
            stale = {
                request.id: request
                for request in carrying.values()
                if request.id not in self._in_flight
                and request_age(request, datetime.now(UTC)) >= RESEND_AFTER.total_seconds()
            }
            if stale:
                self._send_all(client, list(stale.values()), mine)
                continue
            if not saved:
                activity.heartbeat("waiting for a batch of several customers' records")
                time.sleep(0.1)

    def _batch_size(self, connection_id: str, client: MarketplaceClient) -> int:
        """Records per call: the connection's `batch_size` (`connections add --batch-size`),
        else the marketplace's maximum."""
        row = self.store.get_connection(connection_id)
        value = (row.settings if row is not None else {}).get("batch_size")
        if value is None:
            return client.max_batch
        size = int(value)
        if not 1 <= size <= client.max_batch:
            raise ProviderSetupNeeded(
                f"connection {connection_id}: batch_size {size} is not 1 to {client.max_batch}"
            )
        return size

    @staticmethod
    def _builder(
        client: MarketplaceClient, now: datetime, gather: float, limit: int
    ) -> RequestBuilder:
        """Queued records -> the requests ready to go: grouped by the client's batch key, at
        most `limit` each; a group's last, partial request only once its oldest record
        waited `gather` seconds. Records never sent yet share requests across customers; a
        record going again goes at once in its own customer's requests, so a batch refused as
        a whole (one customer's bad license) delays the others once, never twice. Hours past
        their window are left out (the marketplace would refuse the whole batch); their usage
        goes out later."""

        def build(queued: list[QueuedRecord]) -> list[PreparedReport]:
            groups: dict[tuple[str, str], list[QueuedRecord]] = {}
            for item in queued:
                record = item.record
                if not still_open(record.hour_start, now, record.account.marketplace):
                    continue
                owner = "" if item.first_send else record.customer_id
                groups.setdefault((client.batch_key(record), owner), []).append(item)
            ready: list[PreparedReport] = []
            moment = datetime.now(UTC)
            for (_, owner), group in groups.items():
                for start in range(0, len(group), limit):
                    chunk = group[start : start + limit]
                    oldest = min(item.queued_at for item in chunk)
                    waited = (moment - oldest).total_seconds()
                    if len(chunk) == limit or owner or waited >= gather:
                        ready.append(client.prepare([item.record for item in chunk]))
            return ready

        return build

    def _send_all(
        self, client: MarketplaceClient, requests: Sequence[SavedRequest], mine: list[str]
    ) -> None:
        """Send each saved request and record the answers. A request refused as a whole holds
        nothing at the marketplace: with several customers in it, each sends its records again
        on its own (so the one at fault is found and the others go on); with one, its records
        need attention. A retryable failure leaves the request to be resent as saved. Raises
        the error of a request that carries our records, after the others were sent."""
        ours = set(mine)
        our_error: ExportError | None = None
        for saved in requests:
            carries_ours = bool(ours & set(saved.record_ids))
            with self._lock:
                self._in_flight.add(saved.id)
            try:
                activity.heartbeat(f"sending {len(saved.record_ids)} record(s)")
                # Paused meanwhile: the request stays saved, unanswered, and goes as saved
                # once the connection is resumed.
                self._gate(saved.connection_id, saved.marketplace).before_request(
                    f"sending {len(saved.record_ids)} record(s)"
                )
                try:
                    answers = client.send(saved.report())
                except ExportError as err:
                    if carries_ours and our_error is None:
                        our_error = err
                    if err.retryable:
                        continue
                    rows = (self.store.ledger_record(rid) for rid in saved.record_ids)
                    several = len({row.customer_id for row in rows if row is not None}) > 1
                    outcome = Outcome.RETRY if several else Outcome.NEEDS_ATTENTION
                    why = f"{'refused with others' if several else 'refused'}: {err}"
                    answers = [RecordResult(rid, outcome, detail=why) for rid in saved.record_ids]
                    if several:
                        activity.logger.warning("a batch of several customers refused: %s", err)
                        if our_error is err:
                            our_error = None  # ours go again on their own: a retry, not an error
                self.store.record_answers(saved.id, answers)
            finally:
                with self._lock:
                    self._in_flight.discard(saved.id)
        if our_error is not None:
            raise our_error

    # -- clients -------------------------------------------------------------------------------

    def _gate(self, connection_id: str, marketplace: str) -> RequestGate:
        """The connection's gate: its pause switch (marketplaces get no rate of their own)."""
        return self.gates(connection_id, marketplace_entry(marketplace).label, None)

    def _client(self, connection_id: str) -> MarketplaceClient:
        """The connection's client, built again when the connection changed."""
        row = self.store.get_connection(connection_id)
        stamp = row.updated_at if row is not None else None
        with self._lock:
            cached = self._clients.get(connection_id)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        config = self.store.marketplace_config(connection_id, self._secrets())
        client = load_client(config.marketplace)(self.settings, config)
        with self._lock:
            self._clients[connection_id] = (stamp, client)
        return client

    def _secrets(self) -> SecretBox:
        if self._box is None:
            self._box = SecretBox.from_settings(self.settings)
        return self._box


def metered_dimensions(link: MarketplaceLink, mappings: Sequence[DimensionMapping]) -> list[str]:
    """The dimensions a link reports: its mapped ones, or its one billing-amount dimension
    (MarketplaceLink's validation makes sure it has one)."""
    if link.mode == "billing_amount":
        if not link.billing_amount_dimension:
            raise ProviderRejected(
                f"customer {link.customer_id}: billing_amount mode needs a dimension"
            )
        return [link.billing_amount_dimension]
    return sorted({m.dimension for m in mappings})


def ingested_to_date(
    store: Store,
    link: MarketplaceLink,
    mappings: Sequence[DimensionMapping],
    dimension: str,
    until: datetime,
) -> Decimal:
    """The customer's usage of `dimension` before `until`, after unit conversion: what the
    cumulative rule (core/metering.py) and `marketplace reconcile` compare reports with."""
    if link.mode == "billing_amount":
        # Charges to date (dollars) as cents: the dimension is priced at $0.01.
        charges = store.charges_to_date(
            link.customer_id,
            until,
            event_name=BILLING_AMOUNT_EVENT,
            property=BILLING_AMOUNT_PROPERTY,
        )
        return charges * CENTS
    ours = [m for m in mappings if m.dimension == dimension]
    return store.usage_totals(link.customer_id, BEGINNING, until, ours).get(dimension, Decimal(0))


def _integers(link: MarketplaceLink, client: MarketplaceClient) -> bool:
    # Billing-amount mode reports whole cents whatever the marketplace takes.
    return client.integer_quantities or link.mode == "billing_amount"


def _sendable(quantity: Decimal) -> Decimal:
    """At most FRACTION_PLACES decimals (rounded down: the rest stays owed), written without
    trailing zeros or an exponent."""
    kept = quantity.quantize(Decimal(1).scaleb(-FRACTION_PLACES), rounding=ROUND_FLOOR)
    return kept.to_integral_value() if kept == kept.to_integral_value() else kept.normalize()


def _record(
    link: MarketplaceLink,
    account: MarketplaceAccount,
    dimension: str,
    hour: datetime,
    quantity: Decimal,
) -> UsageRecord:
    return UsageRecord(
        record_id=record_id(link.customer_id, dimension, hour),
        customer_id=link.customer_id,
        account=account,
        dimension=dimension,
        hour_start=hour,
        quantity=quantity,
    )


def _carried_forward(
    link: MarketplaceLink, dimension: str, hour: datetime, quantity: Decimal | None, why: str
) -> None:
    """Said in the worker's log (and the activity's): the hour's window closed before the
    marketplace took it, so its usage goes out with the next hour it still takes."""
    activity.logger.warning(
        "%s %s: %s hour %s is past its window (%s); its usage%s goes out with the next open hour",
        link.customer_id,
        link.marketplace,
        dimension,
        hour.isoformat(),
        why,
        "" if quantity is None else f" ({quantity})",
    )


def _pending(
    link: MarketplaceLink, dimension: str, hour: datetime, quantity: Decimal
) -> LedgerRecord:
    """An in-memory ledger row for a record this call is about to save: later hours of the same
    call count it as reported."""
    return LedgerRecord(
        record_id=record_id(link.customer_id, dimension, hour),
        customer_id=link.customer_id,
        marketplace=link.marketplace,
        connection_id=link.connection_id,
        dimension=dimension,
        hour_start=hour,
        quantity=quantity,
        request_id=0,
        saved_at=datetime.now(UTC),
    )
