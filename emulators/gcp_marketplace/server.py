"""HTTP layer: faults, authentication, routing, the request log.

Pipeline for `/v1/` requests, in order: an injected `drop` / `status` fault (the request is not
executed), the bearer token (only when the emulator requires one), routing, an injected
`delay`, execution, an injected `drop_after`. `/_emulator/` requests are never faulted.
"""

from __future__ import annotations

import json
import re
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qs, parse_qsl, unquote, urlsplit

from ..faults import FaultSet, Firing
from ..serving import Reply, TrackingHTTPServer, retry_after_text
from . import api
from .errors import GoogleError, for_status, json_reply
from .oauth import TOKEN_PATH, TokenIssuer
from .requestlog import LoggedRequest, RequestLog, redact_authorization
from .state import Store, rfc3339

_SERVICE = re.compile(r"^/v1/services/(?P<service>[^/:]+):(?P<verb>check|report)$")
_ENTITLEMENT = re.compile(r"^/v1/providers/(?P<provider>[^/]+)/entitlements/(?P<id>[^/]+)$")
_ENTITLEMENTS = re.compile(r"^/v1/providers/(?P<provider>[^/]+)/entitlements$")


def _parsed(body: bytes, path: str = "") -> Any:
    if not body:
        return None
    if path == TOKEN_PATH:  # a form whose assertion is a signed credential: keep its start only
        form = dict(parse_qsl(body.decode("utf-8", "replace")))
        if "assertion" in form:
            form["assertion"] = form["assertion"][:6] + "…"
        return form
    try:
        return json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace")


class ApiCore:
    def __init__(
        self,
        *,
        store: Store,
        faults: FaultSet,
        log: RequestLog,
        issuer: TokenIssuer,
        require_bearer: bool,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.store = store
        self.faults = faults
        self.log = log
        self.issuer = issuer
        self.require_bearer = require_bearer
        self._sleep = sleep

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Reply:
        split = urlsplit(target)
        path = unquote(split.path)
        query = parse_qs(split.query, keep_blank_values=True)
        entry = LoggedRequest(
            method=method,
            path=path,
            query=query,
            body=_parsed(body, path),
            authorization=redact_authorization(headers.get("authorization")),
            status=0,
            fault=None,
            at=rfc3339(self.store.now()),
        )
        faultable = path.startswith("/v1/")
        firing = Firing(
            *(self.faults.take(method, path) if faultable else (None, None)), sleep=self._sleep
        )

        def finish(reply: Reply) -> Reply:
            firing.apply_delay()
            firing.record(entry, reply.status, reply.drop)
            entry.response = None if path == TOKEN_PATH else _parsed(reply.body)
            self.log.append(entry)
            return reply

        fault = firing.instead()
        if fault is not None:
            if fault.kind == "drop":
                return finish(Reply(0, drop=True))
            reply = for_status(fault.status, fault.message, fault.retry_after).reply()
            reply.status = fault.status
            if fault.retry_after is not None:
                reply.headers["Retry-After"] = retry_after_text(fault.retry_after)
            return finish(reply)

        try:
            reply = self._route(method, path, query, headers, body, firing.apply_delay)
        except GoogleError as err:
            reply = err.reply()
        except Exception:  # an emulator bug: a Google-shaped 500, the trace on stderr
            traceback.print_exc(file=sys.stderr)
            reply = GoogleError("INTERNAL", "Internal error encountered.").reply()
        if firing.drop_after():
            reply.drop = True
        return finish(reply)

    def _route(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        headers: Mapping[str, str],
        body: bytes,
        apply_delay: Callable[[], None],
    ) -> Reply:
        if path.startswith("/_emulator/"):
            return self._admin(method, path)
        if path == TOKEN_PATH:
            self._allow(method, "POST")
            return self.issuer.token(body)
        self._authenticate(headers.get("authorization"))
        params = {key: values[-1] for key, values in query.items()}
        # google-api-core's REST transports ask for numeric enums with "$alt=json;enum-encoding=int"
        # (google/api_core/rest_helpers.py); `$alt` is a system parameter of every Google API
        # (https://cloud.google.com/apis/docs/system-parameters). UNCONFIRMED in Google's docs:
        # the enum-encoding option, which the emulator honours as the client expects.
        caller = api.Caller(numeric_enums="enum-encoding=int" in params.get("$alt", ""))
        if (match := _SERVICE.match(path)) is not None:
            self._allow(method, "POST")
            apply_delay()
            service = match["service"]
            if match["verb"] == "check":
                return json_reply(200, api.check(self.store, service, body, caller))
            return json_reply(200, api.report(self.store, service, body))
        if (match := _ENTITLEMENT.match(path)) is not None:
            self._allow(method, "GET")
            apply_delay()
            return json_reply(200, api.get_entitlement(self.store, match["provider"], match["id"]))
        if (match := _ENTITLEMENTS.match(path)) is not None:
            self._allow(method, "GET")
            apply_delay()
            return json_reply(200, api.list_entitlements(self.store, match["provider"], params))
        raise GoogleError("NOT_FOUND", f"The requested URL {path} was not found on this server.")

    def _authenticate(self, header: str | None) -> None:
        """Google APIs take `Authorization: Bearer <token>`
        (https://cloud.google.com/docs/authentication/rest). With `require_bearer` the token
        must be one the emulator's token endpoint issued, or a self-signed service-account JWT
        (oauth.py); without it any request passes, anonymous ones too (tests use
        google.auth.credentials.AnonymousCredentials, which sends no header)."""
        if not self.require_bearer:
            return
        scheme, _, token = (header or "").strip().partition(" ")
        if not header:
            raise GoogleError(
                "UNAUTHENTICATED",
                "Request is missing required authentication credential. Expected OAuth 2 access "
                "token, login cookie or other valid authentication credential.",
            )
        if scheme.lower() != "bearer" or not self.issuer.valid(token.strip()):
            raise GoogleError("UNAUTHENTICATED", "Request had invalid authentication credentials.")

    @staticmethod
    def _allow(method: str, allowed: str) -> None:
        if method != allowed:
            # UNCONFIRMED: Google's front end answers a wrong method on a known path with 404.
            raise GoogleError("NOT_FOUND", f"{method} is not supported here.")

    def _admin(self, method: str, path: str) -> Reply:
        if method == "GET" and path == "/_emulator/accepted":
            with self.store.lock:
                accepted = [op.to_dict() for op in self.store.accepted.values()]
            return json_reply(200, {"accepted": accepted})
        if method == "GET" and path == "/_emulator/repeats":
            with self.store.lock:
                return json_reply(200, {"repeats": list(self.store.repeats)})
        raise GoogleError("NOT_FOUND", f"No emulator control at {method} {path}.")


class EmulatorHTTPServer(TrackingHTTPServer):
    def __init__(self, address: tuple[str, int], core: ApiCore) -> None:
        self.core = core
        super().__init__(address, core.handle)
