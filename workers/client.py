"""Connecting to Temporal the way every billbridge process must: same namespace, same converter."""

from __future__ import annotations

import asyncio
import time

from temporalio.client import Client
from temporalio.converter import PayloadCodec

from billbridge.workers.codec import data_converter

# How long a frontend that is still starting is waited for.
STARTING_SERVER_WAIT = 15.0


class TemporalUnreachable(RuntimeError):
    """No Temporal frontend answered at `address`; str() is the SDK's reason.

    A RuntimeError, as the SDK's own connect failure is, so callers that caught that still do.
    """

    def __init__(self, address: str, namespace: str, reason: str) -> None:
        super().__init__(reason)
        self.address = address
        self.namespace = namespace


async def connect(
    address: str, namespace: str = "default", *, codec: PayloadCodec | None = None
) -> Client:
    """A client with billbridge's data converter.

    pydantic models (with Decimal money) cross history as JSON through that converter; with
    `codec` (`billbridge.workers.codec.load_codec(settings)`), every payload is encrypted too.
    Every process on one cluster must use the same keys. Raises TemporalUnreachable (with the
    address, for the operator's message) when nothing answers there.
    """
    deadline = time.monotonic() + STARTING_SERVER_WAIT
    while True:
        try:
            return await Client.connect(
                address, namespace=namespace, data_converter=data_converter(codec)
            )
        except RuntimeError as err:
            # A server that listens but whose frontend is still starting (a dev server just
            # launched) answers "Frontend is not healthy yet": wait for it a little.
            if "not healthy yet" in str(err) and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
                continue
            raise TemporalUnreachable(address, namespace, str(err)) from err
