"""Connecting to Temporal the way every billbridge process must: same namespace, same converter."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter


async def connect(address: str, namespace: str = "default") -> Client:
    # pydantic models (with Decimal money) cross history as JSON through this converter.
    return await Client.connect(
        address, namespace=namespace, data_converter=pydantic_data_converter
    )
