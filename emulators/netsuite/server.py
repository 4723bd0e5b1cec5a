"""HTTP layer: the request pipeline and the routes.

Pipeline for ``/services/rest/`` requests, in order:

1. injected ``drop`` / ``status`` faults (the request is not executed),
2. the token endpoint is answered by auth.py; API requests go on:
3. authentication (Bearer access token or TBA signature; 401 INVALID_LOGIN),
4. the account's concurrency limit (over it: 429, or 401 INVALID_LOGIN, as configured),
5. an injected ``delay`` (the request counts as in flight meanwhile), then execution under the
   store lock,
6. an injected ``drop_after`` discards the reply and closes the connection.

``/_emulator/`` holds the emulator's own controls (no NetSuite counterpart): credentials for
local runs (``POST /_emulator/m2m/credentials``, ``GET /_emulator/tba/credentials``).
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from ..faults import FaultSet, Firing
from ..serving import Reply, TrackingHTTPServer, injected_reply
from . import errors, suiteql, wire
from .auth import TOKEN_PATH, AuthServer
from .concurrency import ConcurrencyLimit
from .records import ITEM_TYPES, RECORD_TYPES, Store
from .requestlog import LoggedRequest, RequestLog, auth_kind, redact

REST = "/services/rest/"
RECORD = "/services/rest/record/v1/"
SUITEQL = "/services/rest/query/v1/suiteql"
MAX_PAGE = 1000  # "Collection Paging": at most 1000 results a page


def error_reply(err: errors.NetSuiteError) -> Reply:
    return wire.json_reply(err.status, err.body(), err.headers)


def _injected(status: int, message: str | None) -> Reply:
    return error_reply(errors.for_status(status, message))


def _logged_body(headers: Mapping[str, str], body: bytes) -> Any:
    if not body:
        return None
    text = body.decode("utf-8", "replace")
    if "x-www-form-urlencoded" in headers.get("content-type", ""):
        return dict(parse_qsl(text, keep_blank_values=True))
    try:
        return wire.loads(body)
    except wire.BodyError:
        return text


def real_host(account_id: str) -> str:
    """The account's host: ``1234567_SB1`` is served at ``1234567-sb1.suitetalk.api...``."""
    return f"{account_id.lower().replace('_', '-')}.suitetalk.api.netsuite.com"


