"""Runtime settings, read from the environment once at start-up.

========================  ==============================  =========================================
variable                  attribute                       default
========================  ==============================  =========================================
TEMPORAL_ADDRESS          ``temporal_address``            ``None``: start the embedded dev server
TEMPORAL_NAMESPACE        ``temporal_namespace``          ``"default"``
BILLBRIDGE_DATA_DIR       ``data_dir``                    ``.data`` (resolved to an absolute path)
DATABASE_URL              ``database_url``                ``sqlite:///<data_dir>/billbridge.db``
STRIPE_API_KEY            ``stripe_api_key``              ``"sk_test_billbridge_emulator"``
STRIPE_API_BASE           ``stripe_api_base``             ``None``: use the local Stripe emulator
QUICKBOOKS_API_BASE       ``quickbooks_api_base``         ``None``: the local QuickBooks emulator
QUICKBOOKS_CLIENT_ID      ``quickbooks_client_id``        ``None``: the emulator's (authorize only)
QUICKBOOKS_CLIENT_SECRET  ``quickbooks_client_secret``    ``None``: the emulator's (authorize only)
BILLBRIDGE_TASK_QUEUE     ``task_queue``                  ``"billbridge-export"``
BILLBRIDGE_LOG_LEVEL      ``log_level``                   ``"INFO"`` (``LOG_LEVEL`` also accepted)
========================  ==============================  =========================================

Empty values count as unset.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DEFAULT_STRIPE_API_KEY", "DEFAULT_TASK_QUEUE", "LOG_LEVELS", "Settings"]

DEFAULT_STRIPE_API_KEY = "sk_test_billbridge_emulator"
DEFAULT_TASK_QUEUE = "billbridge-export"
LOG_LEVELS = frozenset({"CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"})


def _get(environ: Mapping[str, str], name: str) -> str | None:
    value = environ.get(name)
    if value is None:
        return None
    value = value.strip()
    return value or None


@dataclass(frozen=True)
class Settings:
    temporal_address: str | None = None
    """``host:port`` of a Temporal frontend; ``None`` = start the embedded dev server."""
    temporal_namespace: str = "default"
    data_dir: Path = Path(".data")
    database_url: str = "sqlite:///.data/billbridge.db"
    stripe_api_key: str = DEFAULT_STRIPE_API_KEY
    stripe_api_base: str | None = None
    """Base URL of the Stripe API; ``None`` = the local Stripe emulator."""
    quickbooks_api_base: str | None = None
    """Base URL of QuickBooks Online (``https://quickbooks.api.intuit.com`` or the sandbox);
    ``None`` = the local QuickBooks emulator, which also serves the OAuth endpoints."""
    quickbooks_client_id: str | None = None
    """The Intuit app's OAuth client, read by `connections authorize quickbooks` only (the
    grant it buys is sealed in the store with the client)."""
    quickbooks_client_secret: str | None = None
    task_queue: str = DEFAULT_TASK_QUEUE
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        """Build settings from ``environ`` (default: the process environment)."""
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
        )

    @property
    def uses_embedded_temporal(self) -> bool:
        return self.temporal_address is None

    @property
    def uses_stripe_emulator(self) -> bool:
        return self.stripe_api_base is None
