"""Injected faults: the shared rules of :mod:`billbridge.emulators.faults`, re-exported here so
``from billbridge.emulators.stripe.faults import Fault`` keeps working."""

from ..faults import FAULT_KINDS, Fault, FaultKind, FaultSet

__all__ = ["FAULT_KINDS", "Fault", "FaultKind", "FaultSet"]
