"""bench/shared_rate.py's arithmetic: the share of a rate used, the drain's minimum, the scaling
runs taken together, and the environment its worker processes get."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "bench"))
from shared_rate import Sent, drain_figures, scale_figures, share_figures, worker_env

from billbridge.core.config import Settings


def test_the_share_counts_accepted_requests_against_the_limit_and_refused_ones_apart() -> None:
    # 20 accepted a second for 10 s, and 2 refused: 80 % of 25/s, evenly, 1 % refused.
    accepted = [Sent(at=100 + n / 20, refused=False) for n in range(200)]
    sent = [*accepted, Sent(at=101.0, refused=True), Sent(at=109.0, refused=True)]
    figures = share_figures(sent, started=100.0, ended=110.0, per_second=25.0)
    assert figures["requests"] == 202
    assert figures["accepted_per_s"] == 20.0
    assert figures["share_of_limit"] == pytest.approx(0.8)
    assert figures["steady_share_of_limit"] == pytest.approx(0.8)
    assert figures["refused"] == 2 and figures["refused_share"] == pytest.approx(2 / 202, 1e-3)
    assert not figures["meets_target"]  # under 90 % used


def test_the_steady_share_leaves_out_a_slow_start_and_end() -> None:
    # Nothing in the first and last second of 10, then 24 a second between: 76.8 % of the
    # whole, 96 % of the middle 8 s.
    sent = [Sent(at=101 + n / 24, refused=False) for n in range(8 * 24)]
    figures = share_figures(sent, started=100.0, ended=110.0, per_second=25.0)
    assert figures["share_of_limit"] == pytest.approx(0.768)
    assert figures["steady_share_of_limit"] == pytest.approx(0.96)


def test_a_run_that_uses_the_rate_and_is_refused_rarely_meets_the_target() -> None:
    sent = [Sent(at=n / 23.75, refused=n == 7) for n in range(int(23.75 * 60))]
    figures = share_figures(sent, started=0.0, ended=60.0, per_second=25.0)
    assert figures["share_of_limit"] == pytest.approx(0.95, abs=0.002)
    assert figures["meets_target"]


def test_the_drain_is_compared_with_the_least_time_each_rate_allows() -> None:
    figures = drain_figures(25.0, 475, {"documented": 25.0, "connection": 23.75})
    assert figures["documented"] == {"per_second": 25.0, "minimum_s": 19.0, "ratio": 1.316}
    assert figures["connection"] == {"per_second": 23.75, "minimum_s": 20.0, "ratio": 1.25}


def test_scaling_runs_with_the_same_workers_add_up_over_their_wall_time() -> None:
    runs = [
        {"workers": 1, "invoices": 50, "exported": 50, "requests": 300, "wall_s": 10.0,
         "slow_workflow_tasks": 1},
        {"workers": 2, "invoices": 50, "exported": 50, "requests": 300, "wall_s": 5.0,
         "slow_workflow_tasks": 0},
        {"workers": 2, "invoices": 50, "exported": 49, "requests": 290, "wall_s": 5.0,
         "slow_workflow_tasks": 2},
        {"workers": 1, "invoices": 50, "exported": 50, "requests": 300, "wall_s": 15.0,
         "slow_workflow_tasks": 0},
    ]  # fmt: skip
    one = scale_figures(runs, 1)
    assert one["invoices"] == 100 and one["exported"] == 100
    assert one["invoices_per_s"] == 4.0 and one["requests_per_s"] == 24.0
    assert one["runs_invoices_per_s"] == [5.0, 3.33]
    two = scale_figures(runs, 2)
    assert two["exported"] == 99 and two["invoices_per_s"] == 9.9
    assert two["slow_workflow_tasks"] == 2


def test_worker_processes_get_this_runs_store_server_emulator_and_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("BILLBRIDGE_CODEC_KEY", "this-runs-key")
    monkeypatch.setenv("BILLBRIDGE_CODEC_KEY_FILE", "/elsewhere/key")
    settings = replace(
        Settings.from_env({}),
        temporal_address="127.0.0.1:7999",
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path}/bench.db",
        stripe_api_base="http://127.0.0.1:8123",
        task_queue="bench-queue",
    )
    env = worker_env(settings)
    assert env["BILLBRIDGE_CODEC_KEY"] == "this-runs-key"
    assert "BILLBRIDGE_CODEC_KEY_FILE" not in env  # with the key as well: "not both"
    assert env["TEMPORAL_ADDRESS"] == "127.0.0.1:7999"
    assert env["DATABASE_URL"] == f"sqlite:///{tmp_path}/bench.db"
    assert env["STRIPE_API_BASE"] == "http://127.0.0.1:8123"
    assert env["BILLBRIDGE_TASK_QUEUE"] == "bench-queue"
    # The settings a worker process builds from it are the bench's own.
    seen = Settings.from_env(env)
    assert seen.api_base("stripe_invoice") == "http://127.0.0.1:8123"
    assert seen.database_url == settings.database_url
