"""The public :class:`StripeEmulator`: a local Stripe Invoicing API for tests and demos."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..serving import EmulatorService
from .idempotency import IdempotencyStore
from .ratelimit import RateLimiter
from .requestlog import LoggedRequest, RequestLog
from .server import ApiCore, EmulatorHTTPServer
from .state import Store


class StripeEmulator(EmulatorService[LoggedRequest]):
    """Serve a Stripe-compatible /v1 API (customers, products, prices, invoice items, invoices)
    on ``host:port`` from a daemon thread.

    ``rate_limit_per_second=None`` disables rate limiting. ``api_keys`` restricts the accepted
    keys (default: any key starting with ``sk_test_``). ``search_visibility_delay_seconds``
    models Stripe Search's eventual consistency (objects become searchable only after that
    delay; default 0 = immediately).
    """

    thread_name = "stripe-emulator"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        rate_limit_per_second: float | None = 25.0,
        max_invoice_items: int = 250,
        max_lines_per_add_lines: int = 100,
        idempotency_ttl_seconds: float = 86400.0,
        *,
        api_keys: Iterable[str] | None = None,
        search_visibility_delay_seconds: float = 0.0,
    ) -> None:
        log = RequestLog()
        super().__init__(host, port, log)
        self.store = Store(max_invoice_items, search_visibility_delay_seconds)
        self._idempotency = IdempotencyStore(idempotency_ttl_seconds)
        self._limiter = RateLimiter(rate_limit_per_second)
        self.core = ApiCore(
            store=self.store,
            idempotency=self._idempotency,
            limiter=self._limiter,
            faults=self._faults,
            log=log,
            api_keys=frozenset(api_keys) if api_keys is not None else None,
            max_lines_per_add_lines=max_lines_per_add_lines,
        )

    # -- start, stop, port, base_url, faults and requests: see EmulatorService --------------

    def _make_server(self, address: tuple[str, int]) -> EmulatorHTTPServer:
        return EmulatorHTTPServer(address, self.core, self)

    # -- control -----------------------------------------------------------------------------

    def expire_idempotency_keys(self) -> None:
        self._idempotency.expire_all()

    def invoices(self) -> list[dict[str, Any]]:
        """Every invoice (oldest first) as the API renders it, with all lines embedded."""
        return self.store.all_invoices()

    def emails(self) -> list[dict[str, Any]]:
        """Every invoice e-mail Stripe would have sent (oldest first; also ``GET
        /_emulator/emails``): by ``POST /v1/invoices/{id}/send`` (``via: send``) or by
        ``auto_advance`` at finalization (``via: auto_advance``)."""
        with self.store.lock:
            sent = [dict(e) for r in self.store.invoices.values() for e in r.emails]
        return sorted(sent, key=lambda email: email["at"])

    def forget_invoice(self, invoice_id: str) -> None:
        """Lose an invoice whatever its state (also ``DELETE /_emulator/invoices/{id}``): what a
        test-mode data deletion or a switched account looks like to a client. Through the API,
        Stripe deletes drafts only (``DELETE /v1/invoices/{id}``)."""
        with self.store.lock:
            self.store.forget_invoice(invoice_id)

    def reset(self) -> None:
        """Forget all objects, logged requests, faults, idempotency keys and rate buckets."""
        self.store.reset()
        self._log.clear()
        self._faults.clear()
        self._idempotency.clear()
        self._limiter.reset()
