"""The public :class:`QuickBooksEmulator`: Intuit OAuth 2.0 plus a slice of the Accounting API."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any

from ..serving import EmulatorService
from .company import CompanySettings
from .entities import Store
from .oauth import REFRESH_TOKEN_MAX_LIFETIME, OAuthServer
from .ratelimit import MinuteWindow
from .requestids import RequestIdStore
from .requestlog import LoggedRequest, RequestLog
from .server import ApiCore, EmulatorHTTPServer

DEFAULT_CLIENT_ID = "billbridge-emulator-client"
DEFAULT_CLIENT_SECRET = "billbridge-emulator-secret"  # a well-known test value, not a secret
DEFAULT_REALM_ID = "9130350000000001"
# The app's production keys (https redirect URIs only); the ones above are its development keys.
DEFAULT_PRODUCTION_CLIENT_ID = "billbridge-emulator-production-client"
DEFAULT_PRODUCTION_CLIENT_SECRET = "billbridge-emulator-production-secret"  # a test value


class QuickBooksEmulator(EmulatorService[LoggedRequest]):
    """Serve Intuit's OAuth 2.0 endpoints and the Accounting API (v3) for one company
    (``realm_id``) on ``host:port`` from a daemon thread.

    One app is registered, with two sets of keys as Intuit's apps have: development keys
    ``client_id`` / ``client_secret`` (sandbox: any http(s) redirect URI, http://localhost
    included) and production keys ``production_client_id`` / ``production_client_secret``
    (https redirect URIs only). Both reach the one company. The authorize endpoint consents at
    once (there is no user). ``refresh_token_max_lifetime`` is the five-year cap on a grant's
    refresh tokens (seconds from the authorization). ``requests_per_minute=None`` turns
    throttling off; ``retry_after_seconds`` adds a Retry-After header to 429s (Intuit
    documents none).
    ``request_id_ttl_seconds=None`` remembers ``requestid`` responses forever.
    ``unique_doc_numbers`` refuses a DocNumber already used by another invoice (6140);
    ``auto_doc_numbers`` numbers invoices sent without a DocNumber (1001, 1002, ...).
    ``company``: country, currencies and tax settings (a US company with automated sales tax
    and multicurrency off by default; see company.py).
    """

    thread_name = "quickbooks-emulator"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        production_client_id: str = DEFAULT_PRODUCTION_CLIENT_ID,
        production_client_secret: str = DEFAULT_PRODUCTION_CLIENT_SECRET,
        realm_id: str = DEFAULT_REALM_ID,
        company_name: str = "billbridge QuickBooks emulator",
        access_token_ttl: float = 3600.0,
        refresh_token_ttl: float = 8726400.0,
        rotate_refresh_tokens: bool = True,
        refresh_token_max_lifetime: float = REFRESH_TOKEN_MAX_LIFETIME,
        requests_per_minute: int | None = 500,
        retry_after_seconds: float | None = None,
        request_id_ttl_seconds: float | None = None,
        unique_doc_numbers: bool = True,
        auto_doc_numbers: bool = True,
        company: CompanySettings | None = None,
    ) -> None:
        log = RequestLog()
        super().__init__(host, port, log)
        self.realm_id = realm_id
        self.client_id = client_id
        self.client_secret = client_secret
        self.production_client_id = production_client_id
        self.production_client_secret = production_client_secret
        self._oauth = OAuthServer(
            client_id=client_id,
            client_secret=client_secret,
            realm_id=realm_id,
            access_token_ttl=access_token_ttl,
            refresh_token_ttl=refresh_token_ttl,
            rotate_refresh_tokens=rotate_refresh_tokens,
            production_client_id=production_client_id,
            production_client_secret=production_client_secret,
            refresh_token_max_lifetime=refresh_token_max_lifetime,
        )
        self.store = Store(
            realm_id=realm_id,
            company_name=company_name,
            unique_doc_numbers=unique_doc_numbers,
            auto_doc_numbers=auto_doc_numbers,
            company=company,
        )
        self._requestids = RequestIdStore(request_id_ttl_seconds)
        self._limiter = MinuteWindow(requests_per_minute)
        self.core = ApiCore(
            oauth=self._oauth,
            store=self.store,
            requestids=self._requestids,
            limiter=self._limiter,
            faults=self._faults,
            log=log,
            retry_after_seconds=retry_after_seconds,
        )

    # -- start, stop, port, base_url, faults and requests: see EmulatorService --------------

    def _make_server(self, address: tuple[str, int]) -> EmulatorHTTPServer:
        return EmulatorHTTPServer(address, self.core)

    # -- OAuth control -------------------------------------------------------------------------

    def expire_access_tokens(self) -> None:
        """Every access token issued so far is expired now; refresh tokens keep working."""
        self._oauth.expire_access_tokens()

    def revoke_refresh_tokens(self) -> None:
        """Revoke every refresh and access token, as when the user disconnects the app."""
        self._oauth.revoke_all()

    def set_access_token_ttl(self, seconds: float) -> None:
        """Lifetime of access tokens issued from now on."""
        self._oauth.set_access_token_ttl(seconds)

    def valid_refresh_tokens(self) -> set[str]:
        return self._oauth.valid_refresh_tokens()

    def token_grants(self) -> list[dict[str, Any]]:
        """Every token endpoint call: ``grant_type``, ``ok``, ``error``, ``at`` (unix time)."""
        return self._oauth.grants()

    @property
    def refresh_count(self) -> int:
        """Successful ``refresh_token`` grants."""
        return self._oauth.refresh_count

    def issue_tokens(self, client_id: str | None = None) -> dict[str, Any]:
        """A token response as if the authorization-code flow had just completed (for seeding
        demos without a browser round trip; `client_id`: which keys, default development)."""
        return self._oauth.issue_tokens(client_id)

    # -- company settings and tax codes -----------------------------------------------------------

    @property
    def company(self) -> CompanySettings:
        with self.store.lock:
            return self.store.company

    def configure_company(self, **changes: Any) -> CompanySettings:
        """Change the company's settings (``country``, ``multicurrency``, ``home_currency``,
        ``automated_sales_tax``, ``using_sales_tax``, ``automated_tax_rate``) until reset."""
        with self.store.lock:
            self.store.company = dataclasses.replace(self.store.company, **changes)
            return self.store.company

    def create_tax_code(self, name: str, rates: list[tuple[str, Decimal | str]]) -> str:
        """A tax code with one sales rate per (rate name, percent); returns its Id."""
        with self.store.lock:
            return self.store.add_tax_code(name, [(n, Decimal(p)) for n, p in rates])

    def set_tax_rate(self, rate_name: str, percent: Decimal | str) -> None:
        """Edit a tax rate's percentage in the company, as a QuickBooks user does."""
        with self.store.lock:
            self.store.set_tax_rate_value(rate_name, Decimal(percent))

    def deactivate_tax_code(self, code_id: str) -> None:
        with self.store.lock:
            self.store.set_tax_code_active(code_id, False)

    def tax_codes(self) -> list[dict[str, Any]]:
        with self.store.lock:
            return self.store.rows("TaxCode")

    # -- data helpers ------------------------------------------------------------------------------

    def create_item(self, name: str, *, item_type: str = "Service") -> str:
        with self.store.lock:
            return str(self.store.save_item({"Name": name, "Type": item_type})["Id"])

    def create_customer(
        self, display_name: str, email: str | None = None, currency: str | None = None
    ) -> str:
        body: dict[str, Any] = {"DisplayName": display_name}
        if email is not None:
            body["PrimaryEmailAddr"] = {"Address": email}
        if currency is not None:
            body["CurrencyRef"] = {"value": currency}
        with self.store.lock:
            return str(self.store.save_customer(body)["Id"])

    def _deactivate(self, entity: str, entity_id: str) -> None:
        with self.store.lock:
            current = self.store.get(entity, entity_id)
            update = {"Id": entity_id, "SyncToken": current["SyncToken"], "sparse": True}
            save = self.store.save_customer if entity == "Customer" else self.store.save_item
            save({**update, "Active": False})

    def deactivate_customer(self, customer_id: str) -> None:
        """Make a customer inactive (QuickBooks' "delete")."""
        self._deactivate("Customer", customer_id)

    def deactivate_item(self, item_id: str) -> None:
        self._deactivate("Item", item_id)

    def delete_invoice(self, invoice_id: str) -> None:
        """Delete an invoice as a QuickBooks user (or ``POST /invoice?operation=delete``) does."""
        with self.store.lock:
            current = self.store.get("Invoice", invoice_id)
            self.store.delete_invoice({"Id": invoice_id, "SyncToken": current["SyncToken"]})

    def invoices(self) -> list[dict[str, Any]]:
        """Every invoice as the API renders it, oldest first."""
        with self.store.lock:
            return self.store.rows("Invoice")

    def customers(self) -> list[dict[str, Any]]:
        """Every customer, inactive ones included, oldest first."""
        with self.store.lock:
            return self.store.rows("Customer")

    def items(self) -> list[dict[str, Any]]:
        with self.store.lock:
            return self.store.rows("Item")

    # -- reset -------------------------------------------------------------------------------------

    def reset(self) -> None:
        """Back to the just-started state: no objects, tokens, codes, saved requestids, logged
        requests, faults or throttle history, the company settings it was started with. The app
        (client id and secret) stays."""
        with self.store.lock:
            self.store.reset()
        self._oauth.reset()
        self._requestids.clear()
        self._log.clear()
        self._faults.clear()
        self._limiter.reset()
