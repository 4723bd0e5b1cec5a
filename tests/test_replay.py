"""Replay recorded histories: a workflow change that would break running exports fails here."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from billbridge.workflows.export_invoice import ExportInvoiceWorkflow
from billbridge.workflows.marketplace_metering import MarketplaceMeteringWorkflow
from billbridge.workflows.provider_connection import ProviderConnectionWorkflow

ALL_HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))
# tests/record_metering_histories.py records these; tests/record_histories.py the others.
METERING_HISTORIES = [path for path in ALL_HISTORIES if path.stem.startswith("metering_")]
CONTROL_HISTORIES = [path for path in ALL_HISTORIES if path.stem.startswith("provider_connection_")]
HISTORIES = [
    path
    for path in ALL_HISTORIES
    if path not in METERING_HISTORIES and path not in CONTROL_HISTORIES
]
HISTORY_TEXT = {path: path.read_text() for path in ALL_HISTORIES}


SCENARIOS = {
    "exported",
    "exported_after_retries",
    "skipped_zero_total",
    "not_exported",
    "needs_attention_then_exported",
}
# Recorded since a paused connection holds exports (`billbridge provider pause`).
PAUSED_SCENARIOS = {"paused_then_exported"}


def test_histories_are_recorded() -> None:
    names = {path.stem for path in HISTORIES}
    assert SCENARIOS <= names
    # From before the one-pass export (five steps a pass): they replay through its patch.
    assert {f"five_steps_{name}" for name in SCENARIOS} <= names
    assert "failed_unmapped" in names  # from before needs-attention: replays through the patch
    assert PAUSED_SCENARIOS <= names
    assert {path.stem for path in CONTROL_HISTORIES} == {"provider_connection_paused_resumed"}
    metering = {path.stem for path in METERING_HISTORIES}
    assert {"metering_stopped", "metering_paused_resumed"} <= metering
    assert "metering_needs_attention_then_retried" in metering
    assert "metering_held_by_provider" in metering  # since a paused connection holds metering


@pytest.mark.parametrize("path", HISTORIES, ids=lambda path: path.stem)
async def test_replay(path: Path) -> None:
    history = WorkflowHistory.from_json(f"export-invoice/{path.stem}", HISTORY_TEXT[path])
    replayer = Replayer(workflows=[ExportInvoiceWorkflow], data_converter=pydantic_data_converter)
    await replayer.replay_workflow(history)


@pytest.mark.parametrize("path", METERING_HISTORIES, ids=lambda path: path.stem)
async def test_replay_metering(path: Path) -> None:
    history = WorkflowHistory.from_json(f"marketplace-metering/{path.stem}", HISTORY_TEXT[path])
    replayer = Replayer(
        workflows=[MarketplaceMeteringWorkflow], data_converter=pydantic_data_converter
    )
    await replayer.replay_workflow(history)


@pytest.mark.parametrize("path", CONTROL_HISTORIES, ids=lambda path: path.stem)
async def test_replay_provider_connection(path: Path) -> None:
    history = WorkflowHistory.from_json(f"provider/{path.stem}", HISTORY_TEXT[path])
    replayer = Replayer(
        workflows=[ProviderConnectionWorkflow], data_converter=pydantic_data_converter
    )
    await replayer.replay_workflow(history)
