"""HTTP layer: request pipeline (faults, auth, rate limit, idempotency) and the admin surface.

Pipeline for every /v1 request, in order:

1. injected ``drop`` / ``status`` faults (before anything else; the request is not executed),
2. authentication (``Authorization: Bearer sk_test_...`` or HTTP Basic with the key as user),
3. the per-key token-bucket rate limit (429, never saved for idempotency),
4. form decoding and routing (unknown URL -> 404),
5. idempotency (POST only, as Stripe documents: keys on GET/DELETE have no effect),
6. parameter validation (failures are not saved, so the key can be retried),
7. an injected ``delay`` (while the key is marked in flight), then execution under the state
   lock (or, for a ``saved`` fault, a 5xx in its place: a failure once execution began); the
   response (including 4xx from business rules and 500s) is saved for the key,
8. an injected ``drop_after`` discards the response and closes the connection.
"""

from __future__ import annotations

import base64
import binascii
import json
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from ..faults import Fault, FaultSet
from ..serving import Reply, TrackingHTTPServer, injected_reply
from . import api, errors
from .faults import SHOULD_RETRY_HEADER, StripeFault, StripeFiring
from .forms import FormError, decode
from .idempotency import (
    MAX_KEY_LENGTH,
    Fingerprint,
    IdempotencyStore,
    Outcome,
    SavedResponse,
)
from .ratelimit import RateLimiter
from .requestlog import LoggedRequest, RequestLog
from .state import Store, new_id

DEFAULT_API_VERSION = "2026-10-28.endive"
TEST_KEY_PREFIXES = ("sk_test_", "rk_test_")


def _json(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2) + "\n").encode()


def _redact(key: str) -> str:
    if len(key) <= 12:
        return key
    return key[:8] + "*" * (len(key) - 12) + key[-4:]


