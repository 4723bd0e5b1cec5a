"""The public :class:`AzureMarketplaceEmulator`: Entra ID's token endpoint and the Azure
Marketplace metering API (usageEvent, batchUsageEvent, usageEvents) on one port.

Pipeline of every request, in order:

1. ``/_emulator/...`` admin endpoints (not logged, never faulted);
2. injected ``drop`` / ``status`` faults (the request is not executed);
3. Entra ID: OpenID discovery and the token endpoint (entra.py);
4. metering API: ``api-version``, the bearer token (issued here, unexpired, audience the
   marketplace resource), then the rules (metering.py);
5. an injected ``delay`` before the reply, ``drop_after`` discards the executed reply.

Metering API source: https://learn.microsoft.com/partner-center/marketplace/marketplace-metering-service-apis
("the page"); its OpenAPI model: github.com/microsoft/commercial-marketplace-openapi,
Microsoft.Marketplace.Metering/2018-08-31/meteringapi.v1.json ("the model").
"""

from __future__ import annotations

import sys
import time
import traceback
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from ..faults import Fault, Firing
from ..serving import EmulatorService, Reply, injected_reply
from .entra import DEFAULT_TOKEN_LIFETIME, MARKETPLACE_RESOURCE_ID, EntraId
from .metering import (
    API_VERSION,
    MAX_BATCH,
    NO_MESSAGE_TIME,
    SUBSCRIBED,
    SUBSCRIPTION_STATES,
    AcceptedEvent,
    Metering,
    Outcome,
    Subscription,
    parse_time,
)
from .requestlog import (
    BodyError,
    LoggedRequest,
    RequestLog,
    dumps,
    loads,
    redact,
    redact_authorization,
)
from .tls import DualProtocolServer, EmulatorCertificates, serving_tls

DEFAULT_TENANT_ID = "72f988bf-0000-4000-8000-00000000b111"
DEFAULT_CLIENT_ID = "b111b111-0000-4000-8000-00000000c1e7"
DEFAULT_CLIENT_SECRET = "billbridge-azure-emulator-secret"  # a well-known test value
JSON = "application/json; charset=utf-8"


def json_reply(status: int, body: Any, headers: Mapping[str, str] | None = None) -> Reply:
    return Reply(status, {"Content-Type": JSON, **(headers or {})}, dumps(body))


def bad_argument(message: str, details: list[dict[str, str]]) -> dict[str, Any]:
    """The page's 400 shape: {message, target, details: [{message, target, code}], code}."""
    return {
        "message": message,
        "target": "usageEventRequest",
        "details": details,
        "code": "BadArgument",
    }


def _api_error(status: int, message: str | None) -> Reply:
    """An injected status on the metering API. UNCONFIRMED: the bodies of 429 and 5xx (the page
    documents none); the {code, message} shape of its other errors is used."""
    code = {429: "TooManyRequests", 403: "Forbidden", 401: "Unauthorized"}.get(
        status, "InternalServerError" if status >= 500 else "BadArgument"
    )
    return json_reply(status, {"code": code, "message": message or f"Injected HTTP {status}."})


def _token_error(status: int, message: str | None) -> Reply:
    """An injected status on Entra's endpoints, as an OAuth error body (what MSAL reads).
    UNCONFIRMED: Entra's exact body on 429/5xx."""
    error = "temporarily_unavailable" if status in (429, 503) else "server_error"
    if status < 500 and status != 429:
        error = "invalid_request"
    return json_reply(
        status, {"error": error, "error_description": message or f"Injected HTTP {status}."}
    )


