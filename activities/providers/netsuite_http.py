"""One NetSuite account's REST web services over httpx: auth, the concurrency cap, retries.

Every request
- takes one of the account's request slots first: an in-process semaphore per account sized
  by the connection's `netsuite_concurrency_limit` (5 by default: the shared tier and every
  developer account; 15 on Tier 1, plus 10 per SuiteCloud Plus licence), so a worker stays under
  the account's limit before NetSuite refuses anything ("Concurrency Governance and Session
  Management", https://docs.oracle.com/en/cloud/saas/netsuite/ns-online-help/
  subsect_1559222360.html). Other workers and other integrations share the limit too: their
  refusals are handled below (a connection that sets `requests_per_second` is also paced across
  workers by its gate, activities/providers/gate.py).
- is signed (netsuite_auth.py: a bearer token or a TBA signature),
- heartbeats right before and after, and has a total deadline (core/timeouts.py),
- is retried here when NetSuite refuses it for concurrency: a 429 (or 400
  SSS_REQUEST_LIMIT_EXCEEDED) is tried again up to LOCAL_RETRIES times after a short pause
  (Retry-After when given), then left to Temporal (ProviderRateLimited); a 401 INVALID_LOGIN
  within RECENT_SUCCESS seconds of a success at the account gets one retry after
  OVERLOAD_PAUSE (NetSuite has been seen answering overload with it); a bearer token NetSuite
  refuses is renewed once. A 401 that persists is auth needing attention. Retrying is safe: a
  refused request was not executed, and every write is an upsert by external id anyway.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import httpx

from billbridge.activities.providers import deadline
from billbridge.activities.providers.base import (
    heartbeat_running_activity,
    provider_request_timeout,
)
from billbridge.activities.providers.gate import ProcessGate, RequestGate
from billbridge.activities.providers.netsuite_auth import M2M, M2MAuth, TBAAuth
from billbridge.activities.providers.netsuite_errors import (
    DEFAULT_RETRY_AFTER,
    NotFound,
    classify,
    details,
    is_concurrency_refusal,
)
from billbridge.core.errors import (
    ExportError,
    ProviderLimitExceeded,
    ProviderRateLimited,
    ProviderUnavailable,
)

LOCAL_RETRIES = 3  # concurrency refusals retried here before Temporal takes over
LOCAL_RETRY_CAP = 4.0  # seconds: the longest pause between them
RECENT_SUCCESS = 60.0  # seconds: a 401 this soon after a success may be overload
OVERLOAD_PAUSE = 1.0  # seconds before retrying such a 401
QUERY_PAGE = 1000  # SuiteQL's largest page ("Collection Paging")
MAX_QUERY_ROWS = 5000  # every query here is narrowed to a few rows; more means something is wrong

Heartbeat = Callable[[str], None]


class AccountGate:
    """The account's request slots in this process, and when it last answered a request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._slots: dict[str, tuple[int, threading.BoundedSemaphore]] = {}
        self._last_success: dict[str, float] = {}

    def slots(self, account: str, limit: int) -> threading.BoundedSemaphore:
        with self._lock:
            found = self._slots.get(account)
            if found is None or found[0] != limit:
                # A changed limit takes a new semaphore; requests holding the old one finish
                # on it (briefly both count: at most one request's overlap per holder).
                found = (limit, threading.BoundedSemaphore(limit))
                self._slots[account] = found
            return found[1]

    def succeeded(self, account: str) -> None:
        with self._lock:
            self._last_success[account] = time.monotonic()

    def recently_succeeded(self, account: str) -> bool:
        with self._lock:
            last = self._last_success.get(account)
        return last is not None and time.monotonic() - last < RECENT_SUCCESS


GATES = AccountGate()


