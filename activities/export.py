"""The export steps as activities: small methods on a class that holds the store and providers.

Each step loads what it needs from the store by id (history carries ids only), does its I/O, and
turns every failure into a Temporal error whose retry decision is made in core/errors.py.
Every failed attempt is also written to the store (export_attempts), so nothing fails silently.
"""

from __future__ import annotations

import functools
import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

import sqlalchemy.exc
from temporalio import activity

from billbridge.activities.providers import PROVIDERS, ProviderFactory
from billbridge.activities.providers.base import (
    ConnectionConfig,
    InvoiceProvider,
    Plan,
    PushContext,
    check_plan,
)
from billbridge.activities.providers.gate import store_gates
from billbridge.activities.providers.stripe_minimums import below_minimum_charge, minimum_charge
from billbridge.activities.secrets import SecretBox
from billbridge.activities.store import Store
from billbridge.core import activity_names as names
from billbridge.core.breakdown import (
    InvoiceBreakdown,
    InvoiceInconsistent,
    break_down,
)
from billbridge.core.config import Settings
from billbridge.core.connections import ConnectionSettings
from billbridge.core.errors import (
    UNEXPECTED_ERROR_ATTEMPTS,
    ConnectionAmbiguous,
    ConnectionDisabled,
    ExportError,
    InvalidInvoice,
    PlanChanged,
    ProviderCustomerMissing,
    UnexpectedError,
    UnknownCustomer,
    UnmappedItems,
)
from billbridge.core.messages import (
    CustomerLinkResult,
    Decision,
    ExportInvoiceInput,
    ExportStatus,
    MappingResult,
    Prepared,
    PrepareInput,
    PushInput,
    PushPlanInput,
    PushResult,
    RecordInput,
    StepInput,
)
from billbridge.core.models import EXPORTABLE_PROVIDERS, Invoice, LineItem
from billbridge.core.money import InexactAmountError

LINE_PAGE = 1000  # lines read from the store per query
DEFAULT_ITEM = "*"  # mapping key of a connection's default item
# Account setting `connection.<provider>`: which connection of several exports to a provider.
CONNECTION_SETTING = "connection."

P = ParamSpec("P")
R = TypeVar("R")


# Unexpected errors that are passing conditions, not bugs: the store or the network being away
# for a while. They are retried for as long as they last, like a provider's 5xx.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,
    ConnectionError,
    TimeoutError,
)


