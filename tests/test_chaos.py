"""The chaos run, short (tests/chaos_harness.py; `make chaos` runs the full one).

Forty invoices over the four invoicing providers and metering for one customer on each of the
three marketplaces, while the worker is SIGKILLed and started again, the emulators inject 5xx,
429 bursts, slow answers and dropped connections, and QuickBooks is paused and resumed, the dev
server restarting on its SQLite file meanwhile: no request may reach QuickBooks while paused.
The reconciliation of what every emulator holds must find nothing duplicated, missing or
different.
"""

from __future__ import annotations

from pathlib import Path

from chaos_harness import ChaosPlan, run_chaos

SHORT = ChaosPlan(invoices=40, metered_per_marketplace=1, kills=1, chaos_window=30.0)


async def test_exactly_once_under_kills_a_server_restart_faults_and_a_pause(
    tmp_path: Path,
) -> None:
    report = await run_chaos(SHORT, tmp_path, say=lambda line: None)
    summary = "\n".join(report.lines())
    assert report.passed, summary
    # The run did what it says: every kind of trouble happened.
    happened = " ".join(report.events)
    for what in ("kill", "restart", "quickbooks paused", "quickbooks resumed"):
        assert what in happened, summary
    for fault in ("5xx", "429", "slow", "drop", "drop_after"):
        assert f"{fault} x" in happened, summary
    # The server restarted while QuickBooks was paused, and the pause held through it.
    order = [e.split(" ", 1)[1] for e in report.events]
    paused, restart = order.index("quickbooks paused"), order.index("restart")
    assert paused < restart < order.index("quickbooks resumed"), summary
    assert report.leaks == [], summary
    assert sum(r.expected for r in report.providers.values()) == SHORT.invoices
    assert all(r.exported_once == r.expected for r in report.providers.values()), summary
    assert all(m.hours_once == m.hours_expected > 0 for m in report.marketplaces.values())