class NetSuiteClient:
    def __init__(
        self,
        api_base: str,
        auth: M2MAuth | TBAAuth,
        account: str,
        concurrency_limit: int,
        *,
        http: httpx.Client | None = None,
        gate: AccountGate = GATES,
        sleep: Callable[[float], None] = time.sleep,
        request_gate: RequestGate | None = None,
    ) -> None:
        self.api_base = api_base.rstrip("/")
        self.rest = f"{self.api_base}/services/rest"
        self.auth = auth
        self.account = account
        self.concurrency_limit = concurrency_limit
        self.http = http or deadline.client(self.api_base)
        self.gate = gate
        self.sleep = sleep
        # The connection's pause switch and shared rate (activities/providers/gate.py).
        self.request_gate = request_gate or ProcessGate("NetSuite", None)
        self._calls = threading.local()

    # -- per-thread state (one provider serves many activity threads) -----------------------

    @property
    def request_count(self) -> int:
        return int(getattr(self._calls, "count", 0))

    def reset_count(self) -> None:
        self._calls.count = 0

    @contextmanager
    def heartbeat_with(self, heartbeat: Heartbeat) -> Iterator[None]:
        self._calls.heartbeat = heartbeat
        try:
            yield
        finally:
            self._calls.heartbeat = None

    def _heartbeat(self) -> Heartbeat:
        return getattr(self._calls, "heartbeat", None) or heartbeat_running_activity

    # -- requests ---------------------------------------------------------------------------------

    def call(
        self,
        doing: str,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
        reading: bool = False,
    ) -> httpx.Response:
        """One API call (``path`` under /services/rest/); a 2xx response or the classified
        error. With `reading`, a 404 raises NotFound for the caller to interpret."""
        heartbeat = self._heartbeat()
        url = str(httpx.URL(f"{self.rest}/{path}", params=dict(params or {})))
        content = json.dumps(json_body).encode() if json_body is not None else None
        concurrency_retries = 0
        overload_retried = renewed = False
        while True:
            # Before the credentials: a paused connection gets no token request either.
            self.request_gate.before_request(doing)
            heartbeat(f"{doing}: credentials")
            with deadline.within(provider_request_timeout()):
                signed, credential = self.auth.headers(method, url)
            request_headers = {"Accept": "application/json", **signed, **(headers or {})}
            if content is not None:
                request_headers["Content-Type"] = "application/json"
            response = self._send(doing, method, url, content, request_headers, heartbeat)
            if response.status_code < 300:
                self.gate.succeeded(self.account)
                return response
            body = _json(response)
            found = details(body)
            if is_concurrency_refusal(response.status_code, found) and (
                concurrency_retries < LOCAL_RETRIES
            ):
                concurrency_retries += 1
                wait = _pause(response, concurrency_retries)
                heartbeat(f"{doing}: over NetSuite's concurrency limit, retrying in {wait:g} s")
                self.sleep(wait)
                continue
            if response.status_code == 401:
                if not overload_retried and self.gate.recently_succeeded(self.account):
                    overload_retried = True
                    heartbeat(f"{doing}: 401 right after successes, retrying once")
                    self.sleep(OVERLOAD_PAUSE)
                    continue
                if self.auth.method == M2M and not renewed:
                    renewed = True
                    self.auth.forget(credential)
                    continue
            error = classify(response.status_code, body, response.headers, doing, reading=reading)
            if isinstance(error, ExportError):
                self.request_gate.refused_for_rate(error)
            raise error

    def _send(
        self,
        doing: str,
        method: str,
        url: str,
        content: bytes | None,
        headers: dict[str, str],
        heartbeat: Heartbeat,
    ) -> httpx.Response:
        with self._slot(doing, heartbeat):
            self._calls.count = self.request_count + 1
            heartbeat(doing)
            try:
                with deadline.within(provider_request_timeout()):
                    response = self.http.request(
                        method, url, content=content, headers=headers, timeout=deadline.timeout()
                    )
            except httpx.HTTPError as err:  # timeouts, refused and dropped connections
                raise ProviderUnavailable(f"NetSuite {doing}: {type(err).__name__}: {err}") from err
            heartbeat(f"{doing}: answered")
            return response

    @contextmanager
    def _slot(self, doing: str, heartbeat: Heartbeat) -> Iterator[None]:
        """Hold one of the account's request slots; waiting heartbeats, and gives up (to be
        retried later) after one request's timeout."""
        slots = self.gate.slots(self.account, self.concurrency_limit)
        give_up = time.monotonic() + provider_request_timeout()
        while not slots.acquire(timeout=1.0):
            if time.monotonic() >= give_up:
                raise ProviderRateLimited(
                    f"NetSuite {doing}: all {self.concurrency_limit} request slots of account "
                    f"{self.account} stayed busy",
                    DEFAULT_RETRY_AFTER,
                )
            heartbeat(f"{doing}: waiting for one of {self.concurrency_limit} request slots")
        try:
            yield
        finally:
            slots.release()

    def get(self, doing: str, path: str, **params: str) -> dict[str, Any] | None:
        """A record, or None when NetSuite has none there (404)."""
        try:
            response = self.call(doing, "GET", path, params=params, reading=True)
        except NotFound:
            return None
        body = _json(response)
        if not isinstance(body, dict):
            raise ProviderUnavailable(f"NetSuite {doing}: the answer is not a JSON object")
        return body

    def suiteql(
        self, doing: str, query: str, *, at_most: int = MAX_QUERY_ROWS
    ) -> list[dict[str, Any]]:
        """Every row of a SuiteQL query (see suiteql_rows)."""
        return list(self.suiteql_rows(doing, query, at_most=at_most))

    def suiteql_rows(
        self, doing: str, query: str, *, at_most: int = MAX_QUERY_ROWS
    ) -> Iterator[dict[str, Any]]:
        """The rows of a SuiteQL query, page by page ("Executing SuiteQL Queries Through REST Web
        Services", https://docs.oracle.com/en/cloud/saas/netsuite/ns-online-help/
        section_157909186990.html; ``Prefer: transient`` as its example sends). More than
        `at_most` rows is an error, not an endless read."""
        read = 0
        while True:
            response = self.call(
                doing,
                "POST",
                "query/v1/suiteql",
                params={"limit": str(QUERY_PAGE), "offset": str(read)},
                json_body={"q": query},
                headers={"Prefer": "transient"},
            )
            body = _json(response)
            if not isinstance(body, dict):
                raise ProviderUnavailable(f"NetSuite {doing}: the answer is not a JSON object")
            page = [row for row in body.get("items") or [] if isinstance(row, dict)]
            read += len(page)
            if read > at_most:
                raise ProviderLimitExceeded(
                    f"NetSuite {doing}: more than {at_most} rows match; billbridge reads at most "
                    f"{at_most} here"
                )
            yield from page
            if not body.get("hasMore") or not page:
                return


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _pause(response: httpx.Response, attempt: int) -> float:
    """Retry-After when NetSuite sends one (capped), else 0.5 s, 1 s, 2 s, ..."""
    given = response.headers.get("Retry-After")
    try:
        if given is not None:
            return min(max(float(given), 0.0), LOCAL_RETRY_CAP)
    except ValueError:
        pass
    return min(0.25 * 2**attempt, LOCAL_RETRY_CAP)
