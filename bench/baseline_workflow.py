"""The yardstick: a workflow with one no-op activity, measured on the same server and run."""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow


@activity.defn(name="bench_noop")
def noop(value: str) -> str:
    return value


@workflow.defn
class NoopWorkflow:
    @workflow.run
    async def run(self, value: str) -> str:
        result: str = await workflow.execute_activity(
            "bench_noop", value, start_to_close_timeout=timedelta(seconds=30)
        )
        return result
