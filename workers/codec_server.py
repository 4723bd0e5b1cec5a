"""The codec endpoint: lets the Temporal Web UI (or `temporal --codec-endpoint`) show payloads.

Payloads are encrypted in history (workers/codec.py), so the UI would show ciphertext. Started
with `--ui-codec-endpoint URL`, the UI sends them from the operator's browser to this endpoint:
POST `<URL>/decode` (and `/encode`) with `{"payloads": [...]}` in Temporal's proto-JSON form
(`metadata` values and `data` base64), and shows what comes back. The browser calls it cross-origin,
so it answers the CORS preflight (OPTIONS) for the configured UI origin only. With
`BILLBRIDGE_CODEC_TOKEN` set, every POST must carry `Authorization: Bearer <token>`.

It listens on 127.0.0.1 by default: whoever reaches it can decrypt payloads.

    python -m billbridge.workers.codec_server --port 8081 --allow-origin http://localhost:8080
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import json
import logging
import os
import threading
from collections.abc import Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads
from temporalio.converter import PayloadCodec

from billbridge.core.lifecycle import Service
from billbridge.workers.codec import TOKEN_ENV

__all__ = ["MAX_BODY_BYTES", "CodecServer"]

MAX_BODY_BYTES = 64 * 1024 * 1024
ALLOW_HEADERS = "content-type,x-namespace,authorization"
log = logging.getLogger("billbridge.codec_server")


class CodecServer(Service):
    """An HTTP codec endpoint in a daemon thread; stop() (or context exit) ends it."""

    def __init__(
        self,
        codec: PayloadCodec,
        host: str = "127.0.0.1",
        port: int = 0,
        allow_origin: str | Sequence[str] | None = None,
        token: str | None = None,
    ) -> None:
        """allow_origin: the Temporal UI's origin(s) (e.g. http://127.0.0.1:8233) for CORS."""
        self.codec = codec
        self.host = host
        self.port = port
        origins = [allow_origin] if isinstance(allow_origin, str) else list(allow_origin or ())
        self.allow_origins = frozenset(origin.rstrip("/") for origin in origins if origin)
        self.token = token if token is not None else (os.environ.get(TOKEN_ENV, "").strip() or None)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("CodecServer is not started")
        return f"http://{self.host}:{self.port}"

    def start(self) -> CodecServer:
        server = ThreadingHTTPServer((self.host, self.port), _handler_for(self))
        server.daemon_threads = True
        self._server = server
        self.port = int(server.server_address[1])
        self._thread = threading.Thread(
            target=server.serve_forever, name="billbridge-codec-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


def _handler_for(owner: CodecServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "billbridge-codec"
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            log.debug("%s " + format, self.address_string(), *args)

        def handle(self) -> None:
            # A UI tab closed mid-request ends that request only, without a traceback.
            try:
                super().handle()
            except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
                self.close_connection = True

        def _cors(self) -> None:
            origin = (self.headers.get("Origin") or "").rstrip("/")
            if origin in owner.allow_origins:
                self.send_header("Access-Control-Allow-Origin", origin)
                self.send_header("Access-Control-Allow-Methods", "POST, OPTIONS")
                self.send_header("Access-Control-Allow-Headers", ALLOW_HEADERS)
                self.send_header("Access-Control-Max-Age", "600")
            self.send_header("Vary", "Origin")

        def _reply(self, status: HTTPStatus, body: bytes = b"") -> None:
            self.send_response(status)
            self._cors()
            if body:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if body:
                self.wfile.write(body)

        def _error(self, status: HTTPStatus, message: str) -> None:
            self._reply(status, json.dumps({"error": message}).encode())

        def do_OPTIONS(self) -> None:
            self._reply(HTTPStatus.NO_CONTENT)

        def do_POST(self) -> None:
            path = self.path.split("?", 1)[0].rstrip("/")
            operation = path.rsplit("/", 1)[-1]
            if operation not in ("encode", "decode"):
                self.close_connection = True  # the body is left unread
                self._error(HTTPStatus.NOT_FOUND, "POST /encode or /decode")
                return
            if owner.token is not None:
                sent = self.headers.get("Authorization") or ""
                if not hmac.compare_digest(sent.encode(), f"Bearer {owner.token}".encode()):
                    self.close_connection = True
                    self._error(HTTPStatus.UNAUTHORIZED, "missing or wrong bearer token")
                    return
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if length < 0 or length > MAX_BODY_BYTES:
                self.close_connection = True
                self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "body too large or unsized")
                return
            body = self.rfile.read(length)
            try:
                payloads = json_format.Parse(body, Payloads(), ignore_unknown_fields=True)
            except (json_format.ParseError, UnicodeDecodeError) as err:
                self._error(HTTPStatus.BAD_REQUEST, f'expected {{"payloads": [...]}}: {err}')
                return
            fn = owner.codec.encode if operation == "encode" else owner.codec.decode
            try:
                result = asyncio.run(fn(list(payloads.payloads)))
            except ValueError as err:  # e.g. a payload encrypted with an unknown key
                self._error(HTTPStatus.UNPROCESSABLE_ENTITY, str(err))
                return
            except Exception:
                log.exception("codec %s failed", operation)
                self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"{operation} failed")
                return
            self._reply(
                HTTPStatus.OK, json_format.MessageToJson(Payloads(payloads=result)).encode()
            )

    return Handler


def main() -> None:
    """Serve the codec endpoint for a Temporal UI (e.g. docker-compose's temporal-ui)."""
    from billbridge.core.config import Settings
    from billbridge.workers.codec import load_codec

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument(
        "--allow-origin", help="the Temporal UI's origin, e.g. http://localhost:8080"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    codec = load_codec(Settings.from_env())
    stop = threading.Event()
    with CodecServer(codec, args.host, args.port, allow_origin=args.allow_origin) as server:
        log.info("codec endpoint %s (UI origin %s)", server.url, args.allow_origin)
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
