"""Connection gates: each connection's pause switch and request rate, shared by every worker.

A worker process asks its connection's gate before every provider request (take_turn). The row
holds whether the connection is paused and, for a rate-limited provider, the start time of the
connection's next request (GCRA, core/rates.py); taking a turn moves it on in one transaction,
so requests of all workers on one database line up behind each other at the connection's rate.
On PostgreSQL the row is locked (SELECT ... FOR UPDATE) for that transaction; on SQLite the
write transaction (BEGIN IMMEDIATE) already serializes writers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlmodel import Session

from billbridge.activities.store.base import StoreBase
from billbridge.activities.store.helpers import _aware, _utcnow
from billbridge.activities.store.tables import ConnectionGateTable
from billbridge.core.rates import recovered, slowed, take_turn


@dataclass(frozen=True)
class GateRow:
    connection_id: str
    paused: bool
    pause_reason: str
    paused_since: datetime | None
    resumed_at: datetime | None
    factor: float
    throttled_count: int


@dataclass(frozen=True)
class GateTurn:
    """A request's turn: `paused` (nothing reserved), or when it may start (see core/rates.Turn:
    `delay` None means not within the wait allowed, `earliest` is when it could)."""

    paused: GateRow | None
    delay: float | None
    earliest: float = 0.0


_TABLE: Any = ConnectionGateTable.__table__  # type: ignore[attr-defined]


class GateMixin(StoreBase):
    def gate(self, connection_id: str) -> GateRow | None:
        with self._read() as session:
            row = session.connection().execute(_select(connection_id)).one_or_none()
            return None if row is None else _gate_row(row)

    def gates(self) -> list[GateRow]:
        with self._read() as session:
            rows = session.connection().execute(select(_TABLE).order_by(_TABLE.c.connection_id))
            return [_gate_row(row) for row in rows]

    def set_paused(self, connection_id: str, paused: bool, reason: str, at: datetime) -> GateRow:
        """Pause (with the reason, since `at`) or resume the connection. Pausing a paused
        connection keeps its first `paused_since` and takes the new reason."""
        with self._write() as session:
            row = self._locked(session, connection_id)
            values: dict[str, Any] = {"paused": paused, "updated_at": _utcnow()}
            if paused:
                values["pause_reason"] = reason
                if not row.paused:
                    values["paused_since"] = at
            elif row.paused:
                values.update(pause_reason="", resumed_at=at)
            session.connection().execute(
                update(_TABLE).where(_TABLE.c.connection_id == connection_id).values(**values)
            )
            return _gate_row(self._locked(session, connection_id))

    def take_turn(
        self,
        connection_id: str,
        per_second: float | None,
        now: float,
        max_wait: float,
        *,
        burst: int = 1,
    ) -> GateTurn:
        """The next request's turn on the connection, reserved (unless paused or too far off).

        `per_second` None: the connection has no rate of its own here; only the pause counts
        (a read, no write).
        """
        if per_second is None:
            found = self.gate(connection_id)
            if found is not None and found.paused:
                return GateTurn(paused=found, delay=None)
            return GateTurn(paused=None, delay=0.0)
        with self._write() as session:
            row = self._locked(session, connection_id)
            if row.paused:
                return GateTurn(paused=_gate_row(row), delay=None)
            factor = recovered(row.factor, row.factor_at, now)
            turn = take_turn(row.next_start, now, per_second * factor, burst, max_wait)
            if turn.delay is None:
                return GateTurn(paused=None, delay=None, earliest=turn.earliest)
            session.connection().execute(
                update(_TABLE)
                .where(_TABLE.c.connection_id == connection_id)
                .values(next_start=turn.next_start, factor=factor, factor_at=now)
            )
            return GateTurn(paused=None, delay=turn.delay, earliest=turn.earliest)

    def slow_down(self, connection_id: str, retry_after: float, now: float) -> None:
        """The provider refused a request for its rate: no request before its Retry-After, and a
        smaller share of the rate after that (it grows back, core/rates.py)."""
        with self._write() as session:
            row = self._locked(session, connection_id)
            factor = slowed(recovered(row.factor, row.factor_at, now))
            session.connection().execute(
                update(_TABLE)
                .where(_TABLE.c.connection_id == connection_id)
                .values(
                    next_start=max(row.next_start, now + max(retry_after, 0.0)),
                    factor=factor,
                    factor_at=now,
                    throttled_count=row.throttled_count + 1,
                )
            )

    def _locked(self, session: Session, connection_id: str) -> Any:
        """The connection's gate row, created if missing, locked for this transaction."""
        connection = session.connection()
        insert = self._insert(ConnectionGateTable).values(
            connection_id=connection_id, updated_at=_utcnow()
        )
        query = _select(connection_id)
        if self.dialect == "postgresql":
            query = query.with_for_update()
        row = connection.execute(query).one_or_none()
        if row is None:
            connection.execute(insert.on_conflict_do_nothing(index_elements=["connection_id"]))
            row = connection.execute(query).one()
        return row


def _select(connection_id: str) -> Any:
    return select(_TABLE).where(_TABLE.c.connection_id == connection_id)


def _gate_row(row: Any) -> GateRow:
    return GateRow(
        connection_id=row.connection_id,
        paused=bool(row.paused),
        pause_reason=row.pause_reason or "",
        paused_since=_aware(row.paused_since) if row.paused_since else None,
        resumed_at=_aware(row.resumed_at) if row.resumed_at else None,
        factor=float(row.factor),
        throttled_count=int(row.throttled_count),
    )
