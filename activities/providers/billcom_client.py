"""BILL (Bill.com) v3 over HTTP: sealed credentials, one API session per devKey and organization,
the login budget, the concurrency and hourly limits, and the error decisions (billcom_errors.py).

Sessions (https://developer.bill.com/reference/login, https://developer.bill.com/docs/faq):
`POST /v3/login` with `{username, password, organizationId, devKey}` answers a `sessionId`; every
later call sends the headers `devKey` and `sessionId`. A session ends after 35 minutes without a
call (any call renews it) and cannot be refreshed: the client logs in again. It keeps one session
per (API base, devKey, organization, user) for the whole worker process, shared by every provider
object and thread; a call answered `BDC_1109` (session invalid) logs in again -- once, whichever
thread sees it first -- and is sent once more (nothing ran under the invalid session).

Limits (https://developer.bill.com/docs/api-rate-limits), kept before BILL has to say so:

- logins: 200 per devKey per hour (BDC_1144), and login is among the endpoints limited to 5 per
  minute. The client logs in at most LOGINS_PER_HOUR (below 200) times per clock hour and
  LOGINS_PER_MINUTE times per minute per devKey; past that it raises ProviderRateLimited with the
  wait, never a login BILL would refuse;
- 3 concurrent requests per devKey and organization (BDC_1322): an in-process semaphore per
  devKey + organization (several worker processes together can exceed it: BILL's refusal is
  retried, and a connection's `requests_per_second` paces them all through its gate,
  activities/providers/gate.py). Waiting for a place counts against the request's total
  deadline, so a waiting push still heartbeats in time;
- 20,000 requests per devKey per hour (BDC_1144: "wait until the beginning of the next hour"):
  the client counts its requests per clock hour and stops at REQUESTS_PER_HOUR; once BILL answers
  BDC_1144 every request of that devKey waits for the next hour without being sent.

Credentials are a JSON object sealed in the store (`billbridge connections add bill.com
--api-key-file FILE`):

    {"devKey": "...", "organizationId": "008...", "username": "...", "password": "...",
     "environment": "production" | "sandbox"}      # optional: which BILL host (see api_base)

The currencies beyond USD the organization invoices in are a connection setting, not part of
the credential (`connections set bill.com billcom_invoice_currencies=EUR,GBP`).
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx

from billbridge.activities.providers import deadline
from billbridge.activities.providers.base import (
    heartbeat_running_activity,
    provider_request_timeout,
)
from billbridge.activities.providers.billcom_errors import (
    CONCURRENCY_RETRY_AFTER,
    HOURLY_LIMIT,
    SESSION_INVALID,
    BillcomRejected,
    error_for,
    parse_errors,
    until_next_hour,
)
from billbridge.activities.providers.gate import ProcessGate, RequestGate
from billbridge.core.config import is_local_url
from billbridge.core.errors import (
    ExportError,
    ProviderAuthFailed,
    ProviderLimitExceeded,
    ProviderRateLimited,
    ProviderUnavailable,
)

# https://developer.bill.com/docs/whats-different-in-v3 (base URLs; each environment has its
# own keys and shares no data with the other).
PRODUCTION_API_BASE = "https://gateway.prod.bill.com/connect"
SANDBOX_API_BASE = "https://gateway.stage.bill.com/connect"
SANDBOX, PRODUCTION = "sandbox", "production"
# Where the local emulator listens when BILLCOM_API_BASE is unset (core/providers.py).
LOCAL_EMULATOR_PORT = 12113
# The emulator's well-known test credentials (emulators/billcom), used by the default connection
# when the API base is local and no credential is stored. Test values, not secrets.
EMULATOR_CREDENTIALS = {
    "devKey": "billbridge-emulator-devkey",
    "organizationId": "00801BILLBRIDGEEMU001",
    "username": "emulator@billbridge.test",
    "password": "billbridge-emulator-password",
}
ADD_CREDENTIALS = (
    "store them with `billbridge connections add bill.com --api-key-file FILE`, FILE holding "
    '{"devKey": ..., "organizationId": ..., "username": ..., "password": ...}'
)
CREDENTIAL_FIELDS = ("devKey", "organizationId", "username", "password")
OPTIONAL_FIELDS = ("environment",)

# Below BILL's 200 logins per devKey per hour: room for a CLI check or a second worker.
LOGINS_PER_HOUR = 180
LOGINS_PER_MINUTE = 5
CONCURRENT_REQUESTS = 3
# Below BILL's 20,000 requests per devKey per hour, for the same reason.
REQUESTS_PER_HOUR = 19_500
# BILL ends a session after 35 idle minutes; one idle this long is replaced before it is used.
SESSION_REUSE_SECONDS = 30 * 60.0
LIST_PAGE = 100  # `max` is 1..100 (https://developer.bill.com/docs/search-op-with-lists)
MAX_LIST_PAGES = 20


@dataclass(frozen=True)
class BillcomCredentials:
    dev_key: str
    organization_id: str
    username: str
    password: str = field(repr=False)
    environment: str = ""  # "" : the API base decides

    @classmethod
    def from_text(cls, text: str) -> BillcomCredentials:
        """Parse the sealed JSON; errors name fields, never values."""
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise ProviderAuthFailed(
                f"the stored BILL credential is not a JSON object; {ADD_CREDENTIALS}"
            )
        unknown = sorted(set(data) - set(CREDENTIAL_FIELDS) - set(OPTIONAL_FIELDS))
        missing = [
            name
            for name in CREDENTIAL_FIELDS
            if not isinstance(data.get(name), str) or not data[name].strip()
        ]
        problems = []
        if missing:
            problems.append(f"missing {', '.join(missing)}")
        if unknown:
            problems.append(f"unknown field(s) {', '.join(unknown)}")
        environment = data.get("environment", "") or ""
        if environment not in ("", SANDBOX, PRODUCTION):
            problems.append("environment must be sandbox or production")
        if problems:
            raise ProviderAuthFailed(
                f"the stored BILL credential is incomplete: {'; '.join(problems)}; "
                f"{ADD_CREDENTIALS}"
            )
        return cls(
            dev_key=data["devKey"].strip(),
            organization_id=data["organizationId"].strip(),
            username=data["username"].strip(),
            password=data["password"],
            environment=environment,
        )

    def login_body(self) -> dict[str, str]:
        return {
            "username": self.username,
            "password": self.password,
            "organizationId": self.organization_id,
            "devKey": self.dev_key,
        }


def is_bill_host(url: str) -> bool:
    return (urlsplit(url).hostname or "").endswith("bill.com")


def api_base_for(configured: str, environment: str) -> str:
    """Where the calls go: with a BILL base, the credential's environment picks the gateway
    (sandbox keys never work in production); any other base (the emulator, a proxy) as set."""
    if not is_bill_host(configured) or not environment:
        return configured
    return SANDBOX_API_BASE if environment == SANDBOX else PRODUCTION_API_BASE


# -- process-wide state: sessions and limits are BILL's per devKey (and organization) ------------


@dataclass
class _Session:
    session_id: str
    last_used: float


class _SessionSlot:
    def __init__(self) -> None:
        self.lock = threading.Lock()  # one login at a time per key; others wait and reuse it
        self.session: _Session | None = None


class ProcessLimits:
    """Sessions, slots and counters of this worker process, keyed by API base and devKey."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sessions: dict[tuple[str, ...], _SessionSlot] = {}
        self._slots: dict[tuple[str, ...], threading.BoundedSemaphore] = {}
        self._hour_counts: dict[tuple[str, ...], tuple[int, int]] = {}  # key -> (hour, count)
        self._blocked_until: dict[tuple[str, ...], float] = {}
        self._logins: dict[tuple[str, ...], deque[float]] = {}

    def session_slot(self, key: tuple[str, ...]) -> _SessionSlot:
        with self._lock:
            return self._sessions.setdefault(key, _SessionSlot())

    def slot(self, key: tuple[str, ...], size: int) -> threading.BoundedSemaphore:
        with self._lock:
            return self._slots.setdefault(key, threading.BoundedSemaphore(size))

    def take_request(self, key: tuple[str, ...], now: float, per_hour: int) -> float | None:
        """Count one request in the current clock hour; the wait (seconds) if none is left."""
        hour = int(now // 3600)
        with self._lock:
            blocked = self._blocked_until.get(key, 0.0)
            if now < blocked:
                return blocked - now
            seen_hour, count = self._hour_counts.get(key, (hour, 0))
            if seen_hour != hour:
                count = 0
            if count >= per_hour:
                return (hour + 1) * 3600 - now
            self._hour_counts[key] = (hour, count + 1)
            return None

    def block_until(self, key: tuple[str, ...], until: float) -> None:
        with self._lock:
            self._blocked_until[key] = max(self._blocked_until.get(key, 0.0), until)

    def take_login(
        self, key: tuple[str, ...], now: float, per_hour: int, per_minute: int
    ) -> tuple[float, str] | None:
        """Count one login; (wait in seconds, which budget) when the budget is spent."""
        hour_start = (now // 3600) * 3600
        with self._lock:
            seen = self._logins.setdefault(key, deque())
            while seen and seen[0] < hour_start:
                seen.popleft()
            if len(seen) >= per_hour:
                return hour_start + 3600 - now, f"{per_hour} logins this hour"
            recent = [t for t in seen if t > now - 60]
            if len(recent) >= per_minute:
                return recent[0] + 60 - now, f"{per_minute} logins in the last minute"
            seen.append(now)
            return None

    def logins(self, key: tuple[str, ...]) -> int:
        with self._lock:
            return len(self._logins.get(key, ()))


PROCESS_LIMITS = ProcessLimits()


@dataclass(frozen=True)
class BillcomLimits:
    """What the client allows itself per devKey (and organization); tests shrink them."""

    logins_per_hour: int = LOGINS_PER_HOUR
    logins_per_minute: int = LOGINS_PER_MINUTE
    concurrent_requests: int = CONCURRENT_REQUESTS
    requests_per_hour: int = REQUESTS_PER_HOUR
    session_reuse_seconds: float = SESSION_REUSE_SECONDS


class BillcomClient:
    """One connection's BILL API: call() sends a request with the session, under the limits."""

    def __init__(
        self,
        configured_base: str,
        credential_text: str | None,
        *,
        limits: BillcomLimits | None = None,
        clock: Callable[[], float] = time.time,
        shared: ProcessLimits = PROCESS_LIMITS,
        gate: RequestGate | None = None,
    ) -> None:
        self.configured_base = configured_base.rstrip("/")
        self._credential_text = credential_text
        self._credentials: BillcomCredentials | None = None
        self.limits = limits or BillcomLimits()
        self._clock = clock
        self._shared = shared
        # The connection's pause switch and shared rate (activities/providers/gate.py).
        self.gate = gate or ProcessGate("BILL", None)
        self.http = deadline.client(self.configured_base)
        self._calls = threading.local()

    # -- credentials and keys --------------------------------------------------------------------

    @property
    def credentials(self) -> BillcomCredentials:
        """The connection's credential, parsed on first use (a bad one fails the call that needs
        it, as needs attention, not the construction of the provider)."""
        if self._credentials is None:
            text = self._credential_text
            if text is None:
                if not is_local_url(self.configured_base):
                    raise ProviderAuthFailed(
                        f"no BILL credentials for this connection; {ADD_CREDENTIALS}"
                    )
                text = json.dumps(EMULATOR_CREDENTIALS)  # the local emulator's test account
            self._credentials = BillcomCredentials.from_text(text)
        return self._credentials

    @property
    def base_url(self) -> str:
        return api_base_for(self.configured_base, self.credentials.environment)

    def _org_key(self) -> tuple[str, ...]:
        creds = self.credentials
        return (self.base_url, creds.dev_key, creds.organization_id)

    def _dev_key(self) -> tuple[str, ...]:
        return (self.base_url, self.credentials.dev_key)

    def _session_key(self) -> tuple[str, ...]:
        return (*self._org_key(), self.credentials.username)

    @property
    def login_count(self) -> int:
        """Logins this process made with this connection's devKey in the current hour."""
        return self._shared.logins(self._dev_key())

    # -- per-push bookkeeping ---------------------------------------------------------------------

    @contextmanager
    def pushing(self, heartbeat: Callable[[str], None]) -> Iterator[None]:
        """Within the block, this thread's calls heartbeat with `heartbeat` and are counted."""
        self._calls.count = 0
        self._calls.heartbeat = heartbeat
        try:
            yield
        finally:
            self._calls.heartbeat = None

    @property
    def request_count(self) -> int:
        return int(getattr(self._calls, "count", 0))

    def _heartbeat(self, detail: str) -> None:
        (getattr(self._calls, "heartbeat", None) or heartbeat_running_activity)(detail)

    # -- calls ------------------------------------------------------------------------------------

    def call(
        self,
        doing: str,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        json_body: dict[str, Any] | None = None,
    ) -> Any:
        """One API call with the session; a call answered BDC_1109 logs in again and is sent
        once more. Returns the JSON body; raises the export error the answer stands for."""
        session = self._session(doing)
        for attempt in (1, 2):
            response = self._send(
                doing, method, path, params=params, json_body=json_body, session=session.session_id
            )
            body = _json(response)
            if response.is_success:
                session.last_used = self._clock()
                if body is None:
                    raise ProviderUnavailable(
                        f"BILL {doing}: HTTP {response.status_code} without JSON"
                    )
                return body
            errors = parse_errors(body)
            if errors and errors[0].code == SESSION_INVALID:
                if attempt == 1:
                    session = self._session(doing, stale=session.session_id)
                    continue
                # A session BILL refused right after it was issued: a passing fault at BILL.
                raise ProviderUnavailable(
                    f"BILL {doing}: a new session was refused at once ({errors[0]}); trying later"
                )
            raise self._error(doing, response, errors)
        raise AssertionError("unreachable")

    def list_all(
        self, doing: str, path: str, filters: str, *, at_most: int = LIST_PAGE * MAX_LIST_PAGES
    ) -> list[dict[str, Any]]:
        """Every row of a filtered list (see each_row)."""
        return list(self.each_row(doing, path, filters, at_most=at_most))

    def each_row(
        self, doing: str, path: str, filters: str, *, at_most: int = LIST_PAGE * MAX_LIST_PAGES
    ) -> Iterator[dict[str, Any]]:
        """The rows of a list, page by page (`max`, `page` = the last `nextPage`), filtered
        unless `filters` is empty. More than `at_most` rows is an error, not an endless read."""
        read = 0
        page: str | None = None
        while True:
            params = {"max": str(LIST_PAGE)}
            if filters:
                params["filters"] = filters
            if page:
                params["page"] = page
            body = self.call(doing, "GET", path, params=params)
            results = body.get("results") if isinstance(body, dict) else None
            if not isinstance(results, list):
                raise ProviderUnavailable(f"BILL {doing}: the list answer has no results")
            rows = [r for r in results if isinstance(r, dict)]
            read += len(rows)
            if read > at_most:
                raise ProviderLimitExceeded(
                    f"BILL {doing}: more than {at_most} rows match {filters!r}; billbridge reads "
                    f"at most {at_most} here"
                )
            yield from rows
            page = body.get("nextPage") or None
            if not page or not results:
                return

    def _error(self, doing: str, response: httpx.Response, errors: list[Any]) -> Exception:
        now = datetime.fromtimestamp(self._clock(), UTC)
        err = error_for(doing, response.status_code, errors, response.headers, now)
        if isinstance(err, ExportError):
            self.gate.refused_for_rate(err)
        if errors and errors[0].code == HOURLY_LIMIT:
            # Every request of this devKey waits for the next hour without being sent.
            self._shared.block_until(
                self._dev_key(), self._clock() + until_next_hour(now).total_seconds()
            )
        return err

    # -- sessions ---------------------------------------------------------------------------------

    def _session(self, doing: str, *, stale: str | None = None) -> _Session:
        """The shared session, logged in when there is none, it idled too long, or it is the
        `stale` one a call was refused with (unless another thread replaced it already)."""
        slot = self._shared.session_slot(self._session_key())
        self._heartbeat(f"{doing}: session")
        with slot.lock:
            current = slot.session
            fresh = (
                current is not None
                and current.session_id != stale
                and self._clock() - current.last_used < self.limits.session_reuse_seconds
            )
            if current is not None and fresh:
                return current
            slot.session = self._login(doing)
            return slot.session

    def _login(self, doing: str) -> _Session:
        now = self._clock()
        spent = self._shared.take_login(
            self._dev_key(), now, self.limits.logins_per_hour, self.limits.logins_per_minute
        )
        if spent is not None:
            wait, which = spent
            raise ProviderRateLimited(
                f"BILL {doing}: the login budget is spent ({which} with this devKey; BILL allows "
                f"200 an hour); logging in again in {int(wait) + 1} s",
                timedelta(seconds=wait + 1),
            )
        response = self._send(
            f"{doing}: logging in", "POST", "/v3/login", json_body=self.credentials.login_body()
        )
        body = _json(response)
        if not response.is_success:
            raise self._error(f"{doing}: logging in", response, parse_errors(body))
        session_id = body.get("sessionId") if isinstance(body, dict) else None
        if not isinstance(session_id, str) or not session_id:
            raise ProviderUnavailable(f"BILL {doing}: the login answer has no sessionId")
        return _Session(session_id, self._clock())

    # -- HTTP -------------------------------------------------------------------------------------

    def _send(
        self,
        doing: str,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        json_body: dict[str, Any] | None = None,
        session: str | None = None,
    ) -> httpx.Response:
        """Send one request within the limits, heartbeating before and after; the wait for a
        place among the organization's concurrent requests is part of its total deadline."""
        self._heartbeat(doing)
        self.gate.before_request(doing)
        wait = self._shared.take_request(
            self._dev_key(), self._clock(), self.limits.requests_per_hour
        )
        if wait is not None:
            raise ProviderRateLimited(
                f"BILL {doing}: this devKey's requests for the hour are used up (BILL allows "
                f"20,000 an hour); waiting {int(wait) + 1} s for the next hour",
                timedelta(seconds=wait) + timedelta(seconds=5),
            )
        headers = {"Accept": "application/json", "devKey": self.credentials.dev_key}
        if session is not None:
            headers["sessionId"] = session
        slot = self._shared.slot(self._org_key(), self.limits.concurrent_requests)
        self._heartbeat(doing)
        with deadline.within(provider_request_timeout()):
            if not slot.acquire(timeout=deadline.left() or 0.001):
                raise ProviderRateLimited(
                    f"BILL {doing}: {self.limits.concurrent_requests} requests to this "
                    "organization stayed in flight for the whole request deadline",
                    CONCURRENCY_RETRY_AFTER,
                )
            try:
                self._calls.count = self.request_count + 1
                response = self.http.request(
                    method,
                    f"{self.base_url}{path}",
                    params=params,
                    json=json_body,
                    headers=headers,
                    timeout=deadline.timeout(),
                )
            except httpx.HTTPError as err:  # timeouts, refused and dropped connections
                raise ProviderUnavailable(f"BILL {doing}: {type(err).__name__}: {err}") from err
            finally:
                slot.release()
        self._heartbeat(f"{doing}: answered")
        return response


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def is_not_found(err: BaseException) -> bool:
    """Whether BILL answered that what was asked for does not exist (HTTP 404)."""
    return isinstance(err, BillcomRejected) and err.status == 404