class ApiCore:
    def __init__(
        self,
        *,
        auth: AuthServer,
        store: Store,
        limit: ConcurrencyLimit,
        faults: FaultSet,
        log: RequestLog,
        controls: Mapping[str, Callable[[], Any]],
        require_prefer_transient: bool = False,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.auth = auth
        self.store = store
        self.limit = limit
        self.faults = faults
        self.log = log
        self.controls = controls
        self.require_prefer_transient = require_prefer_transient
        self._sleep = sleep
        self._in_flight: dict[int, tuple[str, str]] = {}
        self._in_flight_lock = threading.Lock()

    def in_flight(self) -> list[tuple[str, str]]:
        """(method, path) of the API requests being executed now (admitted, not answered)."""
        with self._in_flight_lock:
            return list(self._in_flight.values())

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Reply:
        split = urlsplit(target)
        path = unquote(split.path)
        params = dict(parse_qsl(split.query, keep_blank_values=True))
        entry = LoggedRequest(
            method=method,
            path=path,
            query=params,
            body=redact(_logged_body(headers, body)),
            auth=auth_kind(headers.get("authorization")),
            status=0,
            fault=None,
            at=time.time(),
            arrived=self.log.tick(),
        )
        taken = self.faults.take(method, path) if path.startswith(REST) else (None, None)
        firing = Firing(*taken, sleep=self._sleep)

        def finish(reply: Reply) -> Reply:
            firing.apply_delay()
            if reply.status >= 400 and reply.body:
                try:
                    details = wire.loads(reply.body).get("o:errorDetails") or [{}]
                    entry.error_code = details[0].get("o:errorCode")
                except (wire.BodyError, AttributeError):
                    pass
            firing.record(entry, reply.status, reply.drop)
            entry.completed = self.log.tick()
            self.log.append(entry)
            return reply

        fault = firing.instead()
        if fault is not None:
            return finish(injected_reply(fault, _injected))
        host = headers.get("host", "127.0.0.1")
        base = f"http://{host}"
        if path == TOKEN_PATH:
            if method != "POST":
                return finish(error_reply(errors.not_allowed(method, path)))
            firing.apply_delay()
            urls = {f"{base}{TOKEN_PATH}", f"https://{real_host(self.auth.account_id)}{TOKEN_PATH}"}
            status, payload = self.auth.token(body, urls)
            return finish(wire.json_reply(status, payload, {"Cache-Control": "no-store"}))
        if path.startswith("/_emulator/"):
            control = self.controls.get(f"{method} {path}")
            if control is None:
                return finish(error_reply(errors.not_found(f"No emulator control at {path}.")))
            return finish(wire.json_reply(200, control()))
        if not path.startswith(REST):
            return finish(error_reply(errors.not_found(f"No resource at {path}.")))
        try:
            self.auth.authenticate(method, f"{base}{target}", headers.get("authorization"))
        except errors.NetSuiteError as err:
            return finish(error_reply(err))
        admitted = self.limit.enter()
        if admitted is None:
            entry.over_limit = True
            return finish(error_reply(errors.concurrency_exceeded(self.limit.over_limit_status)))
        entry.in_flight = admitted
        with self._in_flight_lock:
            self._in_flight[id(entry)] = (method, path)
        try:
            firing.apply_delay()
            reply = self._api(method, path, params, headers, body, base)
        finally:
            with self._in_flight_lock:
                del self._in_flight[id(entry)]
            self.limit.leave()
        if firing.drop_after():
            reply.drop = True
        return finish(reply)

    def _api(
        self,
        method: str,
        path: str,
        params: Mapping[str, str],
        headers: Mapping[str, str],
        body: bytes,
        base: str,
    ) -> Reply:
        try:
            payload: Any = None
            if body:
                try:
                    payload = wire.loads(body)
                except wire.BodyError as err:
                    raise errors.invalid_parameter(
                        f"Invalid JSON in the request body: {err}"
                    ) from err
            with self.store.lock:
                if path == SUITEQL:
                    return self._suiteql(method, params, headers, payload, base)
                if path.startswith(RECORD):
                    return self._record(method, path[len(RECORD) :], params, payload, base)
            raise errors.not_found(f"No resource at {path}.")
        except errors.NetSuiteError as err:
            return error_reply(err)
        except Exception:  # an emulator bug: answer like a NetSuite 500, trace on stderr
            traceback.print_exc(file=sys.stderr)
            return error_reply(errors.for_status(500, "An unexpected error occurred."))

    def _record(
        self, method: str, rest: str, params: Mapping[str, str], payload: Any, base: str
    ) -> Reply:
        parts = rest.strip("/").split("/")
        rtype = parts[0]
        if rtype not in RECORD_TYPES or len(parts) > 2 or not all(parts):
            raise errors.not_found(f"No resource at record/v1/{rest}.")
        key = parts[1] if len(parts) == 2 else None
        replace = frozenset(p for p in params.get("replace", "").split(",") if p)
        if method in ("POST", "PUT", "PATCH") and not isinstance(payload, dict):
            raise errors.invalid_parameter("The request body must be a JSON object.")
        if key is None:
            if method != "POST":
                raise errors.not_allowed(method, f"record/v1/{rtype}")
            new_id = self.store.create(rtype, payload)
        elif method == "GET":
            expand = params.get("expandSubResources", "").lower() == "true"
            return wire.json_reply(200, self.store.get(rtype, key, base, expand))
        elif method == "DELETE":
            self.store.delete(rtype, key)
            return Reply(204, {})
        elif method == "PUT":
            if not key.startswith("eid:"):
                # "You can only use the upsert operation when you use an external ID in the
                # request URL and when you use the PUT HTTP method."
                raise errors.invalid_parameter("PUT requires an external ID (eid:) in the URL.")
            new_id = self.store.upsert(rtype, key[4:], payload, replace)
        elif method == "PATCH":
            new_id = self.store.update(rtype, key, payload, replace)
        else:
            raise errors.not_allowed(method, f"record/v1/{rtype}/{key}")
        return Reply(204, {"Location": f"{base}/services/rest/record/v1/{rtype}/{new_id}"})

    def _suiteql(
        self,
        method: str,
        params: Mapping[str, str],
        headers: Mapping[str, str],
        payload: Any,
        base: str,
    ) -> Reply:
        if method != "POST":
            raise errors.not_allowed(method, "query/v1/suiteql")
        if self.require_prefer_transient and "transient" not in headers.get("prefer", ""):
            # UNCONFIRMED that NetSuite refuses a query without it (the documented example
            # sends it); off by default.
            raise errors.invalid_parameter("SuiteQL requests need the header Prefer: transient.")
        if not isinstance(payload, dict) or not isinstance(payload.get("q"), str):
            raise errors.invalid_parameter(
                'The request body must be {"q": "<SuiteQL query>"}.', "q"
            )
        try:
            limit = int(params.get("limit", MAX_PAGE))
            offset = int(params.get("offset", 0))
        except ValueError as err:
            raise errors.invalid_parameter(f"Invalid paging parameter: {err}") from err
        if not 1 <= limit <= MAX_PAGE or offset < 0:
            raise errors.invalid_parameter("limit must be 1-1000 and offset at least 0")
        rows = suiteql.run(suiteql.parse(payload["q"]), self.store.rows)
        page = rows[offset : offset + limit]
        href = f"{base}{SUITEQL}?limit={limit}&offset={offset}"
        return wire.json_reply(
            200,
            {
                "links": [{"rel": "self", "href": href}],
                "count": len(page),
                "hasMore": offset + len(page) < len(rows),
                "items": [{"links": [], **row} for row in page],
                "offset": offset,
                "totalResults": len(rows),
            },
        )


class EmulatorHTTPServer(TrackingHTTPServer):
    def __init__(self, address: tuple[str, int], core: ApiCore) -> None:
        self.core = core
        super().__init__(address, core.handle)


__all__ = ["ITEM_TYPES", "ApiCore", "EmulatorHTTPServer", "real_host"]
