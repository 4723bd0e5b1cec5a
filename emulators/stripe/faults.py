"""Injected faults: error statuses, slow responses and dropped connections."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, cast

FaultKind = Literal["status", "delay", "drop", "drop_after"]
FAULT_KINDS: tuple[str, ...] = ("status", "delay", "drop", "drop_after")


@dataclass
class Fault:
    """One fault rule; it fires on the next ``count`` matching /v1 requests (None = forever).

    - ``status``: answer ``status`` with a Stripe-shaped error without executing the request
      (``retry_after`` adds a ``Retry-After`` header, ``message`` overrides the message).
    - ``delay``: sleep ``seconds`` during execution, then handle the request normally.
    - ``drop``: close the connection without a response; the request is NOT executed.
    - ``drop_after``: execute the request (idempotency result saved), then close the connection
      without sending the response.

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
