"""The embedded defaults: what runs when TEMPORAL_ADDRESS or a provider's API base is unset.

- Temporal: `temporal server start-dev` (SQLite file under the data dir, Web UI) on 127.0.0.1:7233,
  unless something already listens there (another billbridge process started it).
  Its UI decodes the (encrypted) payloads through a codec endpoint (workers/codec_server.py)
  started here with the embedded key (`<data dir>/codec.key` unless BILLBRIDGE_CODEC_KEY[_FILE]).
- Each provider in the registry (core/providers.py): its local emulator on its fixed port
  (Stripe 127.0.0.1:12111; QuickBooks Online, OAuth and Accounting API, 127.0.0.1:12112, which
  `billbridge connections authorize quickbooks` authorizes against), likewise.

Emulators start only for an API base that Settings left unset, which it does only when emulators
are allowed (core/config.py: the embedded Temporal default, `billbridge server` / `demo`, or
BILLBRIDGE_EMULATORS=1). Pointed at a Temporal cluster, billbridge talks to the real providers.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from billbridge.core.config import Settings
from billbridge.core.marketplaces import MARKETPLACE_ENTRIES
from billbridge.core.providers import PROVIDER_ENTRIES, load
from billbridge.workers.codec import EncryptionCodec, embedded_address, load_codec
from billbridge.workers.codec_server import CodecServer
from billbridge.workers.dev_server import DevServer, free_port

if TYPE_CHECKING:  # production configurations never import the emulators
    from billbridge.emulators.serving import EmulatorService

EMBEDDED_TEMPORAL_PORT = 7233
EMBEDDED_UI_PORT = 8233

log = logging.getLogger("billbridge")


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.3)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@dataclass(frozen=True)
class Emulated:
    """A local emulator standing in for a provider, and whether this process started it."""

    connection: str  # the connection it stands in for, e.g. "stripe_invoice"
    label: str  # "Stripe", "QuickBooks"
    url: str
    started: bool  # False: the port was already served by another process, which is used
    instance: Any = field(default=None, repr=False, compare=False)  # the emulator we started


@dataclass
class LocalServices:
    settings: Settings  # with temporal_address and every emulated API base filled in
    temporal_ui_url: str | None
    codec: EncryptionCodec | None = None
    """The embedded server's payload codec; None when TEMPORAL_ADDRESS is set."""
    codec_endpoint: str | None = None
    """The codec endpoint the UI uses, when this process started the server."""
    temporal_started: bool = False
    """Whether this process started the Temporal server (and so stops it on exit)."""
    emulators: list[Emulated] = field(default_factory=list)


