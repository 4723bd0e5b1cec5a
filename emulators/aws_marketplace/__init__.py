"""A local AWS Marketplace Metering Service: BatchMeterUsage and ResolveCustomer over awsJson 1.1,
SigV4-verified with botocore's signer, stateful (products, subscriptions, held records, the
24-hour and month-end window) so that boto3's ``meteringmarketplace`` client cannot tell it from
AWS for what billbridge does.

from billbridge.emulators.aws_marketplace import AwsMarketplaceEmulator

with AwsMarketplaceEmulator() as aws:
    aws.add_product("prod-abc", ["api_calls"])
    aws.subscribe("prod-abc", customer_aws_account_id="123456789012", license_arn=ARN)
    boto3.client("meteringmarketplace", endpoint_url=aws.base_url, ...)
"""

from ..faults import Fault, FaultKind
from .emulator import DEFAULT_ACCESS_KEY_ID, DEFAULT_SECRET_ACCESS_KEY, AwsMarketplaceEmulator
from .errors import AwsError
from .metering import AcceptedRecord, Subscription
from .server import LoggedRequest

__all__ = [
    "DEFAULT_ACCESS_KEY_ID",
    "DEFAULT_SECRET_ACCESS_KEY",
    "AcceptedRecord",
    "AwsError",
    "AwsMarketplaceEmulator",
    "Fault",
    "FaultKind",
    "LoggedRequest",
    "Subscription",
]
