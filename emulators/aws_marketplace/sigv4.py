"""SigV4 checks of the Authorization header, the signature recomputed with botocore's own signer.

Header form (https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html):
``AWS4-HMAC-SHA256 Credential=<AKID>/<yyyymmdd>/<region>/<service>/aws4_request,
SignedHeaders=<h1;h2;...>, Signature=<hex>`` with ``X-Amz-Date: yyyymmddTHHMMSSZ``. The signing
name of this API is ``aws-marketplace`` (botocore model metadata ``signingName``). The signature is
recomputed over exactly the signed headers with botocore.auth.SigV4Auth (canonical request,
string to sign, signing key), so the emulator agrees with boto3 by construction and a body,
header or secret changed in transit is refused.

AWS refuses a request whose X-Amz-Date is more than 5 minutes off its clock
(https://docs.aws.amazon.com/IAM/latest/UserGuide/signature-v4-troubleshooting.html
"Signature expired"); that check uses the wall clock, not the emulator's business clock
(``set_now``), because boto3 signs with the wall clock.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from . import errors

SIGNING_NAME = "aws-marketplace"
ALGORITHM = "AWS4-HMAC-SHA256"
MAX_SKEW = timedelta(minutes=5)
_AUTH = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential=(?P<credential>[^,\s]+)\s*,\s*"
    r"SignedHeaders=(?P<signed>[^,\s]+)\s*,\s*Signature=(?P<signature>[0-9a-f]{64})\s*$"
)


@dataclass(frozen=True)
class Signer:
    """Who signed a verified request."""

    access_key_id: str
    region: str


def verify(
    method: str,
    host_url: str,
    path: str,
    headers: Mapping[str, str],
    body: bytes,
    keys: Mapping[str, str],
    wall_now: datetime,
) -> Signer:
    """The signer of a correctly signed request; raises AwsError otherwise.

    ``headers`` have lower-cased names; ``keys`` maps access key ids to secret keys;
    ``host_url`` is ``http://<host header>`` (the canonical request takes the path from it).
    """
    header = headers.get("authorization")
    if not header:
        raise errors.missing_authentication()
    match = _AUTH.match(header.strip())
    if match is None:
        if not header.startswith(ALGORITHM):
            raise errors.incomplete_signature(
                f"Authorization header requires the {ALGORITHM} algorithm."
            )
        raise errors.incomplete_signature(
            "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders'."
        )
    parts = match["credential"].split("/")
    if len(parts) != 5 or parts[4] != "aws4_request":
        raise errors.incomplete_signature(
            "Credential is not <key>/<date>/<region>/<service>/aws4_request."
        )
    access_key, date, region, service, _ = parts
    secret = keys.get(access_key)
    if secret is None:
        raise errors.unrecognized_client()
    if service != SIGNING_NAME:
        raise errors.invalid_signature(
            f"Credential should be scoped to correct service: '{SIGNING_NAME}'."
        )
    amz_date = headers.get("x-amz-date", "")
    try:
        signed_at = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise errors.incomplete_signature("X-Amz-Date is missing or malformed.") from None
    if amz_date[:8] != date:
        raise errors.invalid_signature("Date in Credential scope does not match X-Amz-Date.")
    if abs(wall_now - signed_at) > MAX_SKEW:
        raise errors.invalid_signature(
            f"Signature expired: {amz_date} is now earlier than or later than the 5 minutes "
            "allowed."
        )
    signed = match["signed"].split(";")
    # "The host and x-amz-date headers are always required" in the signed headers
    # (https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html, step 1).
    if not {"host", "x-amz-date"} <= set(signed) or any(name not in headers for name in signed):
        raise errors.invalid_signature(
            "SignedHeaders must include host and x-amz-date, and name only headers present "
            "in the request."
        )
    request = AWSRequest(
        method=method,
        url=host_url + path,
        headers={name: headers[name] for name in signed},
        data=body,
    )
    request.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(access_key, secret), SIGNING_NAME, region)
    if signer.signed_headers(signer.headers_to_sign(request)) != ";".join(sorted(signed)):
        raise errors.invalid_signature()
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    if not hmac.compare_digest(expected, match["signature"]):
        raise errors.invalid_signature()
    return Signer(access_key, region)


def redact_authorization(header: str | None) -> str | None:
    """The header with its signature cut to 6 characters (the access key id is an identifier,
    not a secret, and stays readable)."""
    if header is None:
        return None
    return re.sub(r"Signature=([0-9a-f]{6})[0-9a-f]*", r"Signature=\1…", header)
