"""`billbridge server` survives any client, and says exactly what it runs.

The server runs as a user runs it (a separate process through the CLI), on the test session's
Temporal server (TEMPORAL_ADDRESS), with emulators on free ports.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from billbridge.core.config import Settings
from billbridge.starter.cli import server_report
from billbridge.starter.local_services import local_services
from billbridge.workers import dev_server
from billbridge.workers.dev_server import DevServer, temporal_cli_path
from billbridge.workflows.search_attributes import SEARCH_ATTRIBUTE_TYPES
from conftest import BILLBRIDGE_CLI, process_env

AUTH = {"Authorization": "Bearer sk_test_billbridge_emulator"}


class Server:
    """A `billbridge server` process and the report lines it printed at start."""

    def __init__(self, settings: Settings, *args: str, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [*BILLBRIDGE_CLI, "server", *args],
            env={**process_env(settings), **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        assert self.process.stdout is not None
        # The report ends with the QuickBooks line (a hint may follow it; read it too).
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            if line.startswith("QuickBooks"):
                break
        assert self.lines and self.lines[-1].startswith("QuickBooks"), self.stop()

    def line(self, prefix: str) -> str:
        return next(line for line in self.lines if line.startswith(prefix))

    def stop(self) -> str:
        """SIGTERM; the exit status must be 0. Returns its stderr."""
        if self.process.poll() is None:
            self.process.terminate()
        _, stderr = self.process.communicate(timeout=30)
        assert self.process.returncode == 0, stderr
        return stderr


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        if server.process.poll() is None:
            server.process.kill()
            server.process.communicate(timeout=10)


def requests_seen(base: str, path: str) -> int:
    log = httpx.get(f"{base}/_emulator/requests").json()
    return sum(1 for entry in log if entry["path"] == path and entry["fault"] == "delay")


def wait_until_answered(base: str, path: str, count: int) -> None:
    """Until the emulator has answered `count` delayed requests (it logs each just before
    writing the reply to the client that is gone)."""
    for _ in range(300):
        if requests_seen(base, path) >= count:
            return
        httpx.get(f"{base}/_emulator/health")  # a short wait that is itself a request
    raise AssertionError(f"{path} was not answered {count} time(s)")


def test_server_survives_clients_that_hang_up(
    settings: Settings, servers: list[Server], tmp_path: Path
) -> None:
    server = Server(
        settings,
        "--stripe-port",
        "0",
        "--quickbooks-port",
        "0",
        env={"STRIPE_API_BASE": "", "BILLBRIDGE_DATA_DIR": str(tmp_path)},
    )
    servers.append(server)
    stripe = server.line("Stripe emulator: ").split()[2]
    customers = f"{stripe}/v1/customers"
    delay = {"kind": "delay", "seconds": 1, "method": "GET", "path_prefix": "/v1/customers"}

    # 1. A client that times out before the reply (`curl -m 1` on a 3 s delay, scaled down).
    httpx.post(f"{stripe}/_emulator/faults", json=delay).raise_for_status()
    with pytest.raises(httpx.TimeoutException):
        httpx.get(customers, headers=AUTH, timeout=0.2)
    wait_until_answered(stripe, "/v1/customers", 1)

    # 2. A client process killed (SIGKILL) while it waits, as a crashed worker is.
    httpx.post(f"{stripe}/_emulator/faults", json=delay).raise_for_status()
    waiting = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import httpx; httpx.get({customers!r}, headers={AUTH!r}, timeout=60)",
        ]
    )
    try:
        wait_until_requested(stripe, "/v1/customers", 2)
    finally:
        waiting.kill()
        waiting.wait(timeout=10)
    wait_until_answered(stripe, "/v1/customers", 2)

    # Still serving, every part of it: the emulator answers, the process is alive.
    for _ in range(5):
        assert httpx.get(customers, headers=AUTH).status_code == 200
    quickbooks = server.line("QuickBooks emulator: ").split()[2]
    assert httpx.get(f"{quickbooks}/v3/company/1/companyinfo/1").status_code in (401, 403)
    assert server.process.poll() is None
    stderr = server.stop()
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr


def wait_until_requested(base: str, path: str, count: int) -> None:
    """Until `count` requests to `path` reached the emulator (logged or still in their delay):
    the emulator logs a request when it answers, so this waits on its armed faults instead."""
    for _ in range(300):
        armed = httpx.get(f"{base}/_emulator/faults").json()
        if not any(f["path_prefix"] == path for f in armed):  # the delay was taken
            return
        httpx.get(f"{base}/_emulator/health")
    raise AssertionError(f"{path} was not requested {count} time(s)")


def test_server_reports_what_it_started_and_what_it_did_not(
    settings: Settings, servers: list[Server], tmp_path: Path
) -> None:
    # The Stripe port is already served (by this test); QuickBooks points at a base URL.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = Server(
            settings,
            "--stripe-port",
            str(port),
            env={
                "STRIPE_API_BASE": "",
                "QUICKBOOKS_API_BASE": "https://sandbox-quickbooks.api.intuit.com",
                "BILLBRIDGE_DATA_DIR": str(tmp_path),
            },
        )
        servers.append(server)
        server.stop()
    report = "\n".join(server.lines)
    assert f"Temporal: {settings.temporal_address} (TEMPORAL_ADDRESS; not started here)" in report
    assert (
        f"Stripe: http://127.0.0.1:{port} is already served by another process; no emulator "
        "started here" in report
    )
    assert (
        "QuickBooks: https://sandbox-quickbooks.api.intuit.com (QUICKBOOKS_API_BASE is set; "
        "no emulator started)" in report
    )
    assert "emulator: http" not in report  # no emulator claimed


def test_server_report_names_the_codec_endpoint_it_started(tmp_path: Path) -> None:
    # The embedded Temporal server (on free ports) and its UI's codec endpoint, for real.
    configured = Settings.from_env({"BILLBRIDGE_DATA_DIR": str(tmp_path)}, emulators=True)
    with local_services(configured, fresh_ports=True) as services:
        report = server_report(configured, services)
        assert services.codec_endpoint is not None
        assert report[0].startswith(f"Temporal: {services.settings.temporal_address} (started")
        assert report[0].endswith(f"codec endpoint: {services.codec_endpoint}")
        # It is the codec endpoint: it decodes (an empty batch) for the UI.
        decoded = httpx.post(f"{services.codec_endpoint}/decode", json={"payloads": []})
        assert decoded.status_code == 200
        stripe = next(e for e in services.emulators if e.connection == "stripe_invoice")
        assert f"Stripe emulator: {stripe.url} (started here)" in report


def test_the_embedded_server_registers_attributes_added_since_its_file_was_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`start-dev --search-attribute` registers only in a new SQLite file; a file from an
    earlier billbridge lacks the attributes added since (ConnectionId), which the dev server
    must add at start, or held workflows would fail their upsert."""
    older = {"InvoiceId": "Keyword"}
    monkeypatch.setattr(dev_server, "SEARCH_ATTRIBUTE_TYPES", older)
    with DevServer(tmp_path, ui=False):
        pass
    monkeypatch.setattr(dev_server, "SEARCH_ATTRIBUTE_TYPES", SEARCH_ATTRIBUTE_TYPES)
    with DevServer(tmp_path, ui=False) as server:
        command = [temporal_cli_path(), "operator", "search-attribute", "list"]
        listed = subprocess.run(
            [*command, "--address", server.address],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
    assert set(SEARCH_ATTRIBUTE_TYPES) <= set(listed)
