"""What an operator reads when the environment is wrong: one line naming the variable and value.

A missing database, codec key or Temporal frontend is not a bug in billbridge, so a traceback
would only hide the one fact that matters (which variable points where). `explain` turns those
failures into a line and an exit status; anything else is left to propagate as the bug it is.
"""

from __future__ import annotations

from dataclasses import dataclass

from billbridge.core.config import Settings
from billbridge.workers.client import TemporalUnreachable
from billbridge.workers.codec import CodecKeyError

# Exit statuses (README, "Exit status"): 1 for the environment, 3 when Temporal cannot be
# reached, as `billbridge export` has always answered that.
EXIT_ENVIRONMENT = 1
EXIT_TEMPORAL_UNREACHABLE = 3


class StoreUnavailable(RuntimeError):
    """The store named by DATABASE_URL cannot be opened (the message says where and why)."""


@dataclass(frozen=True)
class Explained:
    message: str  # one line, without the "billbridge: " prefix
    exit_code: int


def one_line(text: str) -> str:
    """Multi-line driver messages (psycopg's hint lines) folded into one line."""
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def database_label(url: str) -> str:
    """DATABASE_URL as it can be printed: the password hidden."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparseable URL may still hold a secret: do not echo it
        return "(unparseable URL)"


def store_unavailable(settings: Settings, reason: str) -> StoreUnavailable:
    return StoreUnavailable(
        f"cannot open the database at DATABASE_URL={database_label(settings.database_url)}: "
        f"{one_line(reason)}"
    )


def temporal_label(settings: Settings, address: str) -> str:
    if settings.temporal_address is None:
        return f"{address} (TEMPORAL_ADDRESS unset: the embedded dev server's address)"
    return f"TEMPORAL_ADDRESS={address}"


def explain(err: BaseException, settings: Settings) -> Explained | None:
    """The operator's line for an environment failure; None for anything else."""
    from sqlalchemy.exc import InterfaceError, OperationalError

    from billbridge.workers.dev_server import DevServerError

    if isinstance(err, StoreUnavailable):
        return Explained(str(err), EXIT_ENVIRONMENT)
    if isinstance(err, OperationalError | InterfaceError):
        # Raised where the store is opened or first used: the server is down, refuses the
        # credentials, or the SQLite file cannot be opened.
        reason = str(err.orig) if err.orig is not None else str(err)
        return Explained(str(store_unavailable(settings, reason)), EXIT_ENVIRONMENT)
    if isinstance(err, CodecKeyError):
        return Explained(one_line(str(err)), EXIT_ENVIRONMENT)  # names the variable and file
    if isinstance(err, TemporalUnreachable):
        return Explained(
            f"cannot reach Temporal at {temporal_label(settings, err.address)} "
            f"(namespace {err.namespace}): {one_line(str(err))}",
            EXIT_TEMPORAL_UNREACHABLE,
        )
    if isinstance(err, DevServerError):
        return Explained(one_line(str(err)), EXIT_ENVIRONMENT)
    return None
