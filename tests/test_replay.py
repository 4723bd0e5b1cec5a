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


def test_histories_are_recorded() -> None:
    names = {path.stem for path in HISTORIES}
    assert {
        "exported",
        "exported_after_retries",
        "skipped_zero_total",
        "not_exported",
        "needs_attention_then_exported",
        "failed_unmapped",  # from before needs-attention: replays through the patch
    } <= names


@pytest.mark.parametrize("path", HISTORIES, ids=lambda path: path.stem)
async def test_replay(path: Path) -> None:
    history = WorkflowHistory.from_json(f"export-invoice/{path.stem}", HISTORY_TEXT[path])
    replayer = Replayer(workflows=[ExportInvoiceWorkflow], data_converter=pydantic_data_converter)
    await replayer.replay_workflow(history)
