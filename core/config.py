"""Runtime settings, read from the environment once at start-up.

========================  ==============================  =========================================
variable                  attribute                       default
========================  ==============================  =========================================
TEMPORAL_ADDRESS          ``temporal_address``            ``None``: start the embedded dev server
TEMPORAL_NAMESPACE        ``temporal_namespace``          ``"default"``
BILLBRIDGE_DATA_DIR       ``data_dir``                    ``.data`` (resolved to an absolute path)
DATABASE_URL              ``database_url``                ``sqlite:///<data_dir>/billbridge.db``
STRIPE_API_KEY            ``stripe_api_key``              ``"sk_test_billbridge_emulator"``
<PROVIDER>_API_BASE       ``api_base(name)``              each registry entry's variable
                          (``stripe_api_base``,           (core/providers.py): STRIPE_API_BASE,
                          ``quickbooks_api_base``)        QUICKBOOKS_API_BASE. Emulators allowed:
                                                          ``None`` (the local emulator); else the
                                                          entry's real endpoint
                                                          (``https://api.stripe.com``, Intuit's
                                                          ``https://quickbooks.api.intuit.com``)
<MARKETPLACE>_ENDPOINT    ``marketplace_endpoint(name)``  each marketplace's variable
                                                          (core/marketplaces.py):
                                                          AWS_MARKETPLACE_ENDPOINT,
                                                          AZURE_MARKETPLACE_ENDPOINT,
                                                          GCP_MARKETPLACE_ENDPOINT; the same rule
                                                          as the API bases
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
BILLBRIDGE_METERING_      ``metering_gather_seconds``     ``2``: seconds a metering report waits
GATHER_SECONDS                                            for other customers' records (batches)
========================  ==============================  =========================================

Empty values count as unset.

This module alone decides which endpoint each provider talks to: a provider module reads
``settings.api_base(name)`` (``None`` = the local emulator) and never guesses. The providers
and their variables come from the registry (core/providers.py): a new provider adds nothing
here. A process pointed at a Temporal cluster is a production process, so an unset API base
there means the real provider, never a stand-in that would accept invoices and keep them in
memory.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import InitVar, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from billbridge.core.marketplaces import MARKETPLACE_ENTRIES
from billbridge.core.providers import DEFAULT_STRIPE_API_KEY, PROVIDER_ENTRIES, provider_entry

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

DEFAULT_TASK_QUEUE = "billbridge-export"
LOG_LEVELS = frozenset({"CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"})
EMULATORS_ENV = "BILLBRIDGE_EMULATORS"
# Names older code and tests import; they read the registry (core/providers.py), which is
# where the real endpoints and emulator ports live. New providers add nothing here.
STRIPE_API_URL = provider_entry("stripe_invoice").real_url
QUICKBOOKS_API_URL = provider_entry("quickbooks").real_url
STRIPE_EMULATOR_PORT = provider_entry("stripe_invoice").emulator_port
QUICKBOOKS_EMULATOR_PORT = provider_entry("quickbooks").emulator_port
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


def _seconds(environ: Mapping[str, str], name: str, default: float) -> float:
    value = _get(environ, name)
    if value is None:
        return default
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(f"{name}={value!r}: expected a number of seconds") from None
    if not 0 <= seconds <= 600:
        raise ValueError(f"{name}={value!r}: expected 0 to 600 seconds")
    return seconds


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
    api_bases: Mapping[str, str | None] = field(default_factory=dict)
    """Registry name -> base URL of its API; ``None`` = the local emulator (only when emulators
    are allowed: otherwise it is filled in with the entry's real endpoint). After construction
    it holds every registered provider."""
    quickbooks_client_id: str | None = None
    """The Intuit app's OAuth client, read by `connections authorize quickbooks` only (the
    grant it buys is sealed in the store with the client)."""
    quickbooks_client_secret: str | None = None
    task_queue: str = DEFAULT_TASK_QUEUE
    log_level: str = "INFO"
    metering_gather_seconds: float = 2.0
    """How long a metering report waits for the other customers of the same hour before it
    sends, so their records share batches (AWS and Azure take 25 a call)."""
    emulators: bool | None = None
    """May local emulators stand in for providers whose API base is unset? ``None`` (the
    default) = only on the embedded Temporal default (``temporal_address`` unset); always a
    bool after construction."""
    # The API bases of the first two providers as keywords, as older code and the tests build
    # Settings (Settings(stripe_api_base=...), replace(settings, quickbooks_api_base=...)).
    # Given (not None), they win over `api_bases`; read back as attributes of the same names
    # (defined below the class). New providers use `api_bases` / `api_base(name)` only.
    marketplace_endpoints: Mapping[str, str | None] = field(default_factory=dict)
    """Marketplace name (core/marketplaces.py) -> its API endpoint; ``None`` = the local
    emulator, under the same rule as `api_bases` (otherwise the real endpoint, "{region}" left
    for the connection's region)."""
    stripe_api_base: InitVar[str | None] = None
    quickbooks_api_base: InitVar[str | None] = None

    def __post_init__(self, stripe_api_base: str | None, quickbooks_api_base: str | None) -> None:
        # Decided here, not in from_env, so that every way of building Settings (from_env,
        # the constructor, dataclasses.replace) follows the same rule.
        allowed = self.temporal_address is None if self.emulators is None else self.emulators
        object.__setattr__(self, "emulators", allowed)
        bases = {entry.name: self.api_bases.get(entry.name) for entry in PROVIDER_ENTRIES}
        for name, given in (
            ("stripe_invoice", stripe_api_base),
            ("quickbooks", quickbooks_api_base),
        ):
            if given is not None:
                bases[name] = given
        if not allowed:
            for entry in PROVIDER_ENTRIES:
                if bases[entry.name] is None:
                    bases[entry.name] = entry.real_url
        object.__setattr__(self, "api_bases", bases)
        endpoints = {
            entry.name: self.marketplace_endpoints.get(entry.name) for entry in MARKETPLACE_ENTRIES
        }
        if not allowed:
            for market in MARKETPLACE_ENTRIES:
                if endpoints[market.name] is None:
                    endpoints[market.name] = market.real_url
        object.__setattr__(self, "marketplace_endpoints", endpoints)

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
            api_bases={entry.name: _get(env, entry.api_base_env) for entry in PROVIDER_ENTRIES},
            marketplace_endpoints={
                entry.name: _get(env, entry.endpoint_env) for entry in MARKETPLACE_ENTRIES
            },
            quickbooks_client_id=_get(env, "QUICKBOOKS_CLIENT_ID"),
            quickbooks_client_secret=_get(env, "QUICKBOOKS_CLIENT_SECRET"),
            task_queue=_get(env, "BILLBRIDGE_TASK_QUEUE") or DEFAULT_TASK_QUEUE,
            log_level=log_level,
            metering_gather_seconds=_seconds(env, "BILLBRIDGE_METERING_GATHER_SECONDS", 2.0),
            emulators=True if emulators else _flag(env, EMULATORS_ENV),
        )

    def to_env(self) -> dict[str, str]:
        """The variables `from_env` reads back into these settings: what another billbridge
        process (a worker, the CLI) needs to use them. Secrets other than the Stripe key (the
        codec key, QuickBooks' client secret) are not included: the caller passes its own."""
        env = {
            "TEMPORAL_NAMESPACE": self.temporal_namespace,
            "BILLBRIDGE_DATA_DIR": str(self.data_dir),
            "DATABASE_URL": self.database_url,
            "STRIPE_API_KEY": self.stripe_api_key,
            "BILLBRIDGE_TASK_QUEUE": self.task_queue,
            "BILLBRIDGE_LOG_LEVEL": self.log_level,
            "BILLBRIDGE_METERING_GATHER_SECONDS": str(self.metering_gather_seconds),
        }
        if self.temporal_address:
            env["TEMPORAL_ADDRESS"] = self.temporal_address
        for entry in PROVIDER_ENTRIES:
            if base := self.api_base(entry.name):
                env[entry.api_base_env] = base
        for market in MARKETPLACE_ENTRIES:
            if endpoint := self.marketplace_endpoint(market.name):
                env[market.endpoint_env] = endpoint
        if self.quickbooks_client_id:
            env["QUICKBOOKS_CLIENT_ID"] = self.quickbooks_client_id
        return env

    @property
    def uses_embedded_temporal(self) -> bool:
        return self.temporal_address is None

    def api_base(self, provider: str) -> str | None:
        """The provider's configured base URL; None: its local emulator."""
        return self.api_bases.get(provider)

    def marketplace_endpoint(self, marketplace: str) -> str | None:
        """The marketplace's configured endpoint; None: its local emulator."""
        return self.marketplace_endpoints.get(marketplace)

    def uses_emulator(self, provider: str) -> bool:
        return self.api_base(provider) is None

    @property
    def uses_stripe_emulator(self) -> bool:
        return self.uses_emulator("stripe_invoice")

    @property
    def uses_quickbooks_emulator(self) -> bool:
        return self.uses_emulator("quickbooks")

    def endpoints(self) -> dict[str, str]:
        """Provider name -> the base URL it talks to (an unset base: the local emulator on its
        default port)."""
        return {
            entry.name: (self.api_base(entry.name) or entry.emulator_url).rstrip("/")
            for entry in PROVIDER_ENTRIES
        }


def _api_base_attribute(provider: str) -> property:
    return property(lambda settings: settings.api_base(provider), doc=f"api_base({provider!r})")


# Read side of the keywords above (an InitVar is not stored; a property in the class body would
# become its default).
setattr(Settings, "stripe_api_base", _api_base_attribute("stripe_invoice"))  # noqa: B010
setattr(Settings, "quickbooks_api_base", _api_base_attribute("quickbooks"))  # noqa: B010
