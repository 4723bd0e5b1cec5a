"""Shared rate and pause: worker processes sharing a connection's request rate, and the backlog
a paused connection releases on resume.

One Temporal dev server; each measurement gets its own Stripe emulator, SQLite store file and
task queue, and its workers run as separate processes (`python -m
billbridge.workers.export_worker`, the worker `billbridge worker` runs, 16 activity threads each)
sharing that store file, where every Stripe request takes its turn at the connection's gate
(activities/store/gates.py): one rate for all of them, 95 % of Stripe's documented sandbox limit
of 25 requests/s (https://docs.stripe.com/rate-limits), i.e. 23.75/s. The invoices (four lines
and a credit, bench/provider_limits.py's sample) are received before the clock starts; what is
timed is their export.

1. share: the share of the rate limit used during a long export, with one and with two worker
   processes. The emulator refuses requests beyond 25/s (a token bucket, burst 25) and answers
   after a fixed latency (`--latency`, default 200 ms, as bench/limits_emulated.py explains).
   `--invoices` (default 250, some 1,500 requests at about 6 an invoice: over 60 s at 25/s)
   are exported at once. Printed: requests the emulator accepted per second of wall time,
   divided by 25 (whole batch, and the middle 80 % of the wall time: "steady"), and the requests
   it refused (429) as a share of all. At most 95 % can be used (the connection's rate); the
   target is at least 90 % used and at most 1 % refused, with either number of workers: a
   second worker must neither double the rate (refusals) nor lose any of it.
2. drain: the time from resume until a paused connection's backlog is exported, against the
   least the rate allows. With one worker process running, the Stripe connection is paused
   (`switch_connection`, what `billbridge provider pause` sends) until the store's gate says so;
   `--held` exports (default 80) are started and hold ("paused") until the visibility query of
   held exports (activities/connection_control.held_query) lists them all; then the connection is
   resumed, and the clock runs from the resume signal until every export has finished. The
   minimum is the requests the emulator accepted during the drain divided by the rate: by the
   documented 25/s and by the connection's 23.75/s (the one the gate keeps to: the fair
   comparison). Printed: the drain time, both minimums, the ratio to each, the time until the
   first request reached Stripe (the release lists the held workflows and wakes them oldest
   first, 10 a second) and the rate of the drain's requests at Stripe.
3. scale: throughput with two worker processes against one, on the same server: invoices/s
   exporting `--invoices` invoices against an emulator without a rate limit and without latency,
   the connection's rate set to 10,000/s (the most `requests_per_second` takes) so the gate
   orders requests but holds none back. Each number of workers exports half the invoices twice,
   in the order 1, 2, 2, 1 workers, so a steady drift of the machine's load (other work on a
   shared machine) cancels out of the ratio. Throughput here is what the machine's CPU allows:
   on a 2-core machine the dev server, the emulator, the bench and the workers share both cores.

    .venv/bin/python bench/shared_rate.py [--invoices 250] [--held 80] [--latency 0.2]
        [--only share|drain|scale] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowHandle

sys.path.insert(0, str(Path(__file__).parent))
from limits_emulated import STRIPE_PER_SECOND, ProviderUnderTest, stripe
from provider_limits import (
    ITEMS,
    SLOW_TASK,
    STEADY,
    TARGET_REJECTED,
    TARGET_SHARE,
    rate_shares,
    sample,
)

from billbridge.activities.connection_control import RELEASE_PER_SECOND, held_query
from billbridge.activities.providers.gate import PACED_SHARE
from billbridge.activities.store import Store
from billbridge.core.config import Settings
from billbridge.core.connection_control import workflow_id
from billbridge.core.messages import ExportResult, ExportStatus
from billbridge.starter.commands.provider import switch_and_wait, switch_connection
from billbridge.starter.door import start_export, submit_invoice
from billbridge.workers.client import connect
from billbridge.workers.codec import generate_key, load_codec
from billbridge.workers.dev_server import DevServer
from billbridge.workers.export_worker import MAX_CONCURRENT_ACTIVITIES

CONNECTION = "stripe_invoice"  # the Stripe connection's default id: the provider's name
CONNECTION_RATE = STRIPE_PER_SECOND * PACED_SHARE  # what the gate keeps every worker to
UNLIMITED_RATE = 10_000.0  # the largest `requests_per_second` a connection takes
DEFAULT_INVOICES = 250
DEFAULT_HELD = 80
DEFAULT_LATENCY = 0.2
READY = "worker polling"  # the line a worker logs once it polls its task queue
WORKER_START_SECONDS = 90.0
HELD_WAIT_SECONDS = 120.0
MEASUREMENTS = ("share", "drain", "scale")
SCALE_ORDER = (1, 2, 2, 1)  # worker processes per scale run


# -- the arithmetic (pure) -------------------------------------------------------------------


@dataclass(frozen=True)
class Sent:
    """A request the emulator logged: when it arrived and whether its limiter refused it."""

    at: float
    refused: bool


def share_figures(
    sent: Sequence[Sent], started: float, ended: float, per_second: float
) -> dict[str, Any]:
    """The share of `per_second` the accepted requests used between `started` and `ended` (the
    whole batch, and its middle STEADY), and the refused requests' share of all."""
    accepted = [request.at for request in sent if not request.refused]
    share, steady = rate_shares(accepted, started, ended, per_second)
    refused = len(sent) - len(accepted)
    refused_share = refused / len(sent) if sent else 0.0
    return {
        "requests": len(sent),
        "accepted_per_s": round(len(accepted) / (ended - started), 2),
        "share_of_limit": round(share, 3),
        "steady_share_of_limit": round(steady, 3),
        "refused": refused,
        "refused_share": round(refused_share, 4),
        "meets_target": share >= TARGET_SHARE and refused_share <= TARGET_REJECTED,
    }


