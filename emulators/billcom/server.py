"""HTTP layer: the request pipeline and the server.

The API lives under ``/v3/``; BILL's gateway puts it under ``/connect`` (base URL
``https://gateway.prod.bill.com/connect``), so the emulator answers both ``/connect/v3/...`` and
``/v3/...`` (its base URL can be given with or without ``/connect``). Pipeline, in order:

1. injected ``drop`` / ``status`` faults (the request is not executed),
2. routing (unknown paths: 404 BDC_1121),
3. ``POST /v3/login`` counts against its devKey and organization and logs in; every other
   request needs the ``devKey`` and ``sessionId`` headers of a live session (BDC_1109),
4. the hourly limit per devKey (BDC_1144) and the concurrency limit per devKey and organization
   (BDC_1322); a request holds its place until its reply is complete, an injected delay included,
5. an injected ``delay``, then execution under the store lock,
6. an injected ``drop_after`` discards the executed reply and closes the connection.
"""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from ..faults import FaultSet, Firing
from ..serving import Reply, TrackingHTTPServer, injected_reply
from . import api, errors
from .access import Clock, Limits, Session, Sessions
from .requestlog import LoggedRequest, RequestLog, redact, redact_value
from .state import Store

GATEWAY_PREFIX = "/connect"
CONTENT_TYPE = "application/json"


def _encode(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"cannot encode {type(value).__name__}")


def json_reply(status: int, payload: Any) -> Reply:
    return Reply(
        status, {"Content-Type": CONTENT_TYPE}, json.dumps(payload, default=_encode).encode()
    )


def error_reply(err: errors.BillError, clock: Clock) -> Reply:
    return Reply(
        err.status,
        {"Content-Type": CONTENT_TYPE},
        err.body(datetime.fromtimestamp(clock.now(), UTC)),
    )


class ApiCore:
    """Protocol logic independent of the socket server (one instance per emulator)."""

    def __init__(
        self,
        *,
        store: Store,
        sessions: Sessions,
        limits: Limits,
        faults: FaultSet,
        log: RequestLog,
        clock: Clock,
        create_status: int,
        sleep: Callable[[float], None],
    ) -> None:
        self.store = store
        self.sessions = sessions
        self.limits = limits
        self.faults = faults
        self.log = log
        self.clock = clock
        self.create_status = create_status
        self._sleep = sleep

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Reply:
        """Answer one request. ``headers`` must have lower-cased names."""
        split = urlsplit(target)
        path = unquote(split.path)
        if path == GATEWAY_PREFIX or path.startswith(GATEWAY_PREFIX + "/"):
            path = path[len(GATEWAY_PREFIX) :]
        params = dict(parse_qsl(split.query, keep_blank_values=True))
        parsed, parse_error = _parse(body)
        session_header = headers.get("sessionid")
        entry = LoggedRequest(
            method=method,
            path=path,
            query=params,
            body=redact(parsed) if parse_error is None else body.decode("utf-8", "replace"),
            session=redact_value(session_header) if session_header else None,
            status=0,
            code=None,
            fault=None,
            at=self.clock.now(),
            arrived=self.log.tick(),
        )
        faultable = path.startswith("/v3/")
        taken = self.faults.take(method, path) if faultable else (None, None)
        firing = Firing(*taken, sleep=self._sleep)

        def finish(reply: Reply) -> Reply:
            firing.apply_delay()
            if reply.status >= 400 and reply.body:
                try:
                    entry.code = json.loads(reply.body)[0]["code"]
                except (ValueError, LookupError, TypeError):
                    entry.code = None
            firing.record(entry, reply.status, reply.drop)
            entry.completed = self.log.tick()
            self.log.append(entry)
            return reply

        fault = firing.instead()
        if fault is not None:
            return finish(
                injected_reply(
                    fault,
                    lambda status, text: error_reply(
                        errors.for_injected_status(status, text), self.clock
                    ),
                )
            )
        try:
            reply = self._api(method, path, params, headers, parsed, parse_error, firing)
        except errors.BillError as err:
            reply = error_reply(err, self.clock)
        if firing.drop_after():
            reply.drop = True
        return finish(reply)

    def _api(
        self,
        method: str,
        path: str,
        params: Mapping[str, str],
        headers: Mapping[str, str],
        parsed: Any,
        parse_error: str | None,
        firing: Firing,
    ) -> Reply:
        parts = tuple(p for p in path.split("/") if p)
        if len(parts) < 2 or parts[0] != "v3":
            raise api.not_routed(path)
        rest = parts[1:]
        if rest == ("login",):
            if method != "POST":
                raise api.not_routed(path)
            body = self._body(parsed, parse_error)
            dev_key = str(body.get("devKey", "")) if isinstance(body, dict) else ""
            org = str(body.get("organizationId", "")) if isinstance(body, dict) else ""
            return self._limited(dev_key, org, firing, lambda: self._login(body))
        handler = api.route(method, rest, self.create_status)
        if handler is None:
            raise api.not_routed(path)
        session = self.sessions.authenticate(headers.get("devkey"), headers.get("sessionid"))
        body = self._body(parsed, parse_error) if method == "POST" else None
        call = api.Call(method, rest, params, body, session)
        return self._limited(
            session.dev_key,
            session.organization_id,
            firing,
            lambda: self._execute(handler, call, session),
        )

    @staticmethod
    def _body(parsed: Any, parse_error: str | None) -> Any:
        if parse_error is not None:
            code, message = errors.JSON_PARSE
            raise errors.BillError(400, code, f"{message} {parse_error}")
        return {} if parsed is None else parsed

    def _limited(
        self, dev_key: str, organization_id: str, firing: Firing, run: Callable[[], Reply]
    ) -> Reply:
        """Count the request in its devKey's hour and hold a place among its organization's
        concurrent requests until the reply is complete (the injected delay included)."""
        self.limits.count_request(dev_key)
        key = (dev_key, organization_id)
        self.limits.enter(key)
        try:
            firing.apply_delay()
            return run()
        finally:
            self.limits.leave(key)

    def _login(self, body: Any) -> Reply:
        session = self.sessions.login(body)
        return json_reply(
            200,
            {
                "sessionId": session.session_id,
                "userId": session.user_id,
                "organizationId": session.organization_id,
            },
        )

    def _execute(self, handler: api.Handler, call: api.Call, session: Session) -> Reply:
        if call.parts == ("logout",):
            self.sessions.logout(session)
        with self.store.lock:
            try:
                status, payload = handler(self.store, call)
            except errors.BillError:
                raise
            except Exception:  # an emulator bug: answer like BILL's system error, trace on stderr
                traceback.print_exc(file=sys.stderr)
                raise errors.documented(500, errors.SYSTEM, "SERVER") from None
        return json_reply(status, payload)


def _parse(body: bytes) -> tuple[Any, str | None]:
    """(parsed JSON or None when empty, parse error text)."""
    if not body:
        return None, None
    try:
        return json.loads(body.decode("utf-8"), parse_float=Decimal), None
    except (UnicodeDecodeError, ValueError) as exc:
        return None, str(exc)


class EmulatorHTTPServer(TrackingHTTPServer):
    """Every request goes to ``core``."""

    def __init__(self, address: tuple[str, int], core: ApiCore) -> None:
        self.core = core
        super().__init__(address, core.handle)
