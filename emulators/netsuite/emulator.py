"""The public :class:`NetSuiteEmulator`: one NetSuite account's SuiteTalk REST web services."""

from __future__ import annotations

import dataclasses
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ..serving import EmulatorService
from .auth import AuthServer
from .concurrency import ConcurrencyLimit, Stats
from .records import ITEM_TYPES, AccountSettings, Store
from .requestlog import LoggedRequest, RequestLog
from .server import ApiCore, EmulatorHTTPServer

DEFAULT_ACCOUNT_ID = "1234567"
DEFAULT_CLIENT_ID = "billbridge-emulator-m2m-client"
# The TBA integration and access token every emulator knows: well-known test values, not secrets.
DEFAULT_CONSUMER_KEY = "billbridge-emulator-consumer-key"
DEFAULT_CONSUMER_SECRET = "billbridge-emulator-consumer-secret"
DEFAULT_TOKEN_ID = "billbridge-emulator-token-id"
DEFAULT_TOKEN_SECRET = "billbridge-emulator-token-secret"


class NetSuiteEmulator(EmulatorService[LoggedRequest]):
    """Serve one NetSuite account's REST web services on ``host:port`` from a daemon thread.

    ``account_id``: the realm TBA requests must name (``1234567_SB1`` for a sandbox).
    ``concurrency_limit``: requests in flight at once (None: unlimited); over it the answer is
    ``over_limit_status`` (429, or 401 INVALID_LOGIN as reported in the field).
    ``settings``: OneWorld, invoice numbering and the SuiteTax model (records.AccountSettings).
    One M2M integration (``client_id``) takes certificates through ``register_certificate`` or
    ``m2m_credentials()``; one TBA integration and token are registered with the default values.
    """

    thread_name = "netsuite-emulator"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        account_id: str = DEFAULT_ACCOUNT_ID,
        client_id: str = DEFAULT_CLIENT_ID,
        concurrency_limit: int | None = 5,
        over_limit_status: int = 429,
        access_token_ttl: float = 3600.0,
        tba_window: float = 300.0,
        require_prefer_transient: bool = False,
        settings: AccountSettings | None = None,
    ) -> None:
        log = RequestLog()
        super().__init__(host, port, log)
        self.account_id = account_id
        self.client_id = client_id
        self.auth = AuthServer(account_id, access_token_ttl=access_token_ttl, tba_window=tba_window)
        self.auth.add_tba(
            DEFAULT_CONSUMER_KEY, DEFAULT_CONSUMER_SECRET, DEFAULT_TOKEN_ID, DEFAULT_TOKEN_SECRET
        )
        self.store = Store(account_id, settings or AccountSettings())
        self.limit = ConcurrencyLimit(concurrency_limit, over_limit_status)
        self.core = ApiCore(
            auth=self.auth,
            store=self.store,
            limit=self.limit,
            faults=self._faults,
            log=log,
            controls={
                "POST /_emulator/m2m/credentials": self.m2m_credentials,
                "GET /_emulator/tba/credentials": self.tba_credentials,
            },
            require_prefer_transient=require_prefer_transient,
        )

    def _make_server(self, address: tuple[str, int]) -> EmulatorHTTPServer:
        return EmulatorHTTPServer(address, self.core)

    # -- credentials -------------------------------------------------------------------------

    def register_certificate(self, public_pem: bytes | str, client_id: str | None = None) -> str:
        """Upload a public key for the M2M integration; returns its certificate id (``kid``)."""
        return self.auth.register_certificate(client_id or self.client_id, public_pem)

    def m2m_credentials(self, algorithm: str = "PS256") -> dict[str, str]:
        """A new key pair, its public key registered: the credential JSON billbridge takes."""
        key: Any = (
            ec.generate_private_key(
                {"ES256": ec.SECP256R1(), "ES384": ec.SECP384R1(), "ES512": ec.SECP521R1()}[
                    algorithm
                ]
            )
            if algorithm.startswith("ES")
            else rsa.generate_private_key(public_exponent=65537, key_size=2048)
        )
        public = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        private = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return {
            "account_id": self.account_id,
            "auth": "m2m",
            "client_id": self.client_id,
            "certificate_id": self.register_certificate(public),
            "private_key": private.decode(),
            "algorithm": algorithm,
        }

    def tba_credentials(self) -> dict[str, str]:
        return {
            "account_id": self.account_id,
            "auth": "tba",
            "consumer_key": DEFAULT_CONSUMER_KEY,
            "consumer_secret": DEFAULT_CONSUMER_SECRET,
            "token_id": DEFAULT_TOKEN_ID,
            "token_secret": DEFAULT_TOKEN_SECRET,
        }

    def revoke_certificate(self, certificate_id: str) -> None:
        self.auth.revoke_certificate(certificate_id)

    def revoke_tba_tokens(self) -> None:
        self.auth.revoke_tba_tokens()

    def expire_access_tokens(self) -> None:
        self.auth.expire_access_tokens()

    def token_grants(self) -> list[dict[str, Any]]:
        return self.auth.grants()

    # -- limits and settings -------------------------------------------------------------------

    def set_concurrency_limit(
        self, limit: int | None, over_limit_status: int | None = None
    ) -> None:
        self.limit.limit = limit
        if over_limit_status is not None:
            self.limit.over_limit_status = over_limit_status

    def requests_in_flight(self) -> list[tuple[str, str]]:
        """(method, path) of the API requests the emulator is executing right now."""
        return self.core.in_flight()

    def concurrency_stats(self) -> Stats:
        return self.limit.stats()

    def configure(self, **changes: Any) -> AccountSettings:
        """Change the account's settings (records.AccountSettings fields)."""
        with self.store.lock:
            self.store.settings = dataclasses.replace(self.store.settings, **changes)
            return self.store.settings

    # -- data helpers ------------------------------------------------------------------------------

    def add_currency(self, symbol: str, precision: int = 2, *, inactive: bool = False) -> str:
        with self.store.lock:
            return self.store.add_currency(symbol, symbol, precision, inactive)

    def add_subsidiary(self, name: str) -> str:
        with self.store.lock:
            return self.store.add_subsidiary(name)

    def create_item(self, name: str, item_type: str = "serviceSaleItem") -> str:
        if item_type not in ITEM_TYPES:
            raise ValueError(f"item_type must be one of {sorted(ITEM_TYPES)}")
        with self.store.lock:
            return self.store.create(item_type, {"itemId": name})

    def deactivate_item(self, item_id: str) -> None:
        with self.store.lock:
            self.store.records["item"][item_id]["isInactive"] = True

    def create_customer(
        self,
        name: str,
        email: str | None = None,
        *,
        external_id: str | None = None,
        subsidiary: str = "1",
        currency: str | None = None,
    ) -> str:
        body: dict[str, Any] = {"companyName": name, "subsidiary": {"id": subsidiary}}
        if email is not None:
            body["email"] = email
        if currency is not None:
            body["currency"] = {"id": currency}
        if external_id is not None:
            body["externalId"] = external_id
        with self.store.lock:
            return self.store.create("customer", body)

    def deactivate_customer(self, customer_id: str) -> None:
        with self.store.lock:
            self.store.records["customer"][customer_id]["isInactive"] = True

    def delete_invoice(self, invoice_id: str) -> None:
        with self.store.lock:
            self.store.delete("invoice", invoice_id)

    def invoices(self) -> list[dict[str, Any]]:
        """Every invoice with its lines (as GET with expandSubResources=true), oldest first."""
        with self.store.lock:
            return [
                self.store.render("invoice", record_id, self.base_url, True)
                for record_id in sorted(self.store.records["invoice"], key=int)
            ]

    def invoice(self, external_id: str) -> dict[str, Any] | None:
        with self.store.lock:
            found = self.store.external["invoice"].get(external_id)
            return self.store.render("invoice", found, self.base_url, True) if found else None

    def customers(self) -> list[dict[str, Any]]:
        with self.store.lock:
            return [
                self.store.render("customer", record_id, self.base_url, False)
                for record_id in sorted(self.store.records["customer"], key=int)
            ]

    def reset(self) -> None:
        """No records but the default subsidiary and currencies, tokens, faults or log."""
        with self.store.lock:
            self.store.reset()
        self.auth.reset()
        self._log.clear()
        self._faults.clear()
        self.limit.reset()


__all__ = ["NetSuiteEmulator"]
