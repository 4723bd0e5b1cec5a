"""Login, sessions and the limits BILL enforces per devKey (and organization).

- ``POST /v3/login`` takes ``{username, password, organizationId, devKey}`` and answers a
  ``sessionId``; later calls send the headers ``devKey`` and ``sessionId``
  (https://developer.bill.com/reference/login). A session ends after 35 minutes without a call,
  any call renewing it, and is not refreshed: the client logs in again
  (https://developersupport.bill.com/hc/en-us/articles/360035447311-Key-Concepts: "If API calls
  are not made for 35 minutes, the sessionId is marked as invalid").
- Logins are limited to 200 per devKey per hour, and login is listed among the endpoints limited
  to 5 per minute (https://developer.bill.com/docs/api-rate-limits). UNCONFIRMED: that the
  per-minute refusal also carries BDC_1144.
- 20,000 requests per devKey per hour, BDC_1144, "All subsequent API requests must wait until the
  beginning of the next hour"; 3 concurrent requests per devKey per organization, BDC_1322,
  "All subsequent API requests fail until one concurrent request is completed" (same page).
  UNCONFIRMED: that the hour is the clock hour; whether refused requests count (they do not here).

Everything runs on :class:`Clock`, which tests move forward instead of waiting.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass

from . import errors

SESSION_IDLE_SECONDS = 35 * 60.0


class Clock:
    """Wall time plus an offset tests can advance (sessions, hours, dates)."""

    def __init__(self) -> None:
        self._offset = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._offset += seconds

    def reset(self) -> None:
        with self._lock:
            self._offset = 0.0


@dataclass(frozen=True)
class Account:
    """The one user and organization the emulator knows, and its developer key."""

    dev_key: str
    organization_id: str
    username: str
    password: str
    user_id: str


@dataclass
class Session:
    session_id: str
    dev_key: str
    organization_id: str
    user_id: str
    last_used: float


class Sessions:
    def __init__(
        self,
        account: Account,
        clock: Clock,
        *,
        idle_seconds: float = SESSION_IDLE_SECONDS,
        logins_per_hour: int | None = 200,
        logins_per_minute: int | None = 5,
        limit_status: int = 400,
    ) -> None:
        self.account = account
        self.clock = clock
        self.idle_seconds = idle_seconds
        self.logins_per_hour = logins_per_hour
        self.logins_per_minute = logins_per_minute
        self.limit_status = limit_status
        self._lock = threading.Lock()
        self._sessions: dict[str, Session] = {}
        self._logins: deque[float] = deque()  # when each accepted login happened
        self.login_attempts = 0

    def login(self, body: object) -> Session:
        if not isinstance(body, dict):
            raise errors.invalid("the login body must be a JSON object")
        missing = [
            name
            for name in ("username", "password", "organizationId", "devKey")
            if not isinstance(body.get(name), str) or not body[name]
        ]
        if missing:
            raise errors.invalid(f"missing {', '.join(missing)}")
        account = self.account
        now = self.clock.now()
        with self._lock:
            self.login_attempts += 1
            if body["devKey"] != account.dev_key:
                raise errors.documented(401, errors.BAD_DEV_KEY)
            self._check_login_cap(now)
            if body["username"] != account.username or body["password"] != account.password:
                raise errors.documented(401, errors.BAD_CREDENTIALS)
            if body["organizationId"] != account.organization_id:
                # UNCONFIRMED: the answer for an organization the user does not belong to.
                raise errors.documented(401, errors.BAD_CREDENTIALS)
            self._logins.append(now)
            session = Session(
                session_id=secrets.token_urlsafe(24),
                dev_key=account.dev_key,
                organization_id=account.organization_id,
                user_id=account.user_id,
                last_used=now,
            )
            self._sessions[session.session_id] = session
            return session

    def _check_login_cap(self, now: float) -> None:
        hour_start = (now // 3600) * 3600
        while self._logins and self._logins[0] < hour_start:
            self._logins.popleft()
        if self.logins_per_hour is not None and len(self._logins) >= self.logins_per_hour:
            raise errors.hourly_limit(self.limit_status, self.logins_per_hour)
        recent = sum(1 for t in self._logins if t > now - 60)
        if self.logins_per_minute is not None and recent >= self.logins_per_minute:
            raise errors.hourly_limit(self.limit_status, self.logins_per_hour or 200)

    def authenticate(self, dev_key: str | None, session_id: str | None) -> Session:
        """The live session the headers name (renewed), else BDC_1109 / BDC_1102."""
        now = self.clock.now()
        with self._lock:
            session = self._sessions.get(session_id or "")
            if session is None or now - session.last_used > self.idle_seconds:
                self._sessions.pop(session_id or "", None)
                raise errors.session_invalid()
            if dev_key != session.dev_key:
                raise errors.documented(401, errors.BAD_DEV_KEY)
            session.last_used = now
            return session

    def logout(self, session: Session) -> None:
        with self._lock:
            self._sessions.pop(session.session_id, None)

    def expire_all(self) -> None:
        with self._lock:
            self._sessions.clear()

    def logins_this_hour(self) -> int:
        now = self.clock.now()
        with self._lock:
            return sum(1 for t in self._logins if t >= (now // 3600) * 3600)

    def live(self) -> int:
        now = self.clock.now()
        with self._lock:
            return sum(1 for s in self._sessions.values() if now - s.last_used <= self.idle_seconds)

    def reset(self) -> None:
        with self._lock:
            self._sessions.clear()
            self._logins.clear()
            self.login_attempts = 0


class Limits:
    """Requests per devKey per hour and concurrent requests per devKey and organization."""

    def __init__(
        self,
        clock: Clock,
        *,
        requests_per_hour: int | None = 20_000,
        concurrent_requests: int | None = 3,
        limit_status: int = 400,
    ) -> None:
        self.clock = clock
        self.requests_per_hour = requests_per_hour
        self.concurrent_requests = concurrent_requests
        self.limit_status = limit_status
        self._lock = threading.Lock()
        self._hours: dict[str, tuple[int, int]] = {}  # devKey -> (hour, requests)
        self._in_flight: dict[tuple[str, str], int] = {}
        self.peak_in_flight: dict[tuple[str, str], int] = {}
        self.refused: dict[str, int] = {"BDC_1144": 0, "BDC_1322": 0}

    def count_request(self, dev_key: str) -> None:
        """One request of this devKey in the current clock hour, or BDC_1144."""
        hour = int(self.clock.now() // 3600)
        with self._lock:
            seen, count = self._hours.get(dev_key, (hour, 0))
            if seen != hour:
                count = 0
            if self.requests_per_hour is not None and count >= self.requests_per_hour:
                self.refused["BDC_1144"] += 1
                raise errors.hourly_limit(self.limit_status, self.requests_per_hour)
            self._hours[dev_key] = (hour, count + 1)

    def enter(self, key: tuple[str, str]) -> None:
        """Start one request of this devKey and organization, or BDC_1322."""
        with self._lock:
            current = self._in_flight.get(key, 0)
            if self.concurrent_requests is not None and current >= self.concurrent_requests:
                self.refused["BDC_1322"] += 1
                raise errors.concurrency_limit(self.limit_status)
            self._in_flight[key] = current + 1
            self.peak_in_flight[key] = max(self.peak_in_flight.get(key, 0), current + 1)

    def leave(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._in_flight[key] = max(self._in_flight.get(key, 1) - 1, 0)

    def in_flight(self, key: tuple[str, str]) -> int:
        with self._lock:
            return self._in_flight.get(key, 0)

    def reset(self) -> None:
        with self._lock:
            self._hours.clear()
            self._in_flight.clear()
            self.peak_in_flight.clear()
            self.refused = {"BDC_1144": 0, "BDC_1322": 0}