def drain_figures(
    drain_seconds: float, accepted: int, rates: dict[str, float]
) -> dict[str, dict[str, float]]:
    """Per named rate: the least time `accepted` requests take at it, and the drain's ratio."""
    figures = {}
    for name, per_second in rates.items():
        minimum = accepted / per_second
        figures[name] = {
            "per_second": per_second,
            "minimum_s": round(minimum, 2),
            "ratio": round(drain_seconds / minimum, 3) if minimum else 0.0,
        }
    return figures


def scale_figures(runs: Sequence[dict[str, Any]], workers: int) -> dict[str, Any]:
    """The runs with `workers` worker processes taken together: invoices and requests per
    second of their summed wall time, and each run's invoices/s."""
    mine = [r for r in runs if r["workers"] == workers]
    wall = sum(r["wall_s"] for r in mine)
    return {
        "invoices": sum(r["invoices"] for r in mine),
        "exported": sum(r["exported"] for r in mine),
        "invoices_per_s": round(sum(r["exported"] for r in mine) / wall, 2),
        "requests_per_s": round(sum(r["requests"] for r in mine) / wall, 2),
        "runs_invoices_per_s": [round(r["exported"] / r["wall_s"], 2) for r in mine],
        "wall_s": round(wall, 1),
        "slow_workflow_tasks": sum(r["slow_workflow_tasks"] for r in mine),
    }


# -- worker processes ------------------------------------------------------------------------


def worker_env(settings: Settings) -> dict[str, str]:
    """The environment a worker process needs to use `settings`: this process's own (with this
    run's codec key), and the variables that name this run's store, server and emulator."""
    inherited = {k: v for k, v in os.environ.items() if k != "BILLBRIDGE_CODEC_KEY_FILE"}
    return {**inherited, **settings.to_env()}


@dataclass
class WorkerProcesses:
    processes: list[subprocess.Popen[bytes]]
    logs: list[Path]

    def slow_workflow_tasks(self) -> int:
        """The Temporal core's warnings of workflow tasks held open over 5 s, in every log."""
        return sum(log.read_text(errors="replace").count(SLOW_TASK) for log in self.logs)


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "billbridge.workers.export_worker"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


@asynccontextmanager
async def worker_processes(
    count: int, settings: Settings, logs: Path, name: str
) -> AsyncIterator[WorkerProcesses]:
    """`count` export workers as processes, each polling its task queue before this yields."""
    env = worker_env(settings)
    workers = WorkerProcesses([], [logs / f"{name}-worker-{n}.log" for n in range(count)])
    try:
        for log in workers.logs:
            workers.processes.append(start_worker(env, log))
        deadline = time.monotonic() + WORKER_START_SECONDS
        for process, log in zip(workers.processes, workers.logs, strict=True):
            while READY not in log.read_text(errors="replace"):
                if process.poll() is not None or time.monotonic() > deadline:
                    tail = log.read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"worker {log.name} did not start:\n{tail}")
                await asyncio.sleep(0.2)
        yield workers
    finally:
        for process in workers.processes:
            if process.poll() is None:
                process.terminate()
        for process in workers.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# -- one measurement's emulator, store and client --------------------------------------------