@contextlib.contextmanager
def local_services(
    settings: Settings,
    *,
    fresh_ports: bool = False,
    ports: Mapping[str, int] | None = None,
    temporal_dir: Path | None = None,
) -> Iterator[LocalServices]:
    """Start what the settings leave unset; stop it on exit.

    fresh_ports: use free ports instead of the fixed defaults (a self-contained demo or test that
    must not meet another billbridge's server). ports: provider name -> where its emulator
    listens (0: any free port; default: the registry's port). temporal_dir: where a dev server
    started here keeps its state (default `<data dir>/temporal`).
    """
    with contextlib.ExitStack() as stack:
        ui_url: str | None = None
        codec: EncryptionCodec | None = None
        codec_endpoint: str | None = None
        temporal_started = False
        if settings.temporal_address is None:
            codec = load_codec(settings)  # the embedded default key, unless one is configured
            port = free_port() if fresh_ports else EMBEDDED_TEMPORAL_PORT
            if not fresh_ports and _listening(port):
                address = f"127.0.0.1:{port}"
                ui_url = f"http://127.0.0.1:{EMBEDDED_UI_PORT}"
            else:
                ui_port = free_port() if fresh_ports else EMBEDDED_UI_PORT
                ui_origins = (f"http://127.0.0.1:{ui_port}", f"http://localhost:{ui_port}")
                codec_server = stack.enter_context(CodecServer(codec, allow_origin=ui_origins))
                codec_endpoint = codec_server.url
                server = DevServer(
                    temporal_dir or settings.data_dir / "temporal",
                    port=port,
                    ui_port=ui_port,
                    namespace=settings.temporal_namespace,
                    codec_endpoint=codec_endpoint,
                )
                stack.enter_context(server)
                address, ui_url = server.address, server.ui_url
                temporal_started = True
            settings = replace(settings, temporal_address=address)
            # load_codec(settings) in this process keeps the embedded key default for it.
            stack.enter_context(embedded_address(address))
        emulators: list[Emulated] = []
        for entry in PROVIDER_ENTRIES:
            if settings.api_base(entry.name) is not None:
                continue  # an explicit base, or the real provider: nothing to stand in for
            variable = entry.real_credentials(settings) if entry.real_credentials else None
            if variable:
                log.warning(
                    "%s is set but %s is not: %s exports go to the LOCAL %s emulator; set "
                    "%s=%s for the real %s",
                    variable,
                    entry.api_base_env,
                    entry.label,
                    entry.label,
                    entry.api_base_env,
                    entry.real_url,
                    entry.label,
                )
            port = (ports or {}).get(entry.name, entry.emulator_port)
            emulated = _emulate(
                stack,
                entry.name,
                entry.label,
                0 if fresh_ports else port,
                _emulator(entry.emulator),
            )
            emulators.append(emulated)
            settings = replace(settings, api_bases={**settings.api_bases, entry.name: emulated.url})
        for market in MARKETPLACE_ENTRIES:
            if settings.marketplace_endpoint(market.name) is not None:
                continue  # an explicit endpoint, or the real marketplace
            emulated = _emulate(
                stack,
                market.name,
                market.label,
                0 if fresh_ports else (ports or {}).get(market.name, market.emulator_port),
                _emulator(market.emulator),
            )
            emulators.append(emulated)
            endpoints = {**settings.marketplace_endpoints, market.name: emulated.url}
            settings = replace(settings, marketplace_endpoints=endpoints)
            if emulated.started and emulated.instance is not None:
                # Entra ID on the Azure emulator is served over TLS with a CA of its own
                # (azure-identity refuses an http authority): this process's Azure client
                # trusts it through the variables activities/marketplaces/azure.py reads.
                for variable, value in getattr(emulated.instance, "client_env", dict)().items():
                    if variable != market.endpoint_env:
                        os.environ.setdefault(variable, value)
        for emulated in emulators:
            if emulated.started:
                log.info(
                    "%s: LOCAL EMULATOR started at %s (it keeps its objects in memory only)",
                    emulated.label,
                    emulated.url,
                )
            else:  # not ours: we cannot vouch for what it is
                log.info(
                    "%s: using %s, already served by another process (a local emulator, "
                    "e.g. `billbridge server`'s, is expected there)",
                    emulated.label,
                    emulated.url,
                )
        yield LocalServices(
            settings=settings,
            temporal_ui_url=ui_url,
            codec=codec,
            codec_endpoint=codec_endpoint,
            temporal_started=temporal_started,
            emulators=emulators,
        )


def _emulator(path: str) -> Callable[[int], EmulatorService[Any]]:
    """Builds the emulator `path` names; imported only when one starts, so production
    configurations (every API base set) never load emulator code."""

    def make(port: int) -> EmulatorService[Any]:
        emulator: EmulatorService[Any] = load(path)(port=port)
        return emulator

    return make


def _emulate(
    stack: contextlib.ExitStack,
    connection: str,
    label: str,
    port: int,
    make: Callable[[int], EmulatorService[Any]],
) -> Emulated:
    """Start an emulator on `port` (0: a free one) unless that port is already served."""
    if port and _listening(port):
        # Another process (usually `billbridge server`) serves it; we cannot tell what it is.
        return Emulated(connection, label, f"http://127.0.0.1:{port}", started=False)
    emulator = stack.enter_context(make(port))
    return Emulated(connection, label, emulator.base_url, started=True, instance=emulator)
