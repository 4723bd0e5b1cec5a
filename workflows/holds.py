"""What a workflow held by a paused connection uses: when to ask whether it still is.

Held workflows wait for `provider_resumed` (ProviderConnectionWorkflow's release). Should a
wake-up miss one (visibility lags), it asks the store itself: first after HOLD_RECHECK_FIRST,
then twice as long each time up to HOLD_RECHECK_MAX, so a long pause costs a few history events
an hour.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from billbridge.core import activity_names as names
    from billbridge.core.connection_control import ConnectionRef

HOLD_RECHECK_FIRST = timedelta(minutes=1)
HOLD_RECHECK_MAX = timedelta(hours=1)


async def connection_paused(connection_id: str) -> bool:
    """Whether the connection is still paused (a local activity reading the store)."""
    paused: bool = await workflow.execute_local_activity(
        names.CONNECTION_PAUSED,
        ConnectionRef(connection_id=connection_id),
        result_type=bool,
        start_to_close_timeout=timedelta(seconds=30),
        retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=1)),
    )
    return paused
