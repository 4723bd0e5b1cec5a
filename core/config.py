"""Runtime settings, read from the environment once at start-up.

========================  ==============================  =========================================
variable                  attribute                       default
========================  ==============================  =========================================
TEMPORAL_ADDRESS          ``temporal_address``            ``None``: start the embedded dev server
TEMPORAL_NAMESPACE        ``temporal_namespace``          ``"default"``
BILLBRIDGE_DATA_DIR       ``data_dir``                    ``.data`` (resolved to an absolute path)
DATABASE_URL              ``database_url``                ``sqlite:///<data_dir>/billbridge.db``
STRIPE_API_KEY            ``stripe_api_key``              ``"sk_test_billbridge_emulator"``
STRIPE_API_BASE           ``stripe_api_base``             emulators allowed: ``None`` (the local
                                                          Stripe emulator); else Stripe,
                                                          ``https://api.stripe.com``
QUICKBOOKS_API_BASE       ``quickbooks_api_base``         emulators allowed: ``None`` (the local
                                                          QuickBooks emulator); else Intuit's
                                                          ``https://quickbooks.api.intuit.com``
BILLBRIDGE_EMULATORS      ``emulators``                   ``1``: local provider emulators may
                                                          stand in for unset API bases even with
                                                          TEMPORAL_ADDRESS set; ``0``: never.
                                                          Unset: only when TEMPORAL_ADDRESS is
                                                          unset (and under ``billbridge server``
                                                          and ``billbridge demo``, which ask for
                                                          them)
QUICKBOOKS_CLIENT_ID      ``quickbooks_client_id``        ``None``: the emulator's (authorize only)
QUICKBOOKS_CLIENT_SECRET  ``quickbooks_client_secret``    ``None``: the emulator's (authorize only)
BILLBRIDGE_TASK_QUEUE     ``task_queue``                  ``"billbridge-export"``
BILLBRIDGE_LOG_LEVEL      ``log_level``                   ``"INFO"`` (``LOG_LEVEL`` also accepted)
========================  ==============================  =========================================

Empty values count as unset.

This module alone decides which endpoint each provider talks to: a provider module reads its
``*_api_base`` setting (``None`` = the local emulator) and never guesses. A process pointed at a
Temporal cluster is a production process, so an unset API base there means the real provider,
never a stand-in that would accept invoices and keep them in memory.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

__all__ = [
    "DEFAULT_STRIPE_API_KEY",
    "DEFAULT_TASK_QUEUE",
    "EMULATORS_ENV",
    "LOG_LEVELS",
    "QUICKBOOKS_API_URL",
    "QUICKBOOKS_EMULATOR_PORT",
    "STRIPE_API_URL",
    "STRIPE_EMULATOR_PORT",
    "Settings",
    "is_local_url",
]

DEFAULT_STRIPE_API_KEY = "sk_test_billbridge_emulator"
DEFAULT_TASK_QUEUE = "billbridge-export"
LOG_LEVELS = frozenset({"CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"})
EMULATORS_ENV = "BILLBRIDGE_EMULATORS"
# The real endpoints, used whenever an API base is unset and emulators are not allowed.
STRIPE_API_URL = "https://api.stripe.com"
# Intuit's production Accounting API; activities/providers/quickbooks.py switches to Intuit's
# OAuth endpoints for any *.intuit.com base, so this keeps API and OAuth consistent.
QUICKBOOKS_API_URL = "https://quickbooks.api.intuit.com"
# Where the local emulators listen by default (the provider modules use the same ports for an
# unset API base; tests/test_operator_endpoints.py checks they agree).
STRIPE_EMULATOR_PORT = 12111
QUICKBOOKS_EMULATOR_PORT = 12112
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def _get(environ: Mapping[str, str], name: str) -> str | None:
    value = environ.get(name)
    if value is None:
        return None
    value = value.strip()
    return value or None


def _flag(environ: Mapping[str, str], name: str) -> bool | None:
    value = _get(environ, name)
    if value is None:
        return None
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ValueError(f"{name}={value!r}: expected 1 or 0")


def is_local_url(url: str) -> bool:
    """Whether `url` points at this machine (an emulator; never a real provider)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Settings:
    temporal_address: str | None = None
    """``host:port`` of a Temporal frontend; ``None`` = start the embedded dev server."""
    temporal_namespace: str = "default"
    data_dir: Path = Path(".data")
    database_url: str = "sqlite:///.data/billbridge.db"
    stripe_api_key: str = DEFAULT_STRIPE_API_KEY
    stripe_api_base: str | None = None
    """Base URL of the Stripe API; ``None`` = the local Stripe emulator (only when emulators
    are allowed: otherwise it is filled in with https://api.stripe.com)."""
    quickbooks_api_base: str | None = None
    """Base URL of QuickBooks Online (``https://quickbooks.api.intuit.com`` or the sandbox);
    ``None`` = the local QuickBooks emulator, which also serves the OAuth endpoints (only when
    emulators are allowed: otherwise it is filled in with Intuit's production URL)."""
    quickbooks_client_id: str | None = None
    """The Intuit app's OAuth client, read by `connections authorize quickbooks` only (the
    grant it buys is sealed in the store with the client)."""
    quickbooks_client_secret: str | None = None
    task_queue: str = DEFAULT_TASK_QUEUE
    log_level: str = "INFO"
    emulators: bool | None = None
    """May local emulators stand in for providers whose API base is unset? ``None`` (the
    default) = only on the embedded Temporal default (``temporal_address`` unset); always a
    bool after construction."""

    def __post_init__(self) -> None:
        # Decided here, not in from_env, so that every way of building Settings (from_env,
        # the constructor, dataclasses.replace) follows the same rule.
        allowed = self.temporal_address is None if self.emulators is None else self.emulators
        object.__setattr__(self, "emulators", allowed)
        if not allowed:
            if self.stripe_api_base is None:
                object.__setattr__(self, "stripe_api_base", STRIPE_API_URL)
            if self.quickbooks_api_base is None:
                object.__setattr__(self, "quickbooks_api_base", QUICKBOOKS_API_URL)

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] = os.environ, *, emulators: bool = False
    ) -> Settings:
        """Build settings from ``environ`` (default: the process environment).

        emulators: the command itself runs the local emulators (`billbridge server`, `demo`),
        so unset API bases mean them whatever TEMPORAL_ADDRESS says.
        """
        env = environ
        data_dir = Path(_get(env, "BILLBRIDGE_DATA_DIR") or ".data").expanduser().resolve()
        log_level = (_get(env, "BILLBRIDGE_LOG_LEVEL") or _get(env, "LOG_LEVEL") or "INFO").upper()
        if log_level == "WARN":
            log_level = "WARNING"
        if log_level not in LOG_LEVELS:
            raise ValueError(
                f"invalid log level {log_level!r}: expected one of {sorted(LOG_LEVELS)}"
            )
        return cls(
            temporal_address=_get(env, "TEMPORAL_ADDRESS"),
            temporal_namespace=_get(env, "TEMPORAL_NAMESPACE") or "default",
            data_dir=data_dir,
            database_url=_get(env, "DATABASE_URL") or f"sqlite:///{data_dir}/billbridge.db",
            stripe_api_key=_get(env, "STRIPE_API_KEY") or DEFAULT_STRIPE_API_KEY,
            stripe_api_base=_get(env, "STRIPE_API_BASE"),
            quickbooks_api_base=_get(env, "QUICKBOOKS_API_BASE"),
            quickbooks_client_id=_get(env, "QUICKBOOKS_CLIENT_ID"),
            quickbooks_client_secret=_get(env, "QUICKBOOKS_CLIENT_SECRET"),
            task_queue=_get(env, "BILLBRIDGE_TASK_QUEUE") or DEFAULT_TASK_QUEUE,
            log_level=log_level,
            emulators=True if emulators else _flag(env, EMULATORS_ENV),
        )

    @property
    def uses_embedded_temporal(self) -> bool:
        return self.temporal_address is None

    @property
    def uses_stripe_emulator(self) -> bool:
        return self.stripe_api_base is None

    @property
    def uses_quickbooks_emulator(self) -> bool:
        return self.quickbooks_api_base is None

    def endpoints(self) -> dict[str, str]:
        """Connection name -> the base URL its provider talks to (an unset base: the local
        emulator on its default port)."""
        return {
            "stripe_invoice": self.stripe_api_base or f"http://127.0.0.1:{STRIPE_EMULATOR_PORT}",
            "quickbooks": (
                self.quickbooks_api_base or f"http://127.0.0.1:{QUICKBOOKS_EMULATOR_PORT}"
            ).rstrip("/"),
        }
