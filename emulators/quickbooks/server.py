"""HTTP layer: the request pipeline (faults, OAuth, auth, throttling, requestid) and the server.

Pipeline for ``/v3/`` and ``/oauth2/`` requests, in order:

1. injected ``drop`` / ``status`` faults (the request is not executed),
2. OAuth endpoints are answered by oauth.py; Accounting API requests go on:
3. authentication (``Authorization: Bearer <access token>``; 401 AuthenticationFault),
4. the realm in the URL must be the token's (403 AuthorizationFault),
5. per-realm throttling (429 ThrottlingFault; never saved for ``requestid``),
6. routing (404 / 405) and the ``requestid`` length check,
7. an injected ``delay``, then, under the store lock: replay of a saved ``requestid`` response,
   or execution, whose response (200 or fault) is saved for the ``requestid``,
8. an injected ``drop_after`` discards the response and closes the connection.
"""

from __future__ import annotations

import secrets
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from ..faults import FaultSet, Firing
from ..serving import TrackingHTTPServer, injected_reply
from . import api, encoding, errors
from .entities import Store
from .oauth import OAuthServer
from .ratelimit import MinuteWindow
from .reply import JSON_CONTENT_TYPE, Reply, json_reply
from .requestids import MAX_REQUEST_ID_LENGTH, RequestIdStore, SavedReply
from .requestlog import LoggedRequest, RequestLog, redact, redact_authorization

AUTHORIZE_PATH = "/connect/oauth2"
TOKEN_PATH = "/oauth2/v1/tokens/bearer"
REVOKE_PATH = "/oauth2/v1/tokens/revoke"
FAULTABLE_PREFIXES = ("/v3/", "/oauth2/")


def fault_reply(err: errors.QuickBooksError) -> Reply:
    return json_reply(err.status, err.body(), err.headers)


def _fault_reply(status: int, message: str | None) -> Reply:
    """An injected status on the Accounting API: the QuickBooks Fault for that status."""
    return fault_reply(errors.for_status(status, message))


def _oauth_error_reply(status: int, message: str | None) -> Reply:
    """An injected status on the token endpoints, shaped as RFC 6749 errors.

    UNCONFIRMED: what Intuit's token endpoint sends on 429/5xx. An OAuth-shaped body (not a
    QuickBooks Fault) is what OAuth clients parse: authlib raises on ``error``, and would take a
    4xx JSON body without one for a token.
    """
    if status == 401:
        error = "invalid_client"
    elif status in (429, 503):
        error = "temporarily_unavailable"
    elif status >= 500:
        error = "server_error"
    else:
        error = "invalid_request"
    body: dict[str, Any] = {"error": error}
    if message is not None:
        body["error_description"] = message
    return json_reply(status, body, {"Cache-Control": "no-store"})


def _logged_body(headers: Mapping[str, str], body: bytes) -> Any:
    if not body:
        return None
    content_type = headers.get("content-type", "").lower()
    text = body.decode("utf-8", "replace")
    if "x-www-form-urlencoded" in content_type:
        return dict(parse_qsl(text, keep_blank_values=True))
    if "json" in content_type:
        try:
            return encoding.loads(body)
        except encoding.BodyError:
            return text
    return text


