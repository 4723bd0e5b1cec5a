"""Credentials at rest: sealed with AES-256-GCM under a key derived from billbridge's key.

The key material is the payload codec's (BILLBRIDGE_CODEC_KEY / _FILE, or the embedded dev
key), so one secret protects both, and its absence is the same clear error. Each purpose gets
its own derived key (HKDF), and the connection id is bound as associated data, so a sealed
credential copied to another connection's row does not open.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from billbridge.core.codec_keys import key_id, load_keys
from billbridge.core.config import Settings

PURPOSE = b"billbridge credentials at rest v1"
PREFIX = "sealed:v1"


class SecretError(ValueError):
    """A credential that cannot be opened (other key, tampered, not sealed by billbridge)."""


def _derive(key: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=PURPOSE).derive(key)


class SecretBox:
    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise SecretError("no key to seal credentials with")
        self._keys = {key_id(key): AESGCM(_derive(key)) for key in keys}
        self._current = key_id(keys[0])

    @classmethod
    def from_settings(cls, settings: Settings) -> SecretBox:
        return cls(load_keys(settings))

    def seal(self, secret: str, bound_to: str) -> str:
        nonce = os.urandom(12)
        sealed = self._keys[self._current].encrypt(nonce, secret.encode(), bound_to.encode())
        return f"{PREFIX}:{self._current}:{base64.b64encode(nonce + sealed).decode()}"

    def open(self, token: str, bound_to: str) -> str:
        try:
            prefix_a, prefix_b, kid, body = token.split(":", 3)
        except ValueError as err:
            raise SecretError("stored credential is not sealed by billbridge") from err
        if f"{prefix_a}:{prefix_b}" != PREFIX:
            raise SecretError("stored credential is not sealed by billbridge")
        aead = self._keys.get(kid)
        if aead is None:
            raise SecretError(
                f"the credential of connection {bound_to} was sealed with key id {kid}, which "
                "this process does not have; set BILLBRIDGE_CODEC_KEY (old keys after the "
                "current one) or re-add the connection"
            )
        raw = base64.b64decode(body)
        try:
            return aead.decrypt(raw[:12], raw[12:], bound_to.encode()).decode()
        except InvalidTag as err:
            raise SecretError(f"the credential of connection {bound_to} does not open") from err
