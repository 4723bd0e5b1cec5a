"""HTTP layer: the awsJson 1.1 request pipeline and the admin endpoints under ``/_emulator/``.

Pipeline for ``POST /`` (https://smithy.io/2.0/aws/protocols/aws-json-1_1-protocol.html: the
operation in ``X-Amz-Target: AWSMPMeteringService.<Operation>``, the body JSON with
``Content-Type: application/x-amz-json-1.1``; botocore model metadata ``targetPrefix``
``AWSMPMeteringService``):

1. injected ``drop`` / ``status`` faults (the request is not executed),
2. SigV4 (sigv4.py): missing / malformed header, unknown key, wrong signature,
3. throttling per access key (ThrottlingException),
4. the operation, its body parsed and checked against botocore's model (shapes.py),
5. an injected ``delay``, then execution under the state lock,
6. an injected ``drop_after`` discards the reply.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import traceback
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from ..faults import FaultSet, Firing
from ..requestlog import RequestLog
from ..serving import Reply, TrackingHTTPServer, injected_reply
from . import errors, shapes, sigv4
from .metering import Metering

TARGET_PREFIX = "AWSMPMeteringService."
OPERATIONS = ("BatchMeterUsage", "ResolveCustomer")


@dataclass
class LoggedRequest:
    method: str
    path: str
    target: str | None  # X-Amz-Target
    operation: str | None
    raw_body: str  # the body exactly as received (no secrets travel in it)
    authorization: str | None  # the Authorization header, signature cut
    access_key_id: str | None  # of a verified signature
    status: int  # HTTP status sent; 0 = dropped before a response
    error: str | None  # the __type of an error reply
    fault: str | None  # injected fault kinds that fired
    at: float

    @property
    def body(self) -> Any:
        return json.loads(self.raw_body) if self.raw_body else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class SecondWindow:
    """At most ``per_second`` requests per key in any ``window_seconds`` span (1 s; None: no
    limit). AWS publishes no BatchMeterUsage rate; the limit is the test's choice."""

    def __init__(self, per_second: int | None, window_seconds: float = 1.0) -> None:
        self.per_second = per_second
        self.window_seconds = window_seconds
        self._lock = threading.Lock()
        self._seen: dict[str, deque[float]] = {}

    def allow(self, key: str) -> bool:
        if self.per_second is None:
            return True
        with self._lock:
            now = time.monotonic()
            seen = self._seen.setdefault(key, deque())
            while seen and now - seen[0] >= self.window_seconds:
                seen.popleft()
            if len(seen) >= self.per_second:
                return False
            seen.append(now)
            return True

    def reset(self) -> None:
        with self._lock:
            self._seen.clear()


def _json_reply(status: int, body: Any, request_id: str) -> Reply:
    return Reply(
        status,
        {"Content-Type": errors.CONTENT_TYPE, "x-amzn-RequestId": request_id},
        json.dumps(body).encode(),
    )


