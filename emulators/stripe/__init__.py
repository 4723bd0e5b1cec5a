"""A local Stripe Invoicing emulator that the official ``stripe`` SDK talks to unchanged.

Usage (see ``emulator.StripeEmulator`` and ``faults.Fault``):

from billbridge.emulators.stripe import StripeEmulator, Fault

with StripeEmulator(rate_limit_per_second=None) as emu:
    client = stripe.StripeClient("sk_test_x", base_addresses={"api": emu.base_url})
    ...
"""

from .emulator import StripeEmulator
from .errors import StripeError
from .faults import Fault, FaultKind, StripeFault
from .requestlog import LoggedRequest

__all__ = ["Fault", "FaultKind", "LoggedRequest", "StripeEmulator", "StripeError", "StripeFault"]
