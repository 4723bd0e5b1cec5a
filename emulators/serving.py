"""How both emulators serve HTTP: everything but the protocol.

An emulator supplies one function, ``answer(method, target, headers, body) -> Reply``; this
module gives it a threaded keep-alive HTTP server whose open connections can be cut at once, the
request handler that reads requests and writes (or drops) replies, the start/stop lifecycle on a
daemon thread with the fault and request-log controls tests use (:class:`EmulatorService`), the
foreground loop of ``python -m`` (:func:`serve_until_signalled`), and the reply an injected
``drop`` / ``status`` fault sends (:func:`injected_reply`).
"""

from __future__ import annotations

import signal
import socket
import sys
import threading
from abc import abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any, ClassVar, Generic, Self, TypeVar

from billbridge.core.lifecycle import Service

from .faults import Fault, FaultSet
from .requestlog import RequestLog

EntryT = TypeVar("EntryT")  # what an emulator logs for one request


@dataclass
class Reply:
    """One HTTP answer, as the socket layer sends it (or drops it)."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    drop: bool = False  # close the connection without sending anything (a network failure)


# (method, request target as sent, headers with lower-cased names, body) -> the reply.
Answer = Callable[[str, str, Mapping[str, str], bytes], Reply]

# A client that goes away before its reply (a timeout, `curl -m 1`, a SIGKILLed worker) is the
# client's business: that one request ends, the server serves the next one.
CLIENT_GONE: tuple[type[OSError], ...] = (
    BrokenPipeError,
    ConnectionResetError,
    ConnectionAbortedError,
)


def retry_after_text(seconds: float) -> str:
    """A ``Retry-After`` value: whole seconds as an integer ("2", not "2.0")."""
    return str(int(seconds)) if seconds == int(seconds) else str(seconds)


def injected_reply(fault: Fault, render: Callable[[int, str | None], Reply]) -> Reply:
    """The reply to a request a ``drop`` or ``status`` fault answers instead of executing it:
    nothing at all, or ``render(status, message)`` (the emulated API's error shape) with the
    fault's ``Retry-After``."""
    if fault.kind == "drop":
        return Reply(0, drop=True)
    reply = render(fault.status, fault.message)
    if fault.retry_after is not None:
        reply.headers["Retry-After"] = retry_after_text(fault.retry_after)
    return reply


class TrackingHTTPServer(ThreadingHTTPServer):
    """A threaded HTTP server that answers every request with ``answer``.

    Open connections are tracked so stop() can cut keep-alive clients loose at once:
    ``shutdown()`` only ends the accept loop, and a handler thread would otherwise sit on an idle
    keep-alive connection until its timeout.
    """

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], answer: Answer) -> None:
        self.answer = answer
        self._conn_lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        super().__init__(address, ReplyHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conn_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._conn_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The handler swallows a vanished client itself; this catches what escapes around it
        # (socketserver's own finish/shutdown) so it is not printed as a traceback either.
        if isinstance(sys.exc_info()[1], CLIENT_GONE):
            return
        super().handle_error(request, client_address)

    def close_connections(self) -> None:
        with self._conn_lock:
            conns = list(self._connections)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class ReplyHandler(BaseHTTPRequestHandler):
    """Reads one request, hands it to the server's ``answer`` and sends (or drops) the reply."""

    protocol_version = "HTTP/1.1"  # keep-alive, as the real APIs and their SDKs use it
    # Headers and body go out in two writes; with Nagle on, the body would wait for the
    # client's delayed ACK (~40 ms per request on keep-alive connections).
    disable_nagle_algorithm = True
    server_version = "nginx"
    sys_version = ""
    timeout = 120
    server: TrackingHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        return  # quiet; each emulator keeps its own request log

    def handle(self) -> None:
        """Serve the connection's requests; a client that disconnected ends only this one."""
        try:
            super().handle()
        except CLIENT_GONE:
            self.close_connection = True

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def _dispatch(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        reply = self.server.answer(method, self.path, headers, body)
        if reply.drop:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)


class EmulatorService(Service, Generic[EntryT]):
    """Serve an emulator on ``host:port`` (port 0: any free one) from a daemon thread, with
    the controls every emulator gives tests: injected faults and the log of requests.

    start() is idempotent and returns the emulator, stop() also cuts open keep-alive
    connections; ``with Emulator(...) as emu:`` does both. Subclasses build the server, and
    hand ``_faults`` and ``_log`` to their request pipeline.
    """

    thread_name: ClassVar[str] = "emulator"  # the serving thread is named "<this>:<port>"

    def __init__(self, host: str, port: int, log: RequestLog[EntryT]) -> None:
        self.host = host
        self._requested_port = port
        self._faults = FaultSet()
        self._log = log
        self._server: TrackingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @abstractmethod
    def _make_server(self, address: tuple[str, int]) -> TrackingHTTPServer:
        """A server bound to ``address`` that answers with this emulator's protocol."""

    def start(self) -> Self:
        if self._server is not None:
            return self
        server = self._make_server((self.host, self._requested_port))
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},  # shutdown() waits up to one poll interval
            name=f"{self.thread_name}:{server.server_address[1]}",
            daemon=True,
        )
        thread.start()
        self._server, self._thread = server, thread
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        server.shutdown()
        server.close_connections()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = self._thread = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not running; call start() first")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        host = self.host if ":" not in self.host else f"[{self.host}]"
        return f"http://{host}:{self.port}"

    # -- faults and the request log ----------------------------------------------------------

    def add_fault(self, fault: Fault) -> None:
        self._faults.add(fault)

    def clear_faults(self) -> None:
        self._faults.clear()

    def faults(self) -> list[dict[str, Any]]:
        """Armed faults with their ``remaining`` counts."""
        return self._faults.armed()

    def requests(self) -> list[EntryT]:
        return self._log.snapshot()

    def clear_requests(self) -> None:
        self._log.clear()


def serve_until_signalled(service: EmulatorService[Any]) -> int:
    """Run ``service`` in the foreground (``python -m``): start it, print its base URL (what a
    script waits for), stop it on SIGINT or SIGTERM. Returns the exit status."""
    service.start()
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(service.base_url, flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        service.stop()
    return 0
