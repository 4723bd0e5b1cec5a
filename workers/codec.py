"""Payload encryption: every payload billbridge puts in Temporal's history is AES-256-GCM sealed.

Invoices carry customer names and e-mail addresses, and Temporal stores workflow and activity
inputs and results (payloads) in its database. `EncryptionCodec` encrypts each payload, whole
(metadata and data), with the current key and marks it `encoding: binary/encrypted` plus the
`encryption-key-id` it used; decoding picks the key by that id, so a key can be rotated: put the
new key first and keep the old ones after it until no running or retained history needs them.

Keys (base64 of 32 random bytes, several comma-separated: current first, then old ones):

- `BILLBRIDGE_CODEC_KEY`, or `BILLBRIDGE_CODEC_KEY_FILE` naming a file that holds the same text;
- neither set, on the embedded dev server (`TEMPORAL_ADDRESS` unset): `<data dir>/codec.key`,
  created (mode 0600) on first use and reused after;
- neither set with `TEMPORAL_ADDRESS` set: `CodecKeyMissing`. Production never runs unencrypted.

Search attributes are not payload data and stay readable (by design, the UI filters on them).
Generate a key with:
    python -c "import base64,os;print(base64.b64encode(os.urandom(32)).decode())"
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import (
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    PayloadCodec,
)

from billbridge.core.codec_keys import (
    DEV_KEY_FILENAME,
    KEY_BYTES,
    KEY_ENV,
    KEY_FILE_ENV,
    CodecKeyError,
    CodecKeyMissing,
    embedded_address,
    generate_key,
    key_id,
    load_keys,
    parse_keys,
)
from billbridge.core.config import Settings

__all__ = [
    "DEV_KEY_FILENAME",
    "ENCODING",
    "KEY_ENV",
    "KEY_FILE_ENV",
    "KEY_ID_METADATA",
    "TOKEN_ENV",
    "CodecKeyError",
    "CodecKeyMissing",
    "EncryptionCodec",
    "PayloadDecryptionError",
    "data_converter",
    "decode_message_payloads",
    "embedded_address",
    "generate_key",
    "load_codec",
    "parse_keys",
]

ENCODING = b"binary/encrypted"
KEY_ID_METADATA = "encryption-key-id"
TOKEN_ENV = "BILLBRIDGE_CODEC_TOKEN"
NONCE_BYTES = 12


class PayloadDecryptionError(ValueError):
    """An encrypted payload this process cannot decrypt (unknown key id, or tampered data)."""


class EncryptionCodec(PayloadCodec):
    """AES-256-GCM over whole serialized payloads; encodes with keys[0], decodes with any."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        super().__init__()
        if not keys:
            raise CodecKeyError(f"EncryptionCodec needs at least one key; set {KEY_ENV}")
        for key in keys:
            if len(key) != KEY_BYTES:
                raise CodecKeyError(f"an AES-256-GCM key must be {KEY_BYTES} bytes, not {len(key)}")
        self._ciphers = {key_id(key): AESGCM(key) for key in keys}
        self.key_id = key_id(keys[0])
        self._current = self._ciphers[self.key_id]

    @property
    def key_ids(self) -> list[str]:
        """Every key id this codec decodes, current first."""
        return list(self._ciphers)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return self.encode_sync(payloads)

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return self.decode_sync(payloads)

    def encode_sync(self, payloads: Iterable[Payload]) -> list[Payload]:
        return [self._encrypt(payload) for payload in payloads]

    def decode_sync(self, payloads: Iterable[Payload]) -> list[Payload]:
        return [self._decrypt(payload) for payload in payloads]

    def _encrypt(self, payload: Payload) -> Payload:
        nonce = os.urandom(NONCE_BYTES)
        kid = self.key_id.encode()
        # The key id is authenticated too: a payload relabelled with another id fails to decode.
        sealed = self._current.encrypt(nonce, payload.SerializeToString(), kid)
        return Payload(
            metadata={"encoding": ENCODING, KEY_ID_METADATA: kid},
            data=nonce + sealed,
        )

    def _decrypt(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload  # not ours (recorded before encryption, or a search attribute)
        kid = payload.metadata.get(KEY_ID_METADATA, b"").decode(errors="replace")
        cipher = self._ciphers.get(kid)
        if cipher is None:
            raise PayloadDecryptionError(
                f"payload encrypted with key id {kid or '(none)'}, which this process does not "
                f"have (it has {', '.join(self._ciphers)}); set {KEY_ENV} (or {KEY_FILE_ENV}) to "
                "include the key that encrypted it, after the current one"
            )
        data = payload.data
        try:
            clear = cipher.decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], kid.encode())
        except InvalidTag:
            raise PayloadDecryptionError(
                f"payload encrypted with key id {kid} failed authentication: it was altered or "
                "truncated after encryption"
            ) from None
        return Payload.FromString(clear)


def load_codec(settings: Settings, environ: Mapping[str, str] = os.environ) -> EncryptionCodec:
    """The codec every billbridge process connected to `settings`' Temporal must use."""
    return EncryptionCodec(load_keys(settings, environ))


def data_converter(codec: PayloadCodec | None) -> DataConverter:
    """billbridge's converter (pydantic JSON), encrypted by `codec` when given."""
    if codec is None:
        return pydantic_data_converter
    # Failure messages and stack traces go through the codec too: a provider's error text can
    # quote what it was sent (a name, an e-mail), and failures are kept in history.
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=codec,
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


async def decode_message_payloads(message: Message, codec: PayloadCodec) -> None:
    """Decode, in place, every Payload anywhere inside a protobuf message (e.g. a History).

    Payloads the codec does not recognise (unencrypted ones, search attributes) stay as they are.
    """
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        if field.message_type.full_name == Payload.DESCRIPTOR.full_name:
            items = list(value) if field.is_repeated else [value]
            for item, decoded in zip(items, await codec.decode(items), strict=True):
                if decoded is not item:
                    item.CopyFrom(decoded)
        elif field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            if value_field.message_type is None:
                continue
            for entry in value.values():
                if value_field.message_type.full_name == Payload.DESCRIPTOR.full_name:
                    (decoded,) = await codec.decode([entry])
                    if decoded is not entry:
                        entry.CopyFrom(decoded)
                else:
                    await decode_message_payloads(entry, codec)
        elif field.is_repeated:
            for item in value:
                await decode_message_payloads(item, codec)
        else:
            await decode_message_payloads(value, codec)