class ApiCore:
    def __init__(
        self,
        *,
        metering: Metering,
        keys: dict[str, str],
        limiter: SecondWindow,
        faults: FaultSet,
        log: RequestLog[LoggedRequest],
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.metering = metering
        self.keys = keys
        self.limiter = limiter
        self.faults = faults
        self.log = log
        self._sleep = sleep

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Reply:
        path = urlsplit(target).path
        if path.startswith("/_emulator/"):
            return self._admin(method, path, body)
        request_id = str(uuid.uuid4())
        amz_target = headers.get("x-amz-target")
        entry = LoggedRequest(
            method=method,
            path=path,
            target=amz_target,
            operation=None,
            raw_body=body.decode("utf-8", "replace"),
            authorization=sigv4.redact_authorization(headers.get("authorization")),
            access_key_id=None,
            status=0,
            error=None,
            fault=None,
            at=time.time(),
        )
        firing = Firing(*self.faults.take(method, path), sleep=self._sleep)

        def finish(reply: Reply) -> Reply:
            firing.apply_delay()
            firing.record(entry, reply.status, reply.drop)
            self.log.append(entry)
            return reply

        fault = firing.instead()
        if fault is not None:

            def render(status: int, message: str | None) -> Reply:
                injected = errors.for_injected_status(status, message)
                entry.error = injected.type_name
                return injected.reply(request_id)

            return finish(injected_reply(fault, render))
        try:
            reply = self._api(method, path, headers, body, entry, firing, request_id)
        except errors.AwsError as err:
            entry.error = err.type_name
            reply = err.reply(request_id)
        except Exception:  # an emulator bug: answer as AWS's 500, trace on stderr
            traceback.print_exc(file=sys.stderr)
            failure = errors.internal()
            entry.error = failure.type_name
            reply = failure.reply(request_id)
        if firing.drop_after():
            reply.drop = True
        return finish(reply)

    def _api(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str],
        body: bytes,
        entry: LoggedRequest,
        firing: Firing,
        request_id: str,
    ) -> Reply:
        if method != "POST" or path != "/":
            raise errors.AwsError(
                "UnknownOperationException", f"No operation at {method} {path}", 404
            )
        signer = sigv4.verify(
            method,
            f"http://{headers.get('host', '')}",
            path,
            headers,
            body,
            self.keys,
            datetime.now(UTC),
        )
        entry.access_key_id = signer.access_key_id
        if not self.limiter.allow(signer.access_key_id):
            raise errors.throttling()
        target = headers.get("x-amz-target", "")
        operation = target.removeprefix(TARGET_PREFIX)
        if not target.startswith(TARGET_PREFIX) or operation not in OPERATIONS:
            raise errors.unknown_operation(target)
        entry.operation = operation
        if not headers.get("content-type", "").startswith(errors.CONTENT_TYPE):
            # UNCONFIRMED: what AWS answers a JSON body sent under another content type.
            raise errors.serialization(f"Content-Type must be {errors.CONTENT_TYPE}")
        try:
            parsed = json.loads(body or b"{}")
        except ValueError:
            raise errors.serialization("The request body is not valid JSON") from None
        shapes.check_input(operation, parsed)
        firing.apply_delay()
        with self.metering.lock:
            if operation == "BatchMeterUsage":
                result = self.metering.batch_meter_usage(parsed)
            else:
                result = self.metering.resolve_customer(parsed)
        return _json_reply(200, result, request_id)

    # -- admin -------------------------------------------------------------------------------

    def _admin(self, method: str, path: str, body: bytes) -> Reply:
        rid = "emulator"
        try:
            data = json.loads(body) if body else {}
        except ValueError:
            return _json_reply(400, {"error": "body must be JSON"}, rid)
        with self.metering.lock:
            if method == "GET" and path == "/_emulator/accepted":
                return _json_reply(200, [r.to_json() for r in self.metering.accepted], rid)
            if method == "GET" and path == "/_emulator/requests":
                return _json_reply(200, [e.to_dict() for e in self.log.snapshot()], rid)
            if method == "POST" and path == "/_emulator/reset":
                self.metering.reset()
                self.log.clear()
                self.faults.clear()
                self.limiter.reset()
                return _json_reply(200, {"reset": True}, rid)
            if method == "POST" and path == "/_emulator/now":
                now = data.get("now")
                self.metering.set_now(datetime.fromisoformat(now) if now else None)
                return _json_reply(200, {"now": self.metering.now().isoformat()}, rid)
            if method == "POST" and path == "/_emulator/products":
                code = str(data["product_code"])
                self.metering.products.setdefault(code, set()).update(data.get("dimensions", []))
                return _json_reply(200, {"product_code": code}, rid)
        return _json_reply(404, {"error": f"no admin endpoint {method} {path}"}, rid)


class EmulatorHTTPServer(TrackingHTTPServer):
    def __init__(self, address: tuple[str, int], core: ApiCore) -> None:
        self.core = core
        super().__init__(address, core.handle)