@dataclass
class Bench:
    provider: ProviderUnderTest
    settings: Settings
    store: Store
    client: Client
    logs: Path

    def sent_since(self, seen_before: int) -> list[Sent]:
        return [
            Sent(entry.at, self.provider.refused(entry))
            for entry in self.provider.limited_requests()[seen_before:]
        ]

    def receive(self, count: int) -> list[str]:
        """Store `count` sample invoices (the door's work, before any clock starts)."""
        run = uuid.uuid4().hex[:6]
        return [
            submit_invoice(self.store, sample(n, run, self.provider.customer_id)).id
            for n in range(count)
        ]


@asynccontextmanager
async def bench(
    server: DevServer,
    tmp: Path,
    name: str,
    *,
    latency: float,
    per_second: float | None,
    connection_rate: float | None = None,
) -> AsyncIterator[Bench]:
    """A seeded Stripe emulator (limited to `per_second`, None: not at all), its own store file
    and task queue; `connection_rate`: the connection's `requests_per_second` setting."""
    with stripe(latency, per_second) as provider:
        settings = provider.configure(
            replace(
                Settings.from_env(),
                temporal_address=server.address,
                data_dir=tmp,
                database_url=f"sqlite:///{tmp}/{name}.db",
                task_queue=f"bench-shared-{name}-{uuid.uuid4().hex[:8]}",
            )
        )
        store = Store(settings.database_url)
        try:
            if connection_rate is not None:
                store.upsert_connection(
                    CONNECTION, CONNECTION, settings={"requests_per_second": connection_rate}
                )
            provider.seed(settings, store, ITEMS)
            client = await connect(server.address, codec=load_codec(settings))
            yield Bench(provider, settings, store, client, tmp)
        finally:
            store.close()


async def finished(handles: Sequence[WorkflowHandle[Any, ExportResult]]) -> int:
    """Wait for every export to end; how many were exported."""
    results = await asyncio.gather(*(h.result() for h in handles), return_exceptions=True)
    return sum(isinstance(r, ExportResult) and r.status == ExportStatus.EXPORTED for r in results)


async def export_batch(b: Bench, invoices: int, workers: int) -> dict[str, Any]:
    """Export `invoices` at once with `workers` worker processes; the wall time and requests."""
    invoice_ids = b.receive(invoices)
    name = b.settings.task_queue
    async with worker_processes(workers, b.settings, b.logs, name) as processes:
        seen_before = len(b.provider.limited_requests())
        started = time.time()
        handles = await asyncio.gather(
            *(start_export(b.client, i, b.settings.task_queue) for i in invoice_ids)
        )
        exported = await finished(handles)
        ended = time.time()
    return {
        "workers": workers,
        "invoices": invoices,
        "exported": exported,
        "started": started,
        "ended": ended,
        "sent": b.sent_since(seen_before),
        "slow_workflow_tasks": processes.slow_workflow_tasks(),
    }


# -- the three measurements ------------------------------------------------------------------


async def measure_share(
    server: DevServer, tmp: Path, workers: int, invoices: int, latency: float
) -> dict[str, Any]:
    async with bench(
        server, tmp, f"share{workers}", latency=latency, per_second=STRIPE_PER_SECOND
    ) as b:
        batch = await export_batch(b, invoices, workers)
    started, ended, sent = batch.pop("started"), batch.pop("ended"), batch.pop("sent")
    figures = share_figures(sent, started, ended, STRIPE_PER_SECOND)
    figures["meets_target"] = figures["meets_target"] and batch["exported"] == invoices
    return {
        **batch,
        **figures,
        "invoices_per_s": round(batch["exported"] / (ended - started), 2),
        "requests_per_invoice": round(len(sent) / invoices, 2),
        "wall_s": round(ended - started, 1),
        "latency_s": latency,
    }


