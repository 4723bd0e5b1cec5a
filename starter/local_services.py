"""The embedded defaults: what runs when TEMPORAL_ADDRESS or STRIPE_API_BASE is unset.

- Temporal: `temporal server start-dev` (SQLite file under the data dir, Web UI) on 127.0.0.1:7233,
  unless something already listens there (another billbridge process started it).
  Its UI decodes the (encrypted) payloads through a codec endpoint (workers/codec_server.py)
  started here with the embedded key (`<data dir>/codec.key` unless BILLBRIDGE_CODEC_KEY[_FILE]).
- Stripe: the local emulator on 127.0.0.1:12111, likewise.
- QuickBooks Online: the local emulator (OAuth and Accounting API) on 127.0.0.1:12112, unless
  QUICKBOOKS_API_BASE is set; `billbridge connections authorize quickbooks` authorizes against it.
Pointing the variables at a real cluster or real provider test modes starts none of this.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Iterator
from dataclasses import dataclass, replace

from billbridge.activities.providers import quickbooks
from billbridge.activities.providers.stripe_invoice import LOCAL_EMULATOR_PORT
from billbridge.core.config import Settings
from billbridge.workers.codec import EncryptionCodec, embedded_address, load_codec
from billbridge.workers.codec_server import CodecServer
from billbridge.workers.dev_server import DevServer, free_port

EMBEDDED_TEMPORAL_PORT = 7233
EMBEDDED_UI_PORT = 8233


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.3)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class LocalServices:
    settings: Settings  # with temporal_address and stripe_api_base filled in
    temporal_ui_url: str | None
    codec: EncryptionCodec | None = None
    """The embedded server's payload codec; None when TEMPORAL_ADDRESS is set."""
    codec_endpoint: str | None = None
    """The codec endpoint the UI uses, when this process started the server."""


@contextlib.contextmanager
def local_services(settings: Settings, *, fresh_ports: bool = False) -> Iterator[LocalServices]:
    """Start what the settings leave unset; stop it on exit.

    fresh_ports: use free ports instead of the fixed defaults (a self-contained demo or test that
    must not meet another billbridge's server).
    """
    with contextlib.ExitStack() as stack:
        ui_url: str | None = None
        codec: EncryptionCodec | None = None
        codec_endpoint: str | None = None
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
                    settings.data_dir / "temporal",
                    port=port,
                    ui_port=ui_port,
                    namespace=settings.temporal_namespace,
                    codec_endpoint=codec_endpoint,
                )
                stack.enter_context(server)
                address, ui_url = server.address, server.ui_url
            settings = replace(settings, temporal_address=address)
            # load_codec(settings) in this process keeps the embedded key default for it.
            stack.enter_context(embedded_address(address))
        if settings.stripe_api_base is None:
            if settings.stripe_api_key != Settings.from_env({}).stripe_api_key:
                logging.getLogger("billbridge").warning(
                    "STRIPE_API_KEY is set but STRIPE_API_BASE is not: exports go to the LOCAL "
                    "Stripe emulator; set STRIPE_API_BASE=https://api.stripe.com for real Stripe"
                )
            # Imported here: production configurations point at Stripe and never load it.
            from billbridge.emulators.stripe import StripeEmulator

            port = free_port() if fresh_ports else LOCAL_EMULATOR_PORT
            if fresh_ports or not _listening(port):
                emulator = StripeEmulator(port=port)
                stack.enter_context(emulator)
            settings = replace(settings, stripe_api_base=f"http://127.0.0.1:{port}")
        if settings.quickbooks_api_base is None:
            from billbridge.emulators.quickbooks import QuickBooksEmulator

            port = free_port() if fresh_ports else quickbooks.LOCAL_EMULATOR_PORT
            if fresh_ports or not _listening(port):
                stack.enter_context(QuickBooksEmulator(port=port))
            settings = replace(settings, quickbooks_api_base=f"http://127.0.0.1:{port}")
        yield LocalServices(
            settings=settings, temporal_ui_url=ui_url, codec=codec, codec_endpoint=codec_endpoint
        )
