"""The public :class:`StripeEmulator`: a local Stripe Invoicing API for tests and demos."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from types import TracebackType
from typing import Any

from .faults import Fault, FaultSet
from .idempotency import IdempotencyStore
from .ratelimit import RateLimiter
from .requestlog import LoggedRequest, RequestLog
from .server import ApiCore, EmulatorHTTPServer
from .state import Store


class StripeEmulator:
    """Serve a Stripe-compatible /v1 API (customers, products, prices, invoice items, invoices)
    on ``host:port`` from a daemon thread.

    ``rate_limit_per_second=None`` disables rate limiting. ``api_keys`` restricts the accepted
    keys (default: any key starting with ``sk_test_``). ``search_visibility_delay_seconds``
    models Stripe Search's eventual consistency (objects become searchable only after that
    delay; default 0 = immediately).
    """

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
        self.host = host
        self._requested_port = port
        self.store = Store(max_invoice_items, search_visibility_delay_seconds)
        self._faults = FaultSet()
        self._log = RequestLog()
        self._idempotency = IdempotencyStore(idempotency_ttl_seconds)
        self._limiter = RateLimiter(rate_limit_per_second)
        self.core = ApiCore(
            store=self.store,
            idempotency=self._idempotency,
            limiter=self._limiter,
            faults=self._faults,
            log=self._log,
            api_keys=frozenset(api_keys) if api_keys is not None else None,
            max_lines_per_add_lines=max_lines_per_add_lines,
        )
        self._server: EmulatorHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> StripeEmulator:
        if self._server is not None:
            return self
        server = EmulatorHTTPServer((self.host, self._requested_port), self.core, self)
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"stripe-emulator:{server.server_address[1]}",
            daemon=True,
        )
        thread.start()
        self._server, self._thread = server, thread
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        server.shutdown()
        server.close_connections()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> StripeEmulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("StripeEmulator is not running; call start() first")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        host = self.host if ":" not in self.host else f"[{self.host}]"
        return f"http://{host}:{self.port}"

    # -- control -----------------------------------------------------------------------------

    def add_fault(self, fault: Fault) -> None:
        self._faults.add(fault)

    def clear_faults(self) -> None:
        self._faults.clear()

    def faults(self) -> list[dict[str, Any]]:
        """Armed faults with their ``remaining`` counts."""
        return self._faults.armed()

    def requests(self) -> list[LoggedRequest]:
        return self._log.snapshot()

    def clear_requests(self) -> None:
        self._log.clear()

    def expire_idempotency_keys(self) -> None:
        self._idempotency.expire_all()

    def invoices(self) -> list[dict[str, Any]]:
        """Every invoice (oldest first) as the API renders it, with all lines embedded."""
        return self.store.all_invoices()

    def reset(self) -> None:
        """Forget all objects, logged requests, faults, idempotency keys and rate buckets."""
        self.store.reset()
        self._log.clear()
        self._faults.clear()
        self._idempotency.clear()
        self._limiter.reset()
