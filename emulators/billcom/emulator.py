"""The public :class:`BillcomEmulator`: BILL's v3 login and AR API for one organization."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from ..serving import EmulatorService
from .access import SESSION_IDLE_SECONDS, Account, Clock, Limits, Sessions
from .requestlog import LoggedRequest, RequestLog
from .server import ApiCore, EmulatorHTTPServer
from .state import Organization, Store

# The emulator's test account (activities/providers/billcom_client.py has the same values for
# the default connection). Test values, not secrets.
DEFAULT_DEV_KEY = "billbridge-emulator-devkey"
DEFAULT_ORGANIZATION_ID = "00801BILLBRIDGEEMU001"
DEFAULT_USERNAME = "emulator@billbridge.test"
DEFAULT_PASSWORD = "billbridge-emulator-password"
DEFAULT_USER_ID = "00601BILLBRIDGEEMU001"


class BillcomEmulator(EmulatorService[LoggedRequest]):
    """Serve BILL's v3 API (login, customers, items, invoices) for one organization on
    ``host:port`` from a daemon thread.

    One account: ``dev_key``, ``organization_id``, ``username``, ``password``. Limits as BILL
    documents them, each ``None`` to turn it off: ``logins_per_hour`` (200), ``logins_per_minute``
    (5), ``requests_per_hour`` (20,000), ``concurrent_requests`` (3); ``limit_status`` is the HTTP
    status of BDC_1144 and BDC_1322 (undocumented: UNCONFIRMED, 400 by default).
    ``session_idle_seconds``: a session ends after this long without a call (35 minutes).
    ``create_status``: HTTP status of a create (UNCONFIRMED 200 or 201; 200 by default).
    ``invoice_currencies``: currencies the organization's customers may invoice in (USD, plus
    what international AR allows). ``unique_invoice_numbers``, ``item_field``,
    ``allow_negative_prices``, ``quantity_places``, ``price_places``: points BILL's docs leave
    open (state.Organization). ``advance(seconds)`` moves the emulator's clock.
    """

    thread_name = "billcom-emulator"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        dev_key: str = DEFAULT_DEV_KEY,
        organization_id: str = DEFAULT_ORGANIZATION_ID,
        username: str = DEFAULT_USERNAME,
        password: str = DEFAULT_PASSWORD,
        organization_name: str = "billbridge BILL emulator",
        logins_per_hour: int | None = 200,
        logins_per_minute: int | None = 5,
        requests_per_hour: int | None = 20_000,
        concurrent_requests: int | None = 3,
        limit_status: int = 400,
        session_idle_seconds: float = SESSION_IDLE_SECONDS,
        create_status: int = 200,
        invoice_currencies: Iterable[str] = ("USD",),
        unique_invoice_numbers: bool = False,
        item_field: str = "either",
        allow_negative_prices: bool = True,
        quantity_places: int = 5,
        price_places: int = 5,
    ) -> None:
        log = RequestLog()
        super().__init__(host, port, log)
        self.clock = Clock()
        self.account = Account(dev_key, organization_id, username, password, DEFAULT_USER_ID)
        self.sessions = Sessions(
            self.account,
            self.clock,
            idle_seconds=session_idle_seconds,
            logins_per_hour=logins_per_hour,
            logins_per_minute=logins_per_minute,
            limit_status=limit_status,
        )
        self.limits = Limits(
            self.clock,
            requests_per_hour=requests_per_hour,
            concurrent_requests=concurrent_requests,
            limit_status=limit_status,
        )
        if item_field not in ("either", "classifications", "itemId"):
            raise ValueError("item_field: either, classifications or itemId")
        self.organization = Organization(
            organization_id=organization_id,
            name=organization_name,
            invoice_currencies=frozenset(c.upper() for c in invoice_currencies),
            unique_invoice_numbers=unique_invoice_numbers,
            item_field=item_field,
            allow_negative_prices=allow_negative_prices,
            quantity_places=quantity_places,
            price_places=price_places,
        )
        self.store = Store(self.organization, self.clock.now)
        self.core = ApiCore(
            store=self.store,
            sessions=self.sessions,
            limits=self.limits,
            faults=self._faults,
            log=log,
            clock=self.clock,
            create_status=create_status,
            sleep=time.sleep,
        )

    # -- start, stop, port, base_url, faults and requests: see EmulatorService --------------

    def _make_server(self, address: tuple[str, int]) -> EmulatorHTTPServer:
        return EmulatorHTTPServer(address, self.core)

    @property
    def gateway_url(self) -> str:
        """The base URL in BILL's own form, with the gateway's ``/connect``."""
        return f"{self.base_url}/connect"

    def credentials(self) -> dict[str, str]:
        """The account as a billbridge connection credential (the JSON `connections add`
        seals)."""
        return {
            "devKey": self.account.dev_key,
            "organizationId": self.account.organization_id,
            "username": self.account.username,
            "password": self.account.password,
        }

    # -- clock and sessions --------------------------------------------------------------------

    def advance(self, seconds: float) -> None:
        """Move the emulator's clock forward (session idle time, the hour, dates)."""
        self.clock.advance(seconds)

    def expire_sessions(self) -> None:
        """End every session now, as 35 idle minutes would."""
        self.sessions.expire_all()

    def logins_this_hour(self) -> int:
        return self.sessions.logins_this_hour()

    @property
    def login_attempts(self) -> int:
        """Every call of ``POST /v3/login``, refused ones included."""
        return self.sessions.login_attempts

    def peak_concurrency(self) -> int:
        """The most requests of the account's devKey and organization in flight at once."""
        key = (self.account.dev_key, self.account.organization_id)
        return self.limits.peak_in_flight.get(key, 0)

    def in_flight(self) -> int:
        """Requests of the account's devKey and organization in flight now."""
        return self.limits.in_flight((self.account.dev_key, self.account.organization_id))

    def refusals(self) -> dict[str, int]:
        """How many requests the limits refused: {"BDC_1144": n, "BDC_1322": n}."""
        return dict(self.limits.refused)

    # -- data helpers (what a BILL user does in the web app) -------------------------------------

    def create_item(self, name: str, *, item_type: str = "SERVICE") -> str:
        with self.store.lock:
            return str(self.store.create_item({"name": name, "type": item_type})["id"])

    def create_customer(self, name: str, email: str, invoice_currency: str | None = None) -> str:
        body: dict[str, Any] = {"name": name, "email": email}
        if invoice_currency is not None:
            body["invoiceCurrency"] = invoice_currency
        with self.store.lock:
            return str(self.store.create_customer(body)["id"])

    def archive(self, kind: str, object_id: str) -> None:
        """Archive a ``customer``, ``item`` or ``invoice``."""
        with self.store.lock:
            self.store.set_archived(kind, object_id, True)

    def invoices(self) -> list[dict[str, Any]]:
        """Every invoice, archived ones included, oldest first."""
        with self.store.lock:
            return [dict(i) for i in sorted(self.store.invoices.values(), key=lambda i: i["id"])]

    def customers(self) -> list[dict[str, Any]]:
        with self.store.lock:
            return [dict(c) for c in sorted(self.store.customers.values(), key=lambda c: c["id"])]

    def items(self) -> list[dict[str, Any]]:
        with self.store.lock:
            return [dict(i) for i in sorted(self.store.items.values(), key=lambda i: i["id"])]

    # -- reset -------------------------------------------------------------------------------------

    def reset(self) -> None:
        """Back to the just-started state: no objects, sessions, logins, limits, faults or
        logged requests; the clock at wall time."""
        with self.store.lock:
            self.store.reset()
        self.sessions.reset()
        self.limits.reset()
        self.clock.reset()
        self._log.clear()
        self._faults.clear()
