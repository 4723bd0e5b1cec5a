"""Replay recorded histories: a workflow change that would break running exports fails here."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from billbridge.workflows.export_invoice import ExportInvoiceWorkflow

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))
HISTORY_TEXT = {path: path.read_text() for path in HISTORIES}


SCENARIOS = {
    "exported",
    "exported_after_retries",
    "skipped_zero_total",
    "not_exported",
    "needs_attention_then_exported",
}


def test_histories_are_recorded() -> None:
    names = {path.stem for path in HISTORIES}
    assert SCENARIOS <= names
    # From before the one-pass export (five steps a pass): they replay through its patch.
    assert {f"five_steps_{name}" for name in SCENARIOS} <= names
    assert "failed_unmapped" in names  # from before needs-attention: replays through the patch


@pytest.mark.parametrize("path", HISTORIES, ids=lambda path: path.stem)
async def test_replay(path: Path) -> None:
    history = WorkflowHistory.from_json(f"export-invoice/{path.stem}", HISTORY_TEXT[path])
    replayer = Replayer(workflows=[ExportInvoiceWorkflow], data_converter=pydantic_data_converter)
    await replayer.replay_workflow(history)