def _step(step: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Record each failed attempt in the store and raise it with its retry decision.

    An unexpected error (a bug) is retried a few times, then raised as UnexpectedError, which
    waits as needs attention with the error text instead of retrying every minute forever.
    """

    def decorate(method: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(method)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            self, request = args[0], args[1]
            try:
                return method(*args, **kwargs)
            except ExportError as err:
                _note_attempt(self, request, step, f"{err.type_name}: {err}", err.provider)
                raise err.to_application_error() from err
            except Exception as err:
                text = f"{type(err).__name__}: {err}"
                _note_attempt(self, request, step, text)
                attempt = activity.info().attempt
                if isinstance(err, TRANSIENT_ERRORS) or attempt < UNEXPECTED_ERROR_ATTEMPTS:
                    raise
                raise UnexpectedError(
                    f"step {step} failed {attempt} times in a row with {text}; once the cause "
                    "is fixed (and deployed), `billbridge attention retry` resumes the export"
                ).to_application_error() from err

        return wrapper

    return decorate


def _note_attempt(activities: Any, request: Any, step: str, error: str, provider: str = "") -> None:
    try:
        provider = provider or getattr(request, "provider", "") or "none"
        activities.store.add_attempt(request.invoice_id, provider, step, error[:2000])
    except Exception:  # the store being down must not hide the original error
        activity.logger.exception("could not record the failed attempt")


def plan_digest(plan: Plan) -> str:
    """A fingerprint of the exact requests a plan makes: what was checked is what is pushed."""
    text = json.dumps(plan.requests(), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class PreparedExport:
    """What an export would do, computed by the one path the prepare step and `export
    --dry-run` share: the decision and, when it exports, the checked plan."""

    decision: Decision
    plan: Plan | None = None
    provider_customer_id: str = ""
    # How the provider customer was found: "payment_provider_id", "stored link", or (dry runs)
    # what create_missing_customers would do at push time.
    customer_source: str = ""


# The id a dry run shows for a customer that the export would find by e-mail or create.
CUSTOMER_FOUND_OR_CREATED_AT_PUSH = "{customer found by e-mail or created at push}"
PLAN_CACHE_SIZE = 256  # checked plans kept per worker for the push step


@dataclass(frozen=True)
class StoredCredential:
    """A connection's sealed credential as an OAuth provider reads and rotates it."""

    store: Store
    secrets: Callable[[], SecretBox]
    connection_id: str

    def read(self) -> tuple[str | None, str | None]:
        row = self.store.get_connection(self.connection_id)
        if row is None or not row.credentials_ref:
            return None, None
        return row.credentials_ref, self.secrets().open(row.credentials_ref, self.connection_id)

    def replace(self, expected_version: str | None, credential: str) -> str | None:
        sealed = self.secrets().seal(credential, self.connection_id)
        if self.store.replace_credentials(self.connection_id, expected_version, sealed):
            return sealed
        return None


@dataclass(frozen=True)
class AccountSettings:
    """Account-wide routing: `billbridge settings set default_provider|export_customers ...`."""

    default_provider: str | None = None
    export_customers: frozenset[str] | None = None  # None: every customer

    @classmethod
    def from_store(cls, store: Store) -> AccountSettings:
        raw = store.account_settings()
        default = raw.get("default_provider")
        customers = raw.get("export_customers", "all")
        return cls(
            default_provider=str(default) if default else None,
            export_customers=None
            if customers == "all" or not isinstance(customers, list)
            else frozenset(str(c) for c in customers),
        )


class ExportActivities:
    def __init__(
        self,
        store: Store,
        settings: Settings,
        providers: Mapping[str, ProviderFactory] = PROVIDERS,
    ) -> None:
        self.store = store
        self.settings = settings
        self._factories = providers
        # Every provider request passes its connection's gate in the store: the pause switch
        # and the rate every worker shares (activities/providers/gate.py).
        self.gates = store_gates(store)
        # Built once per connection version: a connection changed through the CLI (new API
        # key, other settings) gets a fresh provider on the next step.
        self._providers: dict[str, tuple[object, InvoiceProvider, ConnectionConfig]] = {}
        self._lock = threading.Lock()
        self._secrets: SecretBox | None = None
        self._plans: OrderedDict[tuple[str, str], Plan] = OrderedDict()

    def provider_and_config(
        self, name: str, connection_id: str
    ) -> tuple[InvoiceProvider, ConnectionConfig]:
        """The provider for a connection, and the connection's settings and credential.

        One store read per call; the credential is opened, and the provider built, only when
        the connection changed since the last call.
        """
        row = self.store.get_connection(connection_id)
        stamp = row.updated_at if row is not None else None
        with self._lock:
            cached = self._providers.get(connection_id)
        if cached is not None and cached[0] == stamp:
            return cached[1], cached[2]
        credentials = StoredCredential(self.store, self.secrets, connection_id)
        config = ConnectionConfig(
            connection_id, None, ConnectionSettings(), True, credentials, self.gates
        )
        if row is not None:
            api_key = None
            if row.credentials_ref:
                api_key = self.secrets().open(row.credentials_ref, connection_id)
            settings = ConnectionSettings.model_validate(row.settings)
            config = ConnectionConfig(
                connection_id, api_key, settings, row.enabled, credentials, self.gates
            )
        provider = self._factories[name](self.settings, config)
        with self._lock:
            self._providers[connection_id] = (stamp, provider, config)
        return provider, config

    def secrets(self) -> SecretBox:
        if self._secrets is None:
            self._secrets = SecretBox.from_settings(self.settings)
        return self._secrets

    def provider(self, name: str, connection_id: str) -> InvoiceProvider:
        return self.provider_and_config(name, connection_id)[0]

    def activities(self) -> list[Callable[..., Any]]:
        return [
            self.prepare_export,
            self.push_planned_invoice,
            # The steps of workflows that started before the one-pass export.
            self.decide_export,
            self.lookup_mappings,
            self.link_customer,
            self.push_invoice,
            self.record_export,
        ]

    def _remember_plan(self, invoice_id: str, digest: str, plan: Plan) -> None:
        with self._lock:
            self._plans[(invoice_id, digest)] = plan
            self._plans.move_to_end((invoice_id, digest))
            while len(self._plans) > PLAN_CACHE_SIZE:
                self._plans.popitem(last=False)

    def _take_plan(self, invoice_id: str, digest: str) -> Plan | None:
        with self._lock:
            return self._plans.pop((invoice_id, digest), None)

    # -- loading ---------------------------------------------------------------------------------

    def load_invoice(self, invoice_id: str) -> tuple[Invoice, list[LineItem]]:
        header = self.store.get_invoice_header(invoice_id)
        if header is None:
            raise InvalidInvoice(
                f"invoice {invoice_id} is not in billbridge's store; submit it with "
                "`billbridge export` (or billbridge.starter.submit_invoice) first"
            )
        lines: list[LineItem] = []
        while True:
            page = self.store.get_invoice_lines(invoice_id, len(lines), LINE_PAGE)
            lines.extend(page)
            if len(page) < LINE_PAGE:
                return header, lines

    def breakdown(self, invoice: Invoice, lines: list[LineItem]) -> InvoiceBreakdown:
        try:
            return break_down(invoice, lines)
        except (InvoiceInconsistent, InexactAmountError) as err:
            raise InvalidInvoice(f"invoice {invoice.id}: {err}") from err

    def plan(
        self,
        invoice_id: str,
        provider_name: str,
        connection_id: str,
        provider_customer_id: str,
        now: float,
    ) -> tuple[Plan, InvoiceBreakdown]:
        """Plan and check the stored invoice (no writes): the push steps, when the plan the
        prepare step checked is not at hand."""
        invoice, lines = self.load_invoice(invoice_id)
        provider = self.provider(provider_name, connection_id)
        breakdown, items = self.resolved_items(provider, connection_id, invoice, lines)
        plan = provider.plan(invoice, breakdown, items, provider_customer_id, now)
        check_plan(plan, breakdown)
        return plan, breakdown

    def resolved_items(
        self,
        provider: InvoiceProvider,
        connection_id: str,
        invoice: Invoice,
        lines: list[LineItem],
    ) -> tuple[InvoiceBreakdown, dict[str, str]]:
        """The invoice's breakdown, and mapping key -> the provider item each line carries."""
        breakdown = self.breakdown(invoice, lines)
        # Line kinds a provider puts on its own fields, not on mapped items (QuickBooks: tax).
        unmapped_kinds: frozenset[str] = getattr(provider, "unmapped_kinds", frozenset())
        mappings = self.mapped_items(connection_id, invoice, lines, breakdown, unmapped_kinds)
        resolved = provider.resolve_items(set(mappings.values()))
        items = {key: resolved[item] for key, item in mappings.items()}
        # Providers that map more than items (QuickBooks: tax codes, `tax:<rate>`) read and
        # check those mappings here, before anything is written.
        resolve_more = getattr(provider, "resolve_more_mappings", None)
        if resolve_more is not None:
            items.update(
                resolve_more(breakdown, lambda keys: self.store.get_mappings(connection_id, keys))
            )
        return breakdown, items

    def mapped_items(
        self,
        connection_id: str,
        invoice: Invoice,
        lines: list[LineItem],
        breakdown: InvoiceBreakdown,
        unmapped_kinds: frozenset[str] = frozenset(),
    ) -> dict[str, str]:
        """Mapping key -> provider item for every line (but those of `unmapped_kinds`); the
        connection's default item (`*`) stands in for unmapped keys. UnmappedItems lists every
        key left without one."""
        keys = {line.mapping_key for line in breakdown.lines if line.kind not in unmapped_kinds}
        found = self.store.get_mappings(connection_id, keys | {DEFAULT_ITEM})
        default = found.pop(DEFAULT_ITEM, None)
        missing = sorted(keys - set(found))
        if missing and default is None:
            raise _unmapped_error(invoice, lines, missing)
        return {key: found.get(key) or str(default) for key in keys}

    def provider_customer(
        self,
        decision: Decision,
        provider: InvoiceProvider,
        config: ConnectionConfig,
        *,
        write: bool,
        currency: str | None = None,
    ) -> tuple[str, str]:
        """The provider customer an export links to, and where it came from.

        The billing customer's own payment_provider_id wins, else the link stored earlier;
        either is checked at the provider. Without one (or when it is gone) and with
        create_missing_customers, the customer is found by e-mail or created -- only when
        `write`; a dry run shows that this would happen.
        """
        customer = self.store.get_customer(decision.customer_id)
        if customer is None:
            raise UnknownCustomer(f"customer {decision.customer_id} is unknown to billbridge")
        stored = self.store.get_customer_link(decision.connection_id, customer.id)
        known = customer.payment_provider_id or stored
        if known:
            try:
                provider.check_customer(known)
                source = "payment_provider_id" if customer.payment_provider_id else "stored link"
                if write and stored != known:
                    self.store.link_customer(decision.connection_id, customer.id, known)
                return known, source
            except ProviderCustomerMissing:
                if not config.settings.create_missing_customers:
                    raise
        if not write:
            return (
                CUSTOMER_FOUND_OR_CREATED_AT_PUSH,
                "create_missing_customers: found by e-mail or created when the export runs",
            )
        # Looked up by e-mail, else created (idempotently, keyed by the billing id).
        # A customer created for the export gets the invoice's currency (QuickBooks fixes a
        # customer's currency at creation).
        creating = customer.model_copy(update={"currency": currency}) if currency else customer
        provider_customer_id = provider.find_or_create_customer(creating)
        self.store.link_customer(decision.connection_id, customer.id, provider_customer_id)
        return provider_customer_id, "found by e-mail or created"

    def prepare(
        self, invoice: Invoice, lines: list[LineItem], now: float, *, write: bool
    ) -> PreparedExport:
        """Decide, map, link, plan and check: everything before the provider write.

        The prepare step runs it on the stored invoice (`write`: it may create and link the
        provider customer); `export --dry-run` on the submitted one, writing nothing.
        """
        decision = self.decide_invoice(invoice)
        if decision.status != ExportStatus.RECEIVED:
            return PreparedExport(decision)
        try:
            provider, config = self.provider_and_config(decision.provider, decision.connection_id)
            breakdown, items = self.resolved_items(provider, decision.connection_id, invoice, lines)
            customer_id, source = self.provider_customer(
                decision, provider, config, write=write, currency=invoice.currency
            )
            plan = provider.plan(invoice, breakdown, items, customer_id, now)
            check_plan(plan, breakdown)
        except ExportError as err:
            raise _located(err, decision.provider, decision.customer_id) from None
        return PreparedExport(decision, plan, customer_id, source)

    # -- steps -----------------------------------------------------------------------------------

    @activity.defn(name=names.PREPARE_EXPORT)
    @_step("prepare")
    def prepare_export(self, request: PrepareInput) -> Prepared:
        invoice, lines = self.load_invoice(request.invoice_id)
        prepared = self.prepare(invoice, lines, request.push_started_at, write=True)
        if prepared.plan is None:  # zero total, not exported: recorded here, nothing to push
            decision = prepared.decision
            self._record(
                RecordInput(
                    invoice_id=invoice.id,
                    provider=decision.provider or "none",
                    status=decision.status,
                    billing_total=decision.billing_total,
                    error=decision.reason,
                )
            )
            return Prepared(decision=decision)
        digest = plan_digest(prepared.plan)
        self._remember_plan(invoice.id, digest, prepared.plan)
        return Prepared(
            decision=prepared.decision,
            provider_customer_id=prepared.provider_customer_id,
            plan_digest=digest,
        )

    @activity.defn(name=names.PUSH_PLANNED_INVOICE)
    @_step("push")
    def push_planned_invoice(self, request: PushPlanInput) -> PushResult:
        """Write the plan the prepare step checked, then record the export."""
        plan = self._take_plan(request.invoice_id, request.plan_digest)
        if plan is None:  # another worker prepared it, or this one restarted: plan again
            plan, _ = self.plan(
                request.invoice_id,
                request.provider,
                request.connection_id,
                request.provider_customer_id,
                request.push_started_at,
            )
            if plan_digest(plan) != request.plan_digest:
                raise PlanChanged(
                    f"invoice {request.invoice_id}: what would be written to {request.provider} "
                    "changed since it was checked (a mapping or the connection changed); "
                    "planning again"
                )
        result = self._push(
            plan,
            PushInput(
                invoice_id=request.invoice_id,
                provider=request.provider,
                connection_id=request.connection_id,
                provider_customer_id=request.provider_customer_id,
                push_started_at=request.push_started_at,
            ),
        )
        self._record(
            RecordInput(
                invoice_id=request.invoice_id,
                provider=request.provider,
                status=ExportStatus.EXPORTED,
                billing_total=request.billing_total,
                push=result,
            )
        )
        return result

    @activity.defn(name=names.DECIDE)
    @_step("decide")
    def decide_export(self, request: ExportInvoiceInput) -> Decision:
        return self.decide(request.invoice_id)

    def decide(self, invoice_id: str) -> Decision:
        invoice = self.store.get_invoice_header(invoice_id)
        if invoice is None:
            raise InvalidInvoice(f"invoice {invoice_id} is not in billbridge's store")
        return self.decide_invoice(invoice)

    def decide_invoice(self, invoice: Invoice) -> Decision:
        """Zero total? Which provider? Store reads only; errors carry the customer's id."""
        try:
            return self._decide(invoice)
        except ExportError as err:
            raise _located(err, "", invoice.customer.id) from None

    def _decide(self, invoice: Invoice) -> Decision:
        decision = Decision(
            invoice_id=invoice.id,
            customer_id=invoice.customer.id,
            status=ExportStatus.RECEIVED,
            currency=invoice.currency,
            billing_total=str(invoice.total),
        )
        if invoice.total == 0:
            return decision.model_copy(
                update={
                    "status": ExportStatus.SKIPPED_ZERO_TOTAL,
                    "reason": "the invoice total is zero; zero-total invoices are not exported",
                }
            )
        customer = self.store.get_customer(invoice.customer.id)
        if customer is None:
            raise UnknownCustomer(
                f"customer {invoice.customer.id} of invoice {invoice.id} is unknown to "
                "billbridge; upsert it with `billbridge customers upsert` first"
            )
        account = AccountSettings.from_store(self.store)
        if account.export_customers is not None and customer.id not in account.export_customers:
            return decision.model_copy(
                update={
                    "status": ExportStatus.NOT_EXPORTED,
                    "reason": f"export is enabled for a list of customers, and {customer.id} "
                    "is not on it (billbridge settings set export_customers ...)",
                }
            )
        # The customer's own payment_provider wins; the account's default fills in for
        # customers that have none.
        provider = customer.payment_provider or account.default_provider
        if provider is None or provider not in EXPORTABLE_PROVIDERS:
            return decision.model_copy(
                update={
                    "status": ExportStatus.NOT_EXPORTED,
                    "provider": provider or "",
                    "reason": f"customer {customer.id} has payment_provider {provider!r}, "
                    "which is not an invoicing provider, and no default provider applies; "
                    "nothing to export",
                }
            )
        if provider not in self._factories:
            return decision.model_copy(
                update={
                    "status": ExportStatus.NOT_EXPORTED,
                    "provider": provider,
                    "reason": f"billbridge has no {provider} exporter yet "
                    f"(available: {', '.join(sorted(self._factories))})",
                }
            )
        connection_id = self._connection_for(provider, customer.id)
        _, config = self.provider_and_config(provider, connection_id)
        if not config.enabled:
            raise _located(
                ConnectionDisabled(
                    f"connection {connection_id} is disabled; `billbridge connections enable "
                    f"{connection_id}` lets this export go on"
                ),
                provider,
                customer.id,
            )
        skip = _skipped_by_connection(invoice, config)
        if skip:
            return decision.model_copy(
                update={"status": ExportStatus.NOT_EXPORTED, "provider": provider, "reason": skip}
            )
        can_link = (
            customer.payment_provider_id
            or self.store.get_customer_link(connection_id, customer.id)
            or config.settings.create_missing_customers
        )
        if not can_link:
            raise _located(
                ProviderCustomerMissing(
                    f"customer {customer.id} has payment_provider {provider!r} but no "
                    "payment_provider_id; set it with `billbridge customers upsert`, or let the "
                    "connection find or create it (connections set ... "
                    "create_missing_customers=true)"
                ),
                provider,
                customer.id,
            )
        return decision.model_copy(update={"provider": provider, "connection_id": connection_id})

    def _connection_for(self, provider: str, customer_id: str) -> str:
        """The connection an export to `provider` goes through.

        The one stored connection of that provider; of several, the one the account setting
        `connection.<provider>` names (else the export waits, naming the choices); with none,
        the provider's name: its default connection, on the environment's credentials.
        """
        ids = [row.id for row in self.store.list_connections() if row.provider == provider]
        if not ids:
            return provider
        if len(ids) == 1:
            return ids[0]
        chosen = self.store.account_settings().get(f"{CONNECTION_SETTING}{provider}")
        if chosen in ids:
            return str(chosen)
        named = f"names {chosen!r}, not one of them" if chosen else "is not set"
        raise _located(
            ConnectionAmbiguous(
                f"{len(ids)} connections export to {provider} ({', '.join(ids)}) and the "
                f"account setting {CONNECTION_SETTING}{provider} {named}; choose one with "
                f"`billbridge settings set {CONNECTION_SETTING}{provider} ID`"
            ),
            provider,
            customer_id,
        )

    @activity.defn(name=names.LOOKUP_MAPPINGS)
    @_step("lookup_mappings")
    def lookup_mappings(self, request: StepInput) -> MappingResult:
        invoice, lines = self.load_invoice(request.invoice_id)
        provider = self.provider(request.provider, request.connection_id)
        _, items = self.resolved_items(provider, request.connection_id, invoice, lines)
        return MappingResult(mapped_keys=len(items), line_count=len(lines))

    @activity.defn(name=names.LINK_CUSTOMER)
    @_step("link_customer")
    def link_customer(self, request: StepInput) -> CustomerLinkResult:
        invoice = self.store.get_invoice_header(request.invoice_id)
        assert invoice is not None  # decide_export checked it
        provider, config = self.provider_and_config(request.provider, request.connection_id)
        decision = Decision(
            invoice_id=invoice.id,
            customer_id=invoice.customer.id,
            status=ExportStatus.LINKING_CUSTOMER,
            provider=request.provider,
            connection_id=request.connection_id,
        )
        provider_customer_id, _ = self.provider_customer(
            decision, provider, config, write=True, currency=invoice.currency
        )
        return CustomerLinkResult(provider_customer_id=provider_customer_id)

    @activity.defn(name=names.PUSH_INVOICE)
    @_step("push")
    def push_invoice(self, request: PushInput) -> PushResult:
        plan, _ = self.plan(
            request.invoice_id,
            request.provider,
            request.connection_id,
            request.provider_customer_id,
            request.push_started_at,
        )
        return self._push(plan, request)

    def _push(self, plan: Plan, request: PushInput) -> PushResult:
        """The provider write: resumes from what an earlier attempt wrote."""
        record = self.store.get_export(request.invoice_id, request.provider)

        def remember(external_id: str) -> None:
            self.store.upsert_export(
                request.invoice_id,
                request.provider,
                status=ExportStatus.PUSHING.value,
                external_id=external_id,
            )

        def remember_issued(external_id: str, external_url: str) -> None:
            self.store.upsert_export(
                request.invoice_id,
                request.provider,
                status=ExportStatus.PUSHING.value,
                external_id=external_id,
                external_url=external_url,
            )

        context = PushContext(
            invoice_id=request.invoice_id,
            provider_customer_id=request.provider_customer_id,
            push_started_at=request.push_started_at,
            known_external_id=record.external_id if record is not None else None,
            # A record gets its external URL when its invoice is issued (remember_issued, or
            # the export's result): a draft's record has none.
            known_external_issued=record is not None and bool(record.external_url),
            may_have_written=activity.info().attempt > 1
            or (record is not None and record.status in ("pushing", "failed")),
            heartbeat=lambda detail: activity.heartbeat(detail),
            remember_external_id=remember,
            remember_issued=remember_issued,
        )
        return self.provider(request.provider, request.connection_id).push(plan, context)

    @activity.defn(name=names.RECORD_EXPORT)
    @_step("record")
    def record_export(self, request: RecordInput) -> None:
        self._record(request)

    def _record(self, request: RecordInput) -> None:
        fields: dict[str, object] = {
            "status": request.status.value,
            "billing_total": request.billing_total,
            "error": request.error or None,
        }
        if request.push is not None:
            fields.update(
                external_id=request.push.external_id,
                external_url=request.push.external_url,
                provider_total=request.push.provider_total,
                provider_amount_due=request.push.provider_amount_due,
                line_count=request.push.provider_line_count,
                request_count=request.push.request_count,
            )
        self.store.upsert_export(request.invoice_id, request.provider, **fields)


def _skipped_by_connection(invoice: Invoice, config: ConnectionConfig) -> str:
    """Why the connection's settings keep this invoice from being exported ("" if they do not)."""
    settings = config.settings
    issued = invoice.invoice_date.date()
    if settings.cutover_date is not None and issued < settings.cutover_date:
        return (
            f"issued {issued}, before the cutover date {settings.cutover_date} of connection "
            f"{config.connection_id}"
        )
    if settings.minimum_amount is not None and abs(invoice.total) < settings.minimum_amount:
        return (
            f"total {invoice.total} is below the minimum amount {settings.minimum_amount} of "
            f"connection {config.connection_id}"
        )
    # Only a Stripe setting (ConnectionSettings.applies_to): Stripe would mark such an invoice
    # paid and carry its amount to the customer's balance (activities/providers/stripe_minimums).
    if settings.skip_below_minimum and below_minimum_charge(invoice.amount_due, invoice.currency):
        return (
            f"amount due {invoice.amount_due} {invoice.currency.upper()} is below Stripe's "
            f"minimum charge {minimum_charge(invoice.currency)} (skip_below_minimum of "
            f"connection {config.connection_id})"
        )
    return ""


def _unmapped_error(invoice: Invoice, lines: list[LineItem], missing: list[str]) -> UnmappedItems:
    names_by_item = {line.price.item.id: line.price.item.name for line in lines}
    described = [
        f"{key} ({names_by_item[key]})" if key in names_by_item else key for key in missing
    ]
    return UnmappedItems(
        f"invoice {invoice.id} has {len(missing)} unmapped item(s): {', '.join(described)}; "
        "map each with `billbridge mappings set`"
    )


def _located(err: ExportError, provider: str, customer_id: str) -> ExportError:
    """The error with the connection and customer it concerns filled in (when not set)."""
    err.provider = err.provider or provider
    err.customer_id = err.customer_id or customer_id
    return err
