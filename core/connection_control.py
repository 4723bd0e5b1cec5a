"""What ProviderConnectionWorkflow (a connection's pause switch) and its activities exchange.

Pure (pydantic and datetime only): the workflow, the worker's activities and the CLI import it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel, Field

from billbridge.core.metering import HOUR, WINDOWS, hour_start, window_closes

# How long before a marketplace's window closes on the oldest hour a pause holds, the pause
# says so (the control workflow's warning, `billbridge provider status`, held workflows' state):
# time for a person to resume, or to decide that hour's usage goes out with a later one.
WINDOW_WARNING = timedelta(hours=3)


def workflow_id(connection_id: str) -> str:
    """The id a user looks for in the Temporal UI: `provider/<connection id>`."""
    return f"provider/{connection_id}"


class PauseRequest(BaseModel):
    """The `pause` signal: why (shown wherever the pause is)."""

    reason: str = Field(default="", max_length=500)


class ConnectionControlInput(BaseModel):
    connection_id: str
    provider: str
    """The connection's provider or marketplace ("stripe_invoice", "aws", ...)."""
    paused: bool = False
    pause_reason: str = ""
    paused_since: datetime | None = None
    """Carried by continue-as-new."""


class PauseChange(BaseModel):
    """Activity input: the pause switch of a connection, as the workflow decided it."""

    connection_id: str
    paused: bool
    reason: str = ""
    at: datetime


class PauseApplied(BaseModel):
    paused: bool
    paused_since: datetime | None = None


class ConnectionRef(BaseModel):
    connection_id: str


class ReleaseHeld(BaseModel):
    connection_id: str


class ReleaseResult(BaseModel):
    released: int = 0


class ConnectionControlState(BaseModel):
    """The `status` query's answer."""

    connection_id: str
    provider: str
    paused: bool = False
    reason: str = ""
    paused_since: datetime | None = None
    resumed_at: datetime | None = None
    applied: bool = True
    """False while a pause or resume is signalled but not yet in the store (no worker yet)."""
    released: int = 0
    """Held workflows the last resume woke."""
    window_closes: datetime | None = None
    """Marketplaces: when the oldest hour the pause may hold leaves the marketplace's window."""
    warning: str = ""


def window_outlook(provider: str, paused_since: datetime) -> datetime | None:
    """When a pause of a marketplace connection starts losing usage: the window of the oldest
    hour it may hold (the hour before the pause began, whose report may not have gone out yet)
    closes. None: not a marketplace, nothing expires."""
    if provider not in WINDOWS:
        return None
    return window_closes(hour_start(paused_since) - HOUR, provider)


def window_warning(provider: str, paused_since: datetime, now: datetime) -> str:
    """The warning a pause of a marketplace connection gives once it nears the window's end
    (empty before WINDOW_WARNING ahead of it, and for invoicing providers)."""
    closes = window_outlook(provider, paused_since)
    if closes is None or now < closes - WINDOW_WARNING:
        return ""
    if now >= closes:
        return (
            f"the pause outlasted the {provider} window: usage of hours before "
            f"{closes - WINDOWS[provider]:%Y-%m-%d %H:%M} UTC can no longer be reported for its "
            "own hour and goes out with the first hour still open once resumed"
        )
    return (
        f"resume before {closes:%Y-%m-%d %H:%M} UTC: after that {provider} no longer takes the "
        f"oldest held hour ({closes - WINDOWS[provider]:%Y-%m-%d %H:%M} UTC), and its usage goes "
        "out with a later hour"
    )