class AzureMarketplaceEmulator(EmulatorService[LoggedRequest]):
    """Serve Entra ID (https) and the metering API (http and https) on ``host:port``.

    One publisher app is registered: ``tenant_id`` / ``client_id`` / ``client_secret`` (more
    with `register_app`). Its client authenticates with azure-identity against the authority
    ``https://127.0.0.1:PORT`` (``authority_url``), trusting ``ca_file``, with instance
    discovery off. Subscriptions are set up in process (`add_subscription`) or with
    ``POST /_emulator/subscriptions``. The clock is the wall clock until `set_now`.
    """

    thread_name = "azure-marketplace-emulator"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        tenant_id: str = DEFAULT_TENANT_ID,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        token_lifetime: timedelta = DEFAULT_TOKEN_LIFETIME,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(host, port, RequestLog())
        self.tenant_id = tenant_id
        self.client_id = client_id
        self.client_secret = client_secret
        self._fixed_now: datetime | None = None
        self._sleep = sleep
        self.certificates = EmulatorCertificates()
        self.entra = EntraId(self.now, token_lifetime)
        self.entra.register_app(tenant_id, client_id, client_secret)
        self.metering = Metering()

    # -- serving -------------------------------------------------------------------------------

    def _make_server(self, address: tuple[str, int]) -> DualProtocolServer:
        return DualProtocolServer(address, self.answer, self.certificates.server_context())

    def stop(self) -> None:
        super().stop()
        self.certificates.remove_ca_file()

    @property
    def authority_url(self) -> str:
        """What azure-identity takes as `authority` (https; the tenant is added by it)."""
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca_file(self) -> str:
        """A PEM file of the CA that signed the emulator's certificate."""
        return self.certificates.ca_file()

    def client_env(self) -> dict[str, str]:
        """The variables that point billbridge's Azure client here
        (activities/marketplaces/azure.py, azure_endpoints)."""
        return {
            "AZURE_MARKETPLACE_ENDPOINT": self.base_url,
            "AZURE_AUTHORITY_HOST": self.authority_url,
            "AZURE_MARKETPLACE_CA_BUNDLE": self.ca_file,
        }

    # -- the clock -----------------------------------------------------------------------------

    def now(self) -> datetime:
        return self._fixed_now or datetime.now(UTC)

    def set_now(self, moment: datetime | None) -> None:
        """Fix the emulator's clock (tz-aware; None: back to the wall clock)."""
        if moment is not None and moment.tzinfo is None:
            raise ValueError("set_now needs a timezone-aware datetime")
        self._fixed_now = moment.astimezone(UTC) if moment else None

    # -- setup ---------------------------------------------------------------------------------

    def register_app(self, tenant_id: str, client_id: str, client_secret: str) -> None:
        self.entra.register_app(tenant_id, client_id, client_secret)

    def add_subscription(
        self,
        resource_id: str,
        plan_id: str,
        dimensions: list[str] | tuple[str, ...] | frozenset[str],
        status: str = SUBSCRIBED,
        *,
        client_id: str | None = None,
        offer_id: str = "billbridge-offer",
    ) -> None:
        """A SaaS subscription (resource id) on a plan whose custom dimensions are these."""
        if status not in SUBSCRIPTION_STATES:
            raise ValueError(f"status must be one of {SUBSCRIPTION_STATES}")
        with self.metering.lock:
            self.metering.subscriptions[resource_id.lower()] = Subscription(
                resource_id, plan_id, frozenset(dimensions), status, client_id, offer_id
            )

    def set_subscription_status(self, resource_id: str, status: str) -> None:
        if status not in SUBSCRIPTION_STATES:
            raise ValueError(f"status must be one of {SUBSCRIPTION_STATES}")
        with self.metering.lock:
            self.metering.subscriptions[resource_id.lower()].status = status

    def expire_tokens(self) -> None:
        """Every access token issued so far is expired now."""
        self.entra.expire_tokens()

    # -- what was accepted -----------------------------------------------------------------------

    def accepted(self) -> list[dict[str, Any]]:
        """Every accepted usage event, oldest first (quantity a Decimal, as Azure holds it)."""
        with self.metering.lock:
            return [event.to_dict() for event in self.metering.order]

    def reset(self) -> None:
        """No events, tokens, requests or faults; subscriptions and apps stay."""
        self.metering.reset_events()
        self.entra.reset_tokens()
        self._log.clear()
        self._faults.clear()

    # -- the request pipeline --------------------------------------------------------------------

    def answer(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Reply:
        split = urlsplit(target)
        path = unquote(split.path)
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        if path.startswith("/_emulator/"):
            return self._admin(method, path, body)
        entry = LoggedRequest(
            method=method,
            path=path,
            query=query,
            body=redact(_logged_body(headers, body)),
            authorization=redact_authorization(headers.get("authorization")),
            tls=serving_tls(),
            request_id=headers.get("x-ms-requestid"),
            correlation_id=headers.get("x-ms-correlationid"),
            status=0,
            fault=None,
            at=time.time(),
            arrived=self._log.tick(),
        )
        firing = Firing(*self._faults.take(method, path), sleep=self._sleep)
        is_api = path.startswith("/api/")

        def finish(reply: Reply) -> Reply:
            firing.apply_delay()
            if is_api:
                # The page: x-ms-requestid / x-ms-correlationid are generated when not sent
                # and "provided in the response headers".
                reply.headers["x-ms-requestid"] = headers.get("x-ms-requestid") or str(uuid.uuid4())
                reply.headers["x-ms-correlationid"] = headers.get("x-ms-correlationid") or str(
                    uuid.uuid4()
                )
            firing.record(entry, reply.status, reply.drop)
            entry.completed = self._log.tick()
            self._log.append(entry)
            return reply

        fault = firing.instead()
        if fault is not None:
            return finish(injected_reply(fault, _api_error if is_api else _token_error))
        try:
            reply = self._route(method, path, query, headers, body)
        except Exception:  # an emulator bug: a 500, the trace on stderr
            traceback.print_exc(file=sys.stderr)
            reply = _api_error(500, "The emulator failed.")
        if firing.drop_after():
            reply.drop = True
        return finish(reply)

    def _route(
        self,
        method: str,
        path: str,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        body: bytes,
    ) -> Reply:
        parts = path.strip("/").split("/")
        # Entra ID: /{tenant}/v2.0/.well-known/openid-configuration, /{tenant}/oauth2/v2.0/token
        if len(parts) == 4 and parts[1:] == ["v2.0", ".well-known", "openid-configuration"]:
            if method != "GET":
                return _token_error(405, "Use GET.")
            base = f"https://{headers.get('host', f'127.0.0.1:{self.port}')}"
            return json_reply(200, self.entra.openid_configuration(base, parts[0]))
        if len(parts) == 4 and parts[1:] == ["oauth2", "v2.0", "token"]:
            if method != "POST":
                return _token_error(405, "Use POST.")
            answer = self.entra.token(parts[0], body)
            return json_reply(answer.status, answer.body, {"Cache-Control": "no-store"})
        routes: dict[tuple[str, str], Callable[[Mapping[str, str], bytes, str], Reply]] = {
            ("POST", "/api/usageEvent"): self._usage_event,
            ("POST", "/api/batchUsageEvent"): self._batch_usage_event,
            ("GET", "/api/usageEvents"): self._usage_events,
        }
        handler = routes.get((method, path))
        if handler is None:
            return json_reply(404, {"code": "NotFound", "message": f"No resource at {path}."})
        if query.get("api-version") != API_VERSION:
            return json_reply(
                400,
                bad_argument(
                    "One or more errors have occurred.",
                    [
                        {
                            "message": f"The api-version must be {API_VERSION}.",
                            "target": "api-version",
                            "code": "BadArgument",
                        }
                    ],
                ),
            )
        client_id = self._authenticate(headers.get("authorization"))
        if client_id is None:
            # The page: "403 Forbidden. The authorization token isn't provided, is invalid or
            # expired." UNCONFIRMED: the body.
            return json_reply(
                403,
                {
                    "code": "Forbidden",
                    "message": "The authorization token isn't provided, is invalid or expired.",
                },
            )
        return handler(query, body, client_id)

    def _authenticate(self, header: str | None) -> str | None:
        """The client id of a valid bearer token for the marketplace resource, else None."""
        scheme, _, token = (header or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        issued = self.entra.lookup(token.strip())
        if issued is None or issued.expires_at <= self.now():
            return None
        if issued.audience not in (MARKETPLACE_RESOURCE_ID, f"api://{MARKETPLACE_RESOURCE_ID}"):
            return None
        return issued.client_id

    # -- metering endpoints ----------------------------------------------------------------------

    def _usage_event(self, query: Mapping[str, str], body: bytes, client_id: str) -> Reply:
        try:
            item = loads(body)
        except BodyError as err:
            return json_reply(
                400,
                bad_argument(
                    "The request body is not JSON.",
                    [_detail(str(err), "usageEventRequest", "BadArgument")],
                ),
            )
        outcome = self.metering.emit(item, self.now(), client_id)
        if outcome.status == "Accepted" and outcome.accepted is not None:
            return json_reply(200, outcome.accepted.message("Accepted"))
        if outcome.status == "Duplicate" and outcome.accepted is not None:
            # The page: 409 {"additionalInfo": {"acceptedMessage": {...}}, "message": "This
            # usage event already exist.", "code": "Conflict"}.
            return json_reply(409, _conflict(outcome.accepted))
        if outcome.status == "ResourceNotAuthorized":
            # The page: 403 when the subscription's offer was published with another app id.
            return json_reply(403, {"code": "Forbidden", "message": outcome.message})
        # The page: 400 for invalid data, an expired event, a subscription not Subscribed.
        # UNCONFIRMED: the detail's code (the batch status is used).
        return json_reply(
            400,
            bad_argument(
                "One or more errors have occurred.",
                [_detail(outcome.message, outcome.target or "usageEventRequest", outcome.status)],
            ),
        )

    def _batch_usage_event(self, query: Mapping[str, str], body: bytes, client_id: str) -> Reply:
        try:
            parsed = loads(body)
        except BodyError as err:
            return json_reply(
                400,
                bad_argument(
                    "The request body is not JSON.",
                    [_detail(str(err), "batchUsageEventRequest", "BadArgument")],
                ),
            )
        items = parsed.get("request") if isinstance(parsed, dict) else None
        if not isinstance(items, list) or not items:
            # The model: request minItems 1.
            return json_reply(
                400,
                bad_argument(
                    "One or more errors have occurred.",
                    [_detail("The request list is required.", "request", "BadArgument")],
                ),
            )
        if len(items) > MAX_BATCH:
            # The page: "400 Bad request. The batch contained more than 25 usage events."
            return json_reply(
                400,
                bad_argument(
                    "One or more errors have occurred.",
                    [
                        _detail(
                            f"The batch contained more than {MAX_BATCH} usage events.",
                            "request",
                            "BadArgument",
                        )
                    ],
                ),
            )
        now = self.now()
        results = [_batch_item(self.metering.emit(item, now, client_id)) for item in items]
        return json_reply(200, {"count": len(results), "result": results})

    def _usage_events(self, query: Mapping[str, str], body: bytes, client_id: str) -> Reply:
        start = parse_time(query.get("usageStartDate"))
        if start is None:
            return json_reply(
                400,
                bad_argument(
                    "One or more errors have occurred.",
                    [_detail("The usageStartDate is required.", "usageStartDate", "BadArgument")],
                ),
            )
        end = parse_time(query.get("usageEndDate")) or self.now()
        rows = self.metering.usage_events(start, end, dict(query))
        return json_reply(200, rows)

    # -- admin -------------------------------------------------------------------------------------

    def _admin(self, method: str, path: str, body: bytes) -> Reply:
        if (method, path) == ("GET", "/_emulator/accepted"):
            return json_reply(200, self.accepted())
        if (method, path) == ("GET", "/_emulator/requests"):
            return json_reply(200, [entry.to_dict() for entry in self.requests()])
        if (method, path) == ("GET", "/_emulator/ca.pem"):
            return Reply(200, {"Content-Type": "application/x-pem-file"}, self.certificates.ca_pem)
        try:
            data = loads(body) if body else {}
            if (method, path) == ("POST", "/_emulator/subscriptions"):
                self.add_subscription(
                    data["resourceId"],
                    data["planId"],
                    data.get("dimensions", []),
                    data.get("status", SUBSCRIBED),
                )
                return json_reply(200, {"ok": True})
            if (method, path) == ("POST", "/_emulator/clock"):
                self.set_now(parse_time(data.get("now")) if data.get("now") else None)
                return json_reply(200, {"now": self.now().isoformat()})
            if (method, path) == ("POST", "/_emulator/faults"):
                self.add_fault(Fault.from_dict(data))
                return json_reply(200, {"faults": self.faults()})
            if (method, path) == ("POST", "/_emulator/reset"):
                self.reset()
                return json_reply(200, {"ok": True})
        except (BodyError, KeyError, ValueError, TypeError) as err:
            return json_reply(400, {"code": "BadArgument", "message": str(err)})
        return json_reply(404, {"code": "NotFound", "message": f"No admin endpoint {path}."})


def _detail(message: str, target: str, code: str) -> dict[str, str]:
    return {"message": message, "target": target, "code": code}


def _conflict(held: AcceptedEvent) -> dict[str, Any]:
    return {
        "additionalInfo": {"acceptedMessage": held.message("Duplicate")},
        "message": "This usage event already exist.",
        "code": "Conflict",
    }


def _batch_item(outcome: Outcome) -> dict[str, Any]:
    """One `result` item. Accepted: the accepted message. Duplicate: the page's example
    (status, messageTime 0001-01-01T00:00:00, error = the 409 body with the accepted message,
    then the request's fields). Other statuses: the same shape with error {message, code};
    UNCONFIRMED (the page shows no example of them)."""
    if outcome.status == "Accepted" and outcome.accepted is not None:
        return outcome.accepted.message("Accepted")
    if outcome.status == "Duplicate" and outcome.accepted is not None:
        error = _conflict(outcome.accepted)
    else:
        error = {"message": outcome.message, "code": outcome.status}
    return {
        "status": outcome.status,
        "messageTime": NO_MESSAGE_TIME,
        "error": error,
        **outcome.echo,
    }


def _logged_body(headers: Mapping[str, str], body: bytes) -> Any:
    if not body:
        return None
    content_type = headers.get("content-type", "").lower()
    text = body.decode("utf-8", "replace")
    if "x-www-form-urlencoded" in content_type:
        return dict(parse_qsl(text, keep_blank_values=True))
    try:
        return loads(body)
    except BodyError:
        return text


__all__ = ["AzureMarketplaceEmulator"]