class ApiCore:
    """Protocol logic independent of the socket server (one instance per emulator)."""

    def __init__(
        self,
        *,
        store: Store,
        idempotency: IdempotencyStore,
        limiter: RateLimiter,
        faults: FaultSet,
        log: RequestLog,
        api_keys: frozenset[str] | None,
        max_lines_per_add_lines: int,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.store = store
        self.idempotency = idempotency
        self.limiter = limiter
        self.faults = faults
        self.log = log
        self.api_keys = api_keys
        self.max_lines_per_add_lines = max_lines_per_add_lines
        self._sleep = sleep

    # -- helpers ---------------------------------------------------------------------------

    def _authenticate(self, headers: Mapping[str, str]) -> str:
        raw = headers.get("authorization", "").strip()
        key = ""
        scheme, _, credential = raw.partition(" ")
        if scheme.lower() == "bearer":
            key = credential.strip()
        elif scheme.lower() == "basic":
            try:
                key = base64.b64decode(credential.strip()).decode().partition(":")[0]
            except (binascii.Error, UnicodeDecodeError):
                key = ""
        if not key:
            raise errors.StripeError(
                401,
                "You did not provide an API key. You need to provide your API key in the "
                "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
                "YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication for details, "
                "or we can help at https://support.stripe.com/.",
            )
        valid = (
            key in self.api_keys if self.api_keys is not None else key.startswith(TEST_KEY_PREFIXES)
        )
        if not valid:
            raise errors.StripeError(401, f"Invalid API Key provided: {_redact(key)}")
        return key

    @staticmethod
    def _error_reply(err: errors.StripeError, request_id: str) -> Reply:
        return Reply(err.status, dict(err.headers), _json(err.body(request_id)))

    # -- pipeline --------------------------------------------------------------------------

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Reply:
        """Process one /v1 request. ``headers`` must have lower-cased names."""
        request_id = new_id("req", 14)
        split = urlsplit(target)
        path = unquote(split.path)
        idem_key = headers.get("idempotency-key")
        form_error: FormError | None = None
        try:
            query = decode(split.query)
        except FormError as exc:
            query, form_error = {}, exc
        params: dict[str, Any] = query
        if method == "POST":
            try:
                params = {**query, **decode(body)}
            except FormError as exc:
                params, form_error = query, exc
        entry = LoggedRequest(
            method=method,
            path=path,
            query=query,
            params=params,
            idempotency_key=idem_key,
            status=0,
            replayed=False,
            fault=None,
            at=time.time(),
            request_id=request_id,
            arrived=self.log.tick(),
        )
        firing = StripeFiring(*self.faults.take(method, path), sleep=self._sleep)

        def finish(reply: Reply) -> Reply:
            firing.apply_delay()
            reply.headers.setdefault("Content-Type", "application/json")
            reply.headers["Request-Id"] = request_id
            reply.headers["Stripe-Version"] = headers.get("stripe-version") or DEFAULT_API_VERSION
            reply.headers.setdefault("Cache-Control", "no-cache, no-store")
            reply.headers.setdefault("Access-Control-Allow-Origin", "*")
            firing.record(entry, reply.status, reply.drop)
            entry.completed = self.log.tick()
            self.log.append(entry)
            return reply

        def injected_error(status: int, message: str | None) -> Reply:
            return self._error_reply(errors.for_status(status, message), request_id)

        fault = firing.instead()
        if fault is not None:
            injected = injected_reply(fault, injected_error)
            if isinstance(fault, StripeFault):
                injected.headers.update(fault.retry_header())
            return finish(injected)

        try:
            api_key = self._authenticate(headers)
        except errors.StripeError as err:
            return finish(self._error_reply(err, request_id))
        if not self.limiter.allow(api_key):
            return finish(self._error_reply(errors.rate_limited(), request_id))
        if form_error is not None:
            return finish(
                self._error_reply(errors.invalid(str(form_error), form_error.param), request_id)
            )
        found = api.match(method, path)
        if found is None:
            return finish(self._error_reply(errors.unrecognized_url(method, path), request_id))
        route, ids = found

        idempotent = method == "POST" and bool(idem_key)
        extra: dict[str, str] = {}
        if idempotent:
            assert idem_key is not None
            extra = {"Idempotency-Key": idem_key, "Original-Request": request_id}
            if len(idem_key) > MAX_KEY_LENGTH:
                # UNCONFIRMED wording; the 255-character limit is documented.
                too_long = errors.invalid(
                    f"Idempotency keys can be at most {MAX_KEY_LENGTH} characters long, but the "
                    f"provided key is {len(idem_key)} characters long."
                )
                return finish(self._error_reply(too_long, request_id))
            begun = self.idempotency.begin(
                api_key, idem_key, Fingerprint.of(method, path, params), request_id
            )
            if begun.outcome is Outcome.REPLAY:
                assert begun.saved is not None
                saved = begun.saved
                entry.replayed = True
                headers_out = {
                    **saved.headers,
                    "Idempotency-Key": idem_key,
                    "Original-Request": saved.request_id,
                    "Idempotent-Replayed": "true",
                }
                return finish(Reply(saved.status, headers_out, saved.body))
            if begun.outcome is Outcome.IN_FLIGHT:
                return finish(self._error_reply(errors.for_status(409), request_id))
            if begun.outcome is Outcome.ENDPOINT_MISMATCH:
                assert begun.original is not None
                mismatch = errors.StripeError(
                    400,
                    "Keys for idempotent requests can only be used for the same endpoint they "
                    f"were first used for ('{begun.original.method} {begun.original.path}' vs "
                    f"'{method} {path}'). Try using a key other than '{idem_key}' if you meant "
                    "to execute a different request.",
                    type="idempotency_error",
                )
                return finish(self._error_reply(mismatch, request_id))
            if begun.outcome is Outcome.PARAMS_MISMATCH:
                mismatch = errors.StripeError(
                    400,
                    "Keys for idempotent requests can only be used with the same parameters they "
                    f"were first used with. Try using a key other than '{idem_key}' if you meant "
                    "to execute a different request.",
                    type="idempotency_error",
                )
                return finish(self._error_reply(mismatch, request_id))

        try:
            coerced = route.schema.coerce(params, "")
        except errors.StripeError as err:
            if idempotent:
                assert idem_key is not None
                self.idempotency.abandon(api_key, idem_key)
            return finish(self._error_reply(err, request_id))

        firing.apply_delay()
        call = api.Call(ids, coerced, self.max_lines_per_add_lines)
        saved_failure = firing.saved_failure()
        try:
            if saved_failure is not None:  # failed once execution began, nothing written
                failure = errors.for_status(saved_failure.status, saved_failure.message)
                failure.headers.update(saved_failure.retry_header())
                raise failure
            with self.store.lock:
                result = route.handler(self.store, call)
                reply = Reply(200, {"Content-Type": "application/json"}, _json(result))
        except errors.StripeError as err:
            reply = self._error_reply(err, request_id)
        except Exception:  # an emulator bug: answer like Stripe's 500, keep a trace on stderr
            traceback.print_exc(file=sys.stderr)
            reply = self._error_reply(errors.api_error(), request_id)
            # Saved and replayed for its key like any 500 once execution began, so a retry
            # under that key is a no-op (stripe-python's reading of the header, see faults.py).
            reply.headers[SHOULD_RETRY_HEADER] = "false"
        if idempotent:
            assert idem_key is not None
            self.idempotency.complete(
                api_key,
                idem_key,
                SavedResponse(reply.status, reply.body, dict(reply.headers), request_id),
            )
            reply.headers.update(extra)
        if firing.drop_after():
            reply.drop = True
        return finish(reply)


class Admin(Protocol):
    """What the /_emulator/ surface needs from the emulator."""

    def requests(self) -> list[LoggedRequest]: ...
    def clear_requests(self) -> None: ...
    def invoices(self) -> list[dict[str, Any]]: ...
    def emails(self) -> list[dict[str, Any]]: ...
    def forget_invoice(self, invoice_id: str) -> None: ...
    def add_fault(self, fault: Fault) -> None: ...
    def clear_faults(self) -> None: ...
    def faults(self) -> list[dict[str, Any]]: ...
    def reset(self) -> None: ...
    def expire_idempotency_keys(self) -> None: ...


class EmulatorHTTPServer(TrackingHTTPServer):
    """The /v1 API (``core``) plus the /_emulator/ admin surface (``admin``)."""

    def __init__(self, address: tuple[str, int], core: ApiCore, admin: Admin) -> None:
        self.core = core
        self.admin = admin
        super().__init__(address, self._answer)

    def _answer(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Reply:
        path = urlsplit(target).path
        if path.startswith("/_emulator/"):
            status, payload = _admin(self.admin, method, path, body)
            return Reply(status, {"Content-Type": "application/json"}, _json(payload))
        return self.core.handle(method, target, headers, body)


def _admin(admin: Admin, method: str, path: str, body: bytes) -> tuple[int, Any]:
    route = path.rstrip("/")
    try:
        if route == "/_emulator/requests" and method == "GET":
            return 200, [r.to_dict() for r in admin.requests()]
        if route == "/_emulator/requests" and method == "DELETE":
            admin.clear_requests()
            return 200, {"cleared": True}
        if route == "/_emulator/invoices" and method == "GET":
            return 200, admin.invoices()
        if route == "/_emulator/emails" and method == "GET":
            return 200, admin.emails()
        if route.startswith("/_emulator/invoices/") and method == "DELETE":
            invoice_id = route.removeprefix("/_emulator/invoices/")
            admin.forget_invoice(invoice_id)
            return 200, {"id": invoice_id, "forgotten": True}
        if route == "/_emulator/faults" and method == "GET":
            return 200, admin.faults()
        if route == "/_emulator/faults" and method == "POST":
            data = json.loads(body or b"{}")
            if not isinstance(data, dict):
                raise ValueError("fault body must be a JSON object")
            fault = StripeFault.from_dict(data)
            admin.add_fault(fault)
            return 200, fault.to_dict()
        if route == "/_emulator/faults" and method == "DELETE":
            admin.clear_faults()
            return 200, {"cleared": True}
        if route == "/_emulator/reset" and method == "POST":
            admin.reset()
            return 200, {"reset": True}
        if route == "/_emulator/expire-idempotency-keys" and method == "POST":
            admin.expire_idempotency_keys()
            return 200, {"expired": True}
        if route == "/_emulator/health" and method == "GET":
            return 200, {"ok": True}
        if route == "/_emulator/endpoints" and method == "GET":
            return 200, api.endpoints()
    except (ValueError, TypeError) as exc:
        return 400, {"error": str(exc)}
    except errors.StripeError as exc:  # e.g. an unknown invoice id
        return exc.status, {"error": exc.message}
    return 404, {"error": f"unknown admin endpoint {method} {path}"}
