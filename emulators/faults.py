"""Injected faults: error statuses, slow responses and dropped connections.

Both emulators take the same rules (tests arm them through ``add_fault``, the Stripe emulator
also through ``POST /_emulator/faults``), so a test harness injects failures the same way
whichever provider it exercises. Each emulator decides which requests are faultable and renders
a ``status`` fault in its own API's error shape.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, Protocol, cast

FaultKind = Literal["status", "delay", "drop", "drop_after"]
FAULT_KINDS: tuple[str, ...] = ("status", "delay", "drop", "drop_after")


@dataclass
class Fault:
    """One fault rule; it fires on the next ``count`` matching API requests (None = forever).

    - ``status``: answer ``status`` with an error in the emulated API's shape, without executing
      the request
      (``retry_after`` adds a ``Retry-After`` header, ``message`` overrides the message).
    - ``delay``: sleep ``seconds`` during execution, then handle the request normally.
    - ``drop``: close the connection without a response; the request is NOT executed.
    - ``drop_after``: execute the request (its idempotency / ``requestid`` result saved), then
      close the connection without sending the response.

    ``skip`` lets that many matching requests through untouched before the fault starts firing
    (e.g. "delay the second add_lines call").
    """

    kind: FaultKind
    status: int = 500
    count: int | None = 1
    path_prefix: str | None = None
    method: str | None = None
    retry_after: float | None = None
    seconds: float = 0.0
    message: str | None = None
    skip: int = 0

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {FAULT_KINDS}")
        if self.count is not None and self.count < 1:
            raise ValueError("count must be >= 1 (or None for unlimited)")
        if self.kind == "status" and not 400 <= self.status <= 599:
            raise ValueError("status faults need a 4xx/5xx status")
        if self.skip < 0:
            raise ValueError("skip must be >= 0")
        if self.seconds < 0:
            raise ValueError("seconds must be >= 0")
        if self.method is not None:
            self.method = self.method.upper()

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method != method.upper():
            return False
        return self.path_prefix is None or path.startswith(self.path_prefix)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fault:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown fault fields: {unknown}")
        if "kind" not in data:
            raise ValueError("fault needs a 'kind'")
        return cls(**cast(dict[str, Any], data))


@dataclass
class _Armed:
    fault: Fault
    remaining: int | None
    to_skip: int = 0


class FaultSet:
    """Thread-safe list of armed faults, consumed in the order they were added."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._armed: list[_Armed] = []

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._armed.append(_Armed(fault, fault.count, fault.skip))

    def clear(self) -> None:
        with self._lock:
            self._armed.clear()

    def armed(self) -> list[dict[str, Any]]:
        with self._lock:
            return [{**a.fault.to_dict(), "remaining": a.remaining} for a in self._armed]

    def take(self, method: str, path: str) -> tuple[Fault | None, Fault | None]:
        """Consume at most one delay fault and one other fault matching this request."""
        with self._lock:
            for skipping in self._armed:
                if skipping.to_skip and skipping.fault.matches(method, path):
                    skipping.to_skip -= 1
                    return None, None
            delay = next(
                (
                    a
                    for a in self._armed
                    if a.fault.kind == "delay" and a.fault.matches(method, path)
                ),
                None,
            )
            other = next(
                (
                    a
                    for a in self._armed
                    if a.fault.kind != "delay" and a.fault.matches(method, path)
                ),
                None,
            )
            for armed in (delay, other):
                if armed is not None and armed.remaining is not None:
                    armed.remaining -= 1
                    if armed.remaining <= 0:
                        self._armed.remove(armed)
            return (delay.fault if delay else None), (other.fault if other else None)


class Logged(Protocol):
    """What a request log entry records of the faults (both emulators' entries have it)."""

    status: int
    fault: str | None


class Firing:
    """The faults one request took (at most a delay and one other) and which of them fired.

    Both emulators apply them the same way, and their request logs say so in the same words:
    the delay sleeps once, at the latest before the reply goes out; ``drop`` and ``status``
    replace execution (after the delay); ``drop_after`` discards the executed reply.
    """

    def __init__(
        self, delay: Fault | None, fault: Fault | None, *, sleep: Callable[[float], None]
    ) -> None:
        self._delay = delay
        self._fault = fault
        self._sleep = sleep
        self._fired: list[str] = []

    def apply_delay(self) -> None:
        """Sleep for the delay fault the first time this is called; a no-op afterwards."""
        if self._delay is not None:
            self._fired.append("delay")
            seconds, self._delay = self._delay.seconds, None
            self._sleep(seconds)

    def instead(self) -> Fault | None:
        """The ``drop`` or ``status`` fault to answer with instead of executing the request
        (marked fired, after the delay); None when the request runs."""
        fault = self._fault
        if fault is None or fault.kind not in ("drop", "status"):
            return None
        self.apply_delay()
        self._fired.append(fault.kind)
        return fault

    def drop_after(self) -> bool:
        """Whether a ``drop_after`` fault discards the executed reply (marked fired)."""
        if self._fault is None or self._fault.kind != "drop_after":
            return False
        self._fired.append("drop_after")
        return True

    def record(self, entry: Logged, status: int, dropped: bool) -> None:
        """Fill in a request log entry: the kinds that fired (e.g. "status",
        "delay+drop_after"; None when none did) and the status, 0 when a ``drop`` fault cut
        the connection before any response (``drop_after`` keeps the executed status)."""
        entry.status = 0 if dropped and "drop" in self._fired else status
        entry.fault = "+".join(self._fired) or None