class ApiCore:
    """Protocol logic independent of the socket server (one instance per emulator)."""

    def __init__(
        self,
        *,
        oauth: OAuthServer,
        store: Store,
        requestids: RequestIdStore,
        limiter: MinuteWindow,
        faults: FaultSet,
        log: RequestLog,
        retry_after_seconds: float | None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.oauth = oauth
        self.store = store
        self.requestids = requestids
        self.limiter = limiter
        self.faults = faults
        self.log = log
        self.retry_after_seconds = retry_after_seconds
        self._sleep = sleep

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Reply:
        """Answer one request. ``headers`` must have lower-cased names."""
        split = urlsplit(target)
        path = unquote(split.path)
        params = dict(parse_qsl(split.query, keep_blank_values=True))
        tid = f"1-{secrets.token_hex(4)}-{secrets.token_hex(12)}"
        entry = LoggedRequest(
            method=method,
            path=path,
            query=redact(params),
            body=redact(_logged_body(headers, body)),
            authorization=redact_authorization(headers.get("authorization")),
            request_id=params.get("requestid"),
            status=0,
            replayed=False,
            fault=None,
            at=time.time(),
            intuit_tid=tid,
            arrived=self.log.tick(),
        )
        faultable = path.startswith(FAULTABLE_PREFIXES)
        taken = self.faults.take(method, path) if faultable else (None, None)
        firing = Firing(*taken, sleep=self._sleep)

        def finish(reply: Reply) -> Reply:
            firing.apply_delay()
            if reply.body:
                reply.headers.setdefault("Content-Type", JSON_CONTENT_TYPE)
            reply.headers["intuit_tid"] = tid
            firing.record(entry, reply.status, reply.drop)
            entry.completed = self.log.tick()
            self.log.append(entry)
            return reply

        fault = firing.instead()
        if fault is not None:
            oauth = path.startswith("/oauth2/")
            return finish(injected_reply(fault, _oauth_error_reply if oauth else _fault_reply))

        if path == AUTHORIZE_PATH:
            reply = self.oauth.authorize(params) if method == "GET" else self._not_allowed(path)
        elif path in (TOKEN_PATH, REVOKE_PATH):
            if method != "POST":
                reply = self._not_allowed(path, "POST")
            else:
                firing.apply_delay()
                endpoint = self.oauth.token if path == TOKEN_PATH else self.oauth.revoke
                reply = endpoint(headers, body)
        elif path.startswith("/v3/"):
            reply, entry.replayed = self._accounting(
                method, path, params, headers, body, firing.apply_delay
            )
        else:
            reply = fault_reply(errors.unsupported_operation(404, f"No resource at {path}"))
        if firing.drop_after():
            reply.drop = True
        return finish(reply)

    @staticmethod
    def _not_allowed(path: str, allow: str = "GET") -> Reply:
        err = errors.unsupported_operation(405, f"{path} only accepts {allow}")
        err.headers["Allow"] = allow
        return fault_reply(err)

    def _accounting(
        self,
        method: str,
        path: str,
        params: Mapping[str, str],
        headers: Mapping[str, str],
        body: bytes,
        apply_delay: Callable[[], None],
    ) -> tuple[Reply, bool]:
        """(reply, replayed) for one ``/v3/`` request."""
        parts = path.strip("/").split("/")
        try:
            token_realm = self.oauth.authenticate(headers.get("authorization"))
            if len(parts) not in (4, 5) or parts[:2] != ["v3", "company"] or not all(parts):
                raise errors.unsupported_operation(404, f"No resource at {path}")
            realm = parts[2]
            if realm != token_realm:
                raise errors.authorization()
            if not self.limiter.allow(realm):
                raise errors.throttled(self.retry_after_seconds)
            route = api.match(parts[3], len(parts) == 5)
            if route is None:
                raise errors.unsupported_operation(404, f"No resource at {path}")
            handler = route.get(method)
            if handler is None:
                err = errors.unsupported_operation(405, f"{method} is not supported on {path}")
                err.headers["Allow"] = ", ".join(sorted(route))
                raise err
            # requestid only matters on writes (POST); an empty one counts as absent.
            request_id = (params.get("requestid") or None) if method == "POST" else None
            if request_id is not None and len(request_id) > MAX_REQUEST_ID_LENGTH:
                raise errors.business(
                    f"requestid is longer than {MAX_REQUEST_ID_LENGTH} characters", "requestid"
                )
        except errors.QuickBooksError as err:
            return fault_reply(err), False

        apply_delay()
        call = api.Call(
            method, parts[3].lower(), parts[4] if len(parts) == 5 else None, params, body
        )
        with self.store.lock:
            if request_id is not None:
                saved = self.requestids.get(realm, request_id)
                if saved is not None:
                    return Reply(saved.status, dict(saved.headers), saved.body), True
            try:
                reply = json_reply(200, handler(self.store, call))
            except errors.QuickBooksError as err:
                reply = fault_reply(err)
            except Exception:  # an emulator bug: answer like a QuickBooks 500, trace on stderr
                traceback.print_exc(file=sys.stderr)
                reply = fault_reply(errors.system(500))
            if request_id is not None:
                saved = SavedReply(reply.status, dict(reply.headers), reply.body)
                self.requestids.save(realm, request_id, saved)
        return reply, False


class EmulatorHTTPServer(TrackingHTTPServer):
    """Every request goes to ``core``."""

    def __init__(self, address: tuple[str, int], core: ApiCore) -> None:
        self.core = core
        super().__init__(address, core.handle)
