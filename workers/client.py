"""Connecting to Temporal the way every billbridge process must: same namespace, same converter."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.converter import PayloadCodec

from billbridge.workers.codec import data_converter


async def connect(
    address: str, namespace: str = "default", *, codec: PayloadCodec | None = None
) -> Client:
    """A client with billbridge's data converter.

    pydantic models (with Decimal money) cross history as JSON through that converter; with
    `codec` (`billbridge.workers.codec.load_codec(settings)`), every payload is encrypted too.
    Every process on one cluster must use the same keys.
    """
    return await Client.connect(address, namespace=namespace, data_converter=data_converter(codec))
