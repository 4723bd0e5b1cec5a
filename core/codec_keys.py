"""Payload encryption keys: where they come from and what they look like.

Shared by the codec (workers/codec.py), which encrypts Temporal payloads with them, and by the
sealed credentials in the store (activities/secrets.py), which are sealed with the same keys.
Keys come from BILLBRIDGE_CODEC_KEY / BILLBRIDGE_CODEC_KEY_FILE, or, on the embedded dev server
only, from `<data dir>/codec.key`, created on first use.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

from billbridge.core.config import Settings

KEY_ENV = "BILLBRIDGE_CODEC_KEY"
KEY_FILE_ENV = "BILLBRIDGE_CODEC_KEY_FILE"
DEV_KEY_FILENAME = "codec.key"
KEY_BYTES = 32
GENERATE_HINT = "generate one with: " + (
    'python -c "import base64,os;print(base64.b64encode(os.urandom(32)).decode())"'
)


class CodecKeyError(ValueError):
    """A configured key is malformed or unreadable (the message names the variable)."""


class CodecKeyMissing(CodecKeyError):
    """No key configured for a Temporal cluster (TEMPORAL_ADDRESS set)."""


def generate_key() -> str:
    """A new key, as the variables expect it: base64 of 32 random bytes."""
    return base64.b64encode(os.urandom(KEY_BYTES)).decode()


def key_id(key: bytes) -> str:
    """A stable, non-secret id for a key: the first 16 hex digits of its SHA-256."""
    return hashlib.sha256(b"billbridge-codec-key-id:" + key).hexdigest()[:16]


def parse_keys(text: str, source: str) -> list[bytes]:
    """Comma-separated base64 keys (current first); errors name `source`, never the key."""
    parts = [part.strip() for part in text.split(",")]
    parts = [part for part in parts if part]
    if not parts:
        raise CodecKeyError(f"{source} holds no key; {GENERATE_HINT}")
    keys: list[bytes] = []
    for position, part in enumerate(parts, start=1):
        which = f"{source}: key {position} of {len(parts)}" if len(parts) > 1 else source
        try:  # standard or URL-safe alphabet; anything else is refused, not skipped
            key = base64.b64decode(part.replace("-", "+").replace("_", "/"), validate=True)
        except (binascii.Error, ValueError):
            raise CodecKeyError(f"{which} is not valid base64; {GENERATE_HINT}") from None
        if len(key) != KEY_BYTES:
            raise CodecKeyError(
                f"{which} decodes to {len(key)} bytes; AES-256-GCM needs exactly {KEY_BYTES} "
                f"(base64 of 32 random bytes); {GENERATE_HINT}"
            )
        keys.append(key)
    return keys


# Addresses of embedded dev servers this process started (or joined) through local_services:
# their Settings carry the filled-in address, yet they keep the embedded key default.
_EMBEDDED_ADDRESSES: dict[str, int] = {}


@contextlib.contextmanager
def embedded_address(address: str) -> Iterator[None]:
    """While open, `load_codec` treats `address` as the embedded dev server (dev key default)."""
    _EMBEDDED_ADDRESSES[address] = _EMBEDDED_ADDRESSES.get(address, 0) + 1
    try:
        yield
    finally:
        _EMBEDDED_ADDRESSES[address] -= 1
        if not _EMBEDDED_ADDRESSES[address]:
            del _EMBEDDED_ADDRESSES[address]


def _uses_embedded_temporal(settings: Settings) -> bool:
    return settings.uses_embedded_temporal or settings.temporal_address in _EMBEDDED_ADDRESSES


def _env(environ: Mapping[str, str], name: str) -> str | None:
    value = environ.get(name, "").strip()
    return value or None


def _dev_keys(data_dir: Path) -> list[bytes]:
    """`<data_dir>/codec.key`: created on first use (0600, atomically), reused after."""
    path = data_dir / DEV_KEY_FILENAME
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=data_dir, prefix=".codec.key.")  # mode 0600
        try:
            with os.fdopen(fd, "w") as out:
                out.write(generate_key() + "\n")
            with contextlib.suppress(FileExistsError):  # another process was first: use its key
                os.link(tmp, path)
        finally:
            os.unlink(tmp)
    return parse_keys(path.read_text(), f"the embedded dev key file {path}")


def load_keys(settings: Settings, environ: Mapping[str, str] = os.environ) -> list[bytes]:
    """The keys, current first, from the variables or (embedded Temporal only) the dev key file."""
    text, path = _env(environ, KEY_ENV), _env(environ, KEY_FILE_ENV)
    if text and path:
        raise CodecKeyError(f"set {KEY_ENV} or {KEY_FILE_ENV}, not both")
    if text:
        return parse_keys(text, KEY_ENV)
    if path:
        try:
            content = Path(path).expanduser().read_text()
        except OSError as err:
            raise CodecKeyError(
                f"{KEY_FILE_ENV}={path} cannot be read: {err.strerror or err}"
            ) from None
        return parse_keys(content, f"{KEY_FILE_ENV} ({path})")
    if _uses_embedded_temporal(settings):
        return _dev_keys(settings.data_dir)
    raise CodecKeyMissing(
        f"TEMPORAL_ADDRESS is set ({settings.temporal_address}) but no payload encryption key "
        f"is configured: set {KEY_ENV} (base64 of 32 bytes; several comma-separated, current "
        f"first, to rotate) or {KEY_FILE_ENV} (a file holding the same), with the same value "
        f"for every billbridge process on that cluster; {GENERATE_HINT}"
    )
