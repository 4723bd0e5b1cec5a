"""Injected faults: the shared rules of :mod:`billbridge.emulators.faults`, plus what only Stripe
does with a failure (:class:`StripeFault`). ``from billbridge.emulators.stripe.faults import
Fault`` keeps working."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..faults import FAULT_KINDS, Fault, FaultKind, FaultSet, Firing

__all__ = ["FAULT_KINDS", "Fault", "FaultKind", "FaultSet", "StripeFault", "StripeFiring"]

SHOULD_RETRY_HEADER = "Stripe-Should-Retry"


@dataclass
class StripeFault(Fault):
    """A fault with Stripe's own two extras (also accepted by ``POST /_emulator/faults``):

    - ``should_retry``: send ``Stripe-Should-Retry: true|false`` with the injected reply. The
      API sets it to advise a retry (lock timeouts) or to say one would be a no-op; stripe-python
      obeys it before looking at the status (``HTTPClient._should_retry``,
      github.com/stripe/stripe-python/blob/master/stripe/_http_client.py).
    - ``saved``: a ``status`` fault (5xx) that happens once execution began, with nothing
      written: its reply is saved under the request's Idempotency-Key and replayed for that key
      ("Subsequent requests with the same key return the same result, including 500 errors",
      https://docs.stripe.com/idempotency), with ``Stripe-Should-Retry: false`` unless set
      (stripe-python: "we expect the stripe-should-retry header to be false in most cases when
      a 500 is returned, since our idempotency framework would typically replay it anyway").
    """

    should_retry: bool | None = None
    saved: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.saved and (self.kind != "status" or self.status < 500):
            raise ValueError("saved faults are 5xx status faults")

    def retry_header(self) -> dict[str, str]:
        """The Stripe-Should-Retry header this fault's reply carries (none: {})."""
        advice = self.should_retry
        if advice is None and self.saved:
            advice = False
        return {} if advice is None else {SHOULD_RETRY_HEADER: "true" if advice else "false"}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StripeFault:
        fault = super().from_dict(data)
        assert isinstance(fault, StripeFault)
        return fault


class StripeFiring(Firing):
    """Applies one request's faults; a ``saved`` fault is not answered before execution but in
    its place (see :meth:`saved_failure`), so the idempotency layer records it."""

    def __init__(self, delay: Fault | None, fault: Fault | None, **kwargs: Any) -> None:
        self._saved = fault if isinstance(fault, StripeFault) and fault.saved else None
        super().__init__(delay, None if self._saved is not None else fault, **kwargs)

    def saved_failure(self) -> StripeFault | None:
        """The saved 5xx fault to answer with instead of executing (marked fired), if any."""
        if self._saved is None:
            return None
        self.apply_delay()
        self._fired.append("status")
        return self._saved
