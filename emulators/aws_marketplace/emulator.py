"""The public :class:`AwsMarketplaceEmulator`: BatchMeterUsage and ResolveCustomer, SigV4."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from ..requestlog import RequestLog
from ..serving import EmulatorService
from .metering import AcceptedRecord, Metering, Subscription
from .server import ApiCore, EmulatorHTTPServer, LoggedRequest, SecondWindow

# The emulator's own key pair: not a secret, and deliberately not shaped like a real AWS key
# (those start with AKIA/ASIA), so secret scanners never mistake it for one.
DEFAULT_ACCESS_KEY_ID = "BBEMULATORKEY0000001"
DEFAULT_SECRET_ACCESS_KEY = "billbridge-aws-marketplace-emulator-secret"


class AwsMarketplaceEmulator(EmulatorService[LoggedRequest]):
    """Serve the AWS Marketplace Metering Service (awsJson 1.1 on ``POST /``) on ``host:port``.

    ``keys`` maps the access key ids it knows to their secrets (default: AWS's documented
    example pair); every request must be SigV4-signed by one of them. ``requests_per_second``
    throttles per access key (None: off). The seller's catalogue and buyers are set up in
    process (``add_product``, ``subscribe``, ``unsubscribe``); ``set_now`` moves the clock the
    usage window is judged by (signatures are checked against the wall clock).
    """

    thread_name = "aws-marketplace-emulator"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        keys: Mapping[str, str] | None = None,
        requests_per_second: int | None = None,
    ) -> None:
        log: RequestLog[LoggedRequest] = RequestLog()
        super().__init__(host, port, log)
        self.keys: dict[str, str] = dict(
            keys if keys is not None else {DEFAULT_ACCESS_KEY_ID: DEFAULT_SECRET_ACCESS_KEY}
        )
        self.metering = Metering()
        self._limiter = SecondWindow(requests_per_second)
        self.core = ApiCore(
            metering=self.metering,
            keys=self.keys,
            limiter=self._limiter,
            faults=self._faults,
            log=log,
        )

    def _make_server(self, address: tuple[str, int]) -> EmulatorHTTPServer:
        return EmulatorHTTPServer(address, self.core)

    # -- seller set-up -----------------------------------------------------------------------

    def add_key(self, access_key_id: str, secret_access_key: str) -> None:
        self.keys[access_key_id] = secret_access_key

    def add_product(self, product_code: str, dimensions: Iterable[str]) -> None:
        with self.metering.lock:
            self.metering.products.setdefault(product_code, set()).update(dimensions)

    def subscribe(
        self,
        product_code: str,
        *,
        customer_identifier: str | None = None,
        customer_aws_account_id: str | None = None,
        license_arn: str | None = None,
    ) -> Subscription:
        """A buyer subscribed to a product: legacy (``customer_identifier``), by account with
        the product code, or Concurrent Agreements (``customer_aws_account_id`` +
        ``license_arn``). Re-subscribing an existing buyer makes it active again. Returns the
        subscription (its ``registration_token`` resolves through ResolveCustomer)."""
        if product_code not in self.metering.products:
            raise KeyError(f"unknown product {product_code!r}; add_product first")
        with self.metering.lock:
            for sub in self.metering.subscriptions:
                if (
                    sub.product_code,
                    sub.customer_identifier,
                    sub.customer_aws_account_id,
                    sub.license_arn,
                ) == (
                    product_code,
                    customer_identifier,
                    customer_aws_account_id,
                    license_arn,
                ):
                    sub.active = True
                    return sub
            sub = Subscription(
                product_code, customer_identifier, customer_aws_account_id, license_arn
            )
            self.metering.subscriptions.append(sub)
            return sub

    def unsubscribe(
        self,
        *,
        customer_identifier: str | None = None,
        customer_aws_account_id: str | None = None,
        license_arn: str | None = None,
    ) -> None:
        """The buyer's subscription ends: its records answer CustomerNotSubscribed."""
        with self.metering.lock:
            for sub in self.metering.subscriptions:
                if (
                    (customer_identifier and sub.customer_identifier == customer_identifier)
                    or (license_arn and sub.license_arn == license_arn)
                    or (
                        customer_aws_account_id
                        and not license_arn
                        and sub.customer_aws_account_id == customer_aws_account_id
                    )
                ):
                    sub.active = False

    # -- clock and injected behaviour --------------------------------------------------------

    def set_now(self, moment: datetime | None) -> None:
        """The time the usage window is judged by (aware); None: the wall clock."""
        with self.metering.lock:
            self.metering.set_now(moment)

    def now(self) -> datetime:
        return self.metering.now()

    def leave_unprocessed(self, count: int) -> None:
        """The next ``count`` records received come back in UnprocessedRecords, not metered."""
        with self.metering.lock:
            self.metering.unprocessed_budget += count

    def set_requests_per_second(self, limit: int | None, window_seconds: float = 1.0) -> None:
        """Throttle each access key to ``limit`` requests per ``window_seconds`` (a long window
        makes "the next request is throttled" deterministic in tests); None: off."""
        self._limiter.per_second = limit
        self._limiter.window_seconds = window_seconds
        self._limiter.reset()

    # -- what it holds -----------------------------------------------------------------------

    def accepted(self) -> list[AcceptedRecord]:
        """Every record metered (held), oldest first; idempotent repeats are not repeated."""
        with self.metering.lock:
            return list(self.metering.accepted)

    def reset(self) -> None:
        """No products, buyers, records, requests, faults or throttle history; wall clock.
        The known keys stay."""
        with self.metering.lock:
            self.metering.reset()
        self._log.clear()
        self._faults.clear()
        self._limiter.reset()
