"""The public :class:`GcpMarketplaceEmulator`: Service Control v1 (check, report) and Partner
Procurement v1 (entitlements) on one port."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from ..serving import EmulatorService
from .errors import RPC_CODES
from .oauth import TokenIssuer
from .requestlog import LoggedRequest, RequestLog
from .server import ApiCore, EmulatorHTTPServer
from .state import ENTITLEMENT_STATES, Entitlement, InjectedError, Store, default_clock


class GcpMarketplaceEmulator(EmulatorService[LoggedRequest]):
    """Serve `POST /v1/services/{serviceName}:check|:report` and `GET /v1/providers/{provider}/
    entitlements[/{id}]` on ``host:port`` from a daemon thread.

    Set up with :meth:`add_entitlement` (which also defines the service and its metrics). Read
    back with :meth:`accepted` (also ``GET /_emulator/accepted``) and :meth:`repeats` (also
    ``GET /_emulator/repeats``). ``clock`` stamps entitlements and accepted operations.
    ``require_bearer``: refuse requests without a valid ``Authorization: Bearer`` (401): a token
    from the emulator's OAuth token endpoint (``POST /token``, where a service-account key's
    ``token_uri`` points) or a self-signed service-account JWT. Off by default so tests can use
    google-auth's AnonymousCredentials.
    """

    thread_name = "gcp-marketplace-emulator"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        clock: Callable[[], datetime] = default_clock,
        require_bearer: bool = False,
    ) -> None:
        log = RequestLog()
        super().__init__(host, port, log)
        self.store = Store(clock=clock)
        self._issuer = TokenIssuer()
        self.core = ApiCore(
            store=self.store,
            faults=self._faults,
            log=log,
            issuer=self._issuer,
            require_bearer=require_bearer,
        )

    @property
    def token_uri(self) -> str:
        """The ``token_uri`` for a service-account key that should get its tokens here."""
        return f"{self.base_url}/token"

    def service_account_json(
        self, email: str = "metering@billbridge-local.iam.gserviceaccount.com"
    ) -> str:
        """A service-account key (a fresh RSA key, in the JSON Producer Portal hands out) whose
        tokens come from this emulator: what a marketplace connection's key holds."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        project = email.split("@", 1)[-1].split(".", 1)[0]
        return json.dumps(
            {
                "type": "service_account",
                "project_id": project,
                "private_key_id": "0123456789abcdef",
                "private_key": pem,
                "client_email": email,
                "client_id": "100000000000000000001",
                "token_uri": self.token_uri,
            }
        )

    def _make_server(self, address: tuple[str, int]) -> EmulatorHTTPServer:
        return EmulatorHTTPServer(address, self.core)

    # -- set-up ---------------------------------------------------------------------------------

    def add_entitlement(
        self,
        provider: str,
        entitlement_id: str,
        usage_reporting_id: str,
        service_name: str,
        metrics: Iterable[str],
        state: str = "ENTITLEMENT_ACTIVE",
        *,
        product: str | None = None,
        plan: str = "standard",
        account: str = "",
    ) -> dict[str, Any]:
        """An entitlement of ``provider``'s product (its Service Control service
        ``service_name``, whose metrics are ``metrics``, names without the "<service>/"
        prefix); returns it as the API renders it."""
        self._check_state(state)
        with self.store.lock:
            now = self.store.now()
            entitlement = Entitlement(
                provider=provider,
                entitlement_id=entitlement_id,
                usage_reporting_id=usage_reporting_id,
                service_name=service_name,
                product=product or service_name.split(".", 1)[0],
                plan=plan,
                account=account or f"account-{entitlement_id}",
                state=state,
                created=now,
                updated=now,
            )
            self.store.entitlements[(provider, entitlement_id)] = entitlement
            self.store.services.setdefault(service_name, set()).update(metrics)
            return entitlement.render()

    def set_entitlement_state(self, provider: str, entitlement_id: str, state: str) -> None:
        self._check_state(state)
        with self.store.lock:
            entitlement = self.store.entitlements[(provider, entitlement_id)]
            entitlement.state = state
            entitlement.updated = self.store.now()

    def fail_report_operations(
        self, code: str, message: str = "", *, count: int = 1, consumer_id: str | None = None
    ) -> None:
        """The next ``count`` reported operations (of ``consumer_id``, or any) get a
        reportError with this google.rpc.Code name (e.g. "UNAVAILABLE") instead of being
        taken."""
        if code not in RPC_CODES or code == "OK":
            raise ValueError(f"unknown google.rpc.Code {code!r}")
        injected = InjectedError(code, message or f"Injected {code}.", count, consumer_id)
        with self.store.lock:
            self.store.report_errors.append(injected)

    def fail_checks(
        self, code: str, detail: str = "", *, count: int = 1, consumer_id: str | None = None
    ) -> None:
        """The next ``count`` checks (of ``consumer_id``, or any) answer a CheckError with
        this code (e.g. "BILLING_DISABLED")."""
        injected = InjectedError(code, detail or f"Injected {code}.", count, consumer_id)
        with self.store.lock:
            self.store.check_errors.append(injected)

    @staticmethod
    def _check_state(state: str) -> None:
        if state not in ENTITLEMENT_STATES:
            raise ValueError(f"unknown entitlement state {state!r}")

    def disable_service_account(self, email: str) -> None:
        """Refuse this service account's token grants and tokens from now on."""
        self._issuer.disable(email)

    def token_grants(self) -> list[dict[str, Any]]:
        """Every token grant: iss (the account), ok, error."""
        return list(self._issuer.grants)

    # -- what it holds --------------------------------------------------------------------------

    def accepted(self) -> list[dict[str, Any]]:
        """Accepted operations, in the order taken: serviceName, operationId, consumerId,
        startTime, endTime, metrics (metricName -> the int64 total as a string), receivedAt and
        the operation as received. A repeated operationId appears once."""
        with self.store.lock:
            return [op.to_dict() for op in self.store.accepted.values()]

    def repeats(self) -> list[dict[str, Any]]:
        """Every operation whose operationId had been accepted before (sameContent: whether it
        was the same report)."""
        with self.store.lock:
            return list(self.store.repeats)

    def reset(self) -> None:
        """No entitlements, services, accepted operations, injected errors, faults or logged
        requests."""
        with self.store.lock:
            self.store.reset()
        self._issuer.reset()
        self._log.clear()
        self._faults.clear()