async def until(check: Callable[[], Awaitable[bool]], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {within:g} s")
        await asyncio.sleep(0.2)


async def measure_drain(server: DevServer, tmp: Path, held: int, latency: float) -> dict[str, Any]:
    async with (
        bench(server, tmp, "drain", latency=latency, per_second=STRIPE_PER_SECOND) as b,
        worker_processes(1, b.settings, b.logs, "drain") as processes,
    ):
        client, store, queue = b.client, b.store, b.settings.task_queue

        async def all_held() -> bool:
            return (await client.count_workflows(held_query(CONNECTION))).count == held

        if not await switch_and_wait(
            client, queue, store, CONNECTION, CONNECTION, pause=True, reason="bench: backlog"
        ):
            raise RuntimeError("the pause applied: not within the wait")
        invoice_ids = b.receive(held)
        handles = [await start_export(client, i, queue) for i in invoice_ids]
        await until(all_held, HELD_WAIT_SECONDS, f"{held} exports listed as held")
        seen_before = len(b.provider.limited_requests())
        resumed = time.time()
        await switch_connection(client, queue, store, CONNECTION, CONNECTION, pause=False)
        exported = await finished(handles)
        drained = time.time()
        sent = b.sent_since(seen_before)
        await client.get_workflow_handle(workflow_id(CONNECTION)).terminate("bench over")
    accepted = [request.at for request in sent if not request.refused]
    seconds = drained - resumed
    first = min(accepted) - resumed if accepted else 0.0
    spread = max(accepted) - min(accepted) if len(accepted) > 1 else 0.0
    return {
        "workers": 1,
        "held": held,
        "exported": exported,
        "requests": len(sent),
        "accepted": len(accepted),
        "refused": len(sent) - len(accepted),
        "drain_s": round(seconds, 2),
        "minimums": drain_figures(
            seconds,
            len(accepted),
            {"documented": STRIPE_PER_SECOND, "connection": CONNECTION_RATE},
        ),
        "first_request_after_s": round(first, 2),
        "accepted_per_s_at_stripe": round((len(accepted) - 1) / spread, 2) if spread else 0.0,
        "release_per_s": RELEASE_PER_SECOND,
        "latency_s": latency,
        "slow_workflow_tasks": processes.slow_workflow_tasks(),
    }


async def measure_scale(server: DevServer, tmp: Path, invoices: int) -> dict[str, Any]:
    """Each number of workers exports half the invoices twice, in the order SCALE_ORDER: the
    machine's load drifts (other work, the server's own), and the order cancels a steady drift
    from the ratio."""
    half = max(invoices // 2, 1)
    runs = []
    for number, workers in enumerate(SCALE_ORDER):
        async with bench(
            server,
            tmp,
            f"scale{number}-{workers}w",
            latency=0.0,
            per_second=None,
            connection_rate=UNLIMITED_RATE,
        ) as b:
            batch = await export_batch(b, half, workers)
        runs.append(
            {
                "workers": workers,
                "invoices": half,
                "exported": batch["exported"],
                "requests": len(batch["sent"]),
                "wall_s": batch["ended"] - batch["started"],
                "slow_workflow_tasks": batch["slow_workflow_tasks"],
            }
        )
    by_workers = {workers: scale_figures(runs, workers) for workers in sorted(set(SCALE_ORDER))}
    one, two = by_workers[1], by_workers[2]
    return {
        "order": list(SCALE_ORDER),
        "one_worker": one,
        "two_workers": two,
        "ratio": round(two["invoices_per_s"] / one["invoices_per_s"], 3),
        "cpu_count": os.cpu_count(),
    }


async def run(only: str | None, invoices: int, held: int, latency: float) -> dict[str, Any]:
    # A key for this run only, handed to every worker process: payloads encrypted, as in
    # production.
    os.environ["BILLBRIDGE_CODEC_KEY"] = generate_key()
    os.environ.pop("BILLBRIDGE_CODEC_KEY_FILE", None)
    figures: dict[str, Any] = {}
    with (
        tempfile.TemporaryDirectory() as tmp,
        DevServer(Path(tmp) / "temporal", ui=False) as server,
    ):
        folder = Path(tmp)
        if only in (None, "share"):
            figures["share"] = [
                await measure_share(server, folder, workers, invoices, latency)
                for workers in (1, 2)
            ]
        if only in (None, "drain"):
            figures["drain"] = await measure_drain(server, folder, held, latency)
        if only in (None, "scale"):
            figures["scale"] = await measure_scale(server, folder, invoices)
    return figures


# -- output ----------------------------------------------------------------------------------


def report(figures: dict[str, Any]) -> str:
    lines: list[str] = []
    if "share" in figures:
        lines.append(
            f"1. share of Stripe's rate limit ({STRIPE_PER_SECOND:g} req/s, sandbox) used; the "
            f"connection keeps every worker together to {CONNECTION_RATE:g}/s "
            f"({PACED_SHARE:.0%})"
        )
        header = ("workers", "invoices", "inv/s", "req/inv", "accepted/s", "used", "steady")
        header += ("refused", "wall s", "target")
        widths = (7, 9, 6, 7, 10, 6, 6, 12, 6, 6)
        lines.append("  ".join(f"{t:<{w}}" for t, w in zip(header, widths, strict=True)))
        for row in figures["share"]:
            cells = (
                row["workers"],
                f"{row['exported']}/{row['invoices']}",
                row["invoices_per_s"],
                row["requests_per_invoice"],
                row["accepted_per_s"],
                f"{row['share_of_limit']:.1%}",
                f"{row['steady_share_of_limit']:.1%}",
                f"{row['refused']} ({row['refused_share']:.2%})",
                row["wall_s"],
                "met" if row["meets_target"] else "MISSED",
            )
            lines.append("  ".join(f"{c!s:<{w}}" for c, w in zip(cells, widths, strict=True)))
        lines.append(
            f"   target: >= {TARGET_SHARE:.0%} used over the whole batch, <= "
            f"{TARGET_REJECTED:.0%} refused; steady: the middle {STEADY:.0%} of the wall time; "
            f"emulated latency {figures['share'][0]['latency_s']} s; workflow tasks held over "
            f"5 s: {', '.join(str(r['slow_workflow_tasks']) for r in figures['share'])}"
        )
    if "drain" in figures:
        d = figures["drain"]
        documented, connection = d["minimums"]["documented"], d["minimums"]["connection"]
        lines.append(
            f"2. backlog drain after resume: {d['exported']}/{d['held']} held exports finished "
            f"{d['drain_s']} s after the resume ({d['accepted']} requests accepted, "
            f"{d['refused']} refused; one worker process)"
        )
        lines.append(
            f"   least possible: {connection['minimum_s']} s at the connection's "
            f"{connection['per_second']:g}/s (ratio {connection['ratio']}), "
            f"{documented['minimum_s']} s at the documented {documented['per_second']:g}/s "
            f"(ratio {documented['ratio']})"
        )
        lines.append(
            f"   first request at Stripe {d['first_request_after_s']} s after the resume; "
            f"{d['accepted_per_s_at_stripe']} req/s from the first to the last; held exports "
            f"woken {d['release_per_s']:g}/s, oldest first"
        )
    if "scale" in figures:
        s = figures["scale"]
        one, two = s["one_worker"], s["two_workers"]
        lines.append(
            f"3. throughput, no rate limit, no latency: {one['invoices_per_s']} inv/s with one "
            f"worker process, {two['invoices_per_s']} with two: ratio {s['ratio']}"
        )
        lines.append(
            f"   {one['invoices']} invoices each ({one['exported']} and {two['exported']} "
            f"exported), in runs of half as many in the order "
            f"{'-'.join(str(w) for w in s['order'])} workers (runs: "
            f"{' '.join(map(str, one['runs_invoices_per_s']))} and "
            f"{' '.join(map(str, two['runs_invoices_per_s']))} inv/s); "
            f"{one['requests_per_s']} and {two['requests_per_s']} req/s"
        )
        lines.append(
            f"   this machine has {s['cpu_count']} cores, shared by the dev server, the "
            "emulator, this bench and the workers: a second worker process adds activity "
            f"threads ({MAX_CONCURRENT_ACTIVITIES} each), not cores"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--invoices",
        type=int,
        default=DEFAULT_INVOICES,
        help="invoices per share and scale run (default: over 60 s at Stripe's limit)",
    )
    parser.add_argument("--held", type=int, default=DEFAULT_HELD, help="exports held, drain")
    parser.add_argument(
        "--latency",
        type=float,
        default=DEFAULT_LATENCY,
        help="seconds the rate-limited emulator takes to answer (share, drain)",
    )
    parser.add_argument("--only", choices=MEASUREMENTS)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()
    figures = asyncio.run(run(args.only, args.invoices, args.held, args.latency))
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print(report(figures))
        print(f"whole bench: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
