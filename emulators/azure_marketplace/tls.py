"""TLS for the emulator's Entra ID endpoints: a throwaway CA and a server certificate for
127.0.0.1 / localhost, made at start, and a server that speaks TLS and plain HTTP on one port.

Why TLS at all: azure-identity refuses an authority that is not https ("The value must be a TLS
protected (https) URL": azure/identity/_internal/utils.py, normalize_authority), and MSAL
refuses one as well (msal/authority.py, canonicalize: "an https url with hostname"). So the
token endpoint must be reached over https, and the client trusts the emulator's CA through
azure-core's `connection_verify` (a PEM file), never through a process-wide CA variable.

Why both on one port: the metering API stays reachable at the registry's plain
``http://127.0.0.1:12122`` (core/marketplaces.py, `emulator_url`), and the same port answers
``https://127.0.0.1:12122/{tenant}/oauth2/v2.0/token``. The first byte a client sends tells
which: 0x16 opens a TLS handshake (RFC 8446 5.1, ContentType handshake = 22); an HTTP request
starts with a method name.

A CA plus a separate leaf (not one self-signed leaf) so strict verifiers (OpenSSL 3 with
VERIFY_X509_STRICT, the default from Python 3.13) accept the chain.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import ssl
import tempfile
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..serving import CLIENT_GONE, Answer, TrackingHTTPServer

TLS_HANDSHAKE = 0x16
HANDSHAKE_TIMEOUT = 10.0
# What ends one connection quietly: a silent or vanished client, a refused handshake.
_QUIET: tuple[type[OSError], ...] = (TimeoutError, *CLIENT_GONE)
_QUIET_TLS: tuple[type[OSError], ...] = (ssl.SSLError, *_QUIET)

_local = threading.local()


def serving_tls() -> bool:
    """Whether the request this thread is answering came over TLS."""
    return bool(getattr(_local, "tls", False))


class EmulatorCertificates:
    """A CA (its PEM is what clients trust) and a certificate it signed for 127.0.0.1,
    ::1 and localhost. EC P-256 keys: generated in milliseconds."""

    def __init__(self) -> None:
        now = datetime.now(UTC) - timedelta(minutes=5)
        until = now + timedelta(days=30)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "billbridge emulator CA")])
        ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
        ca = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(until)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(ca_ski, critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        key = ec.generate_private_key(ec.SECP256R1())
        leaf = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(until)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                        x509.IPAddress(ipaddress.ip_address("::1")),
                        x509.DNSName("localhost"),
                    ]
                ),
                critical=False,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
                critical=False,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .sign(ca_key, hashes.SHA256())
        )
        self.ca_pem = ca.public_bytes(serialization.Encoding.PEM)
        self._chain_pem = leaf.public_bytes(serialization.Encoding.PEM) + self.ca_pem
        self._key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        self._ca_file: str | None = None

    def server_context(self) -> ssl.SSLContext:
        """The TLS server side (TLS 1.2 at least, as the metering API enforces:
        https://learn.microsoft.com/partner-center/marketplace/marketplace-metering-service-apis,
        "Enforcing TLS 1.2")."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        # load_cert_chain reads files only: write both to a private temporary directory.
        with tempfile.TemporaryDirectory(prefix="billbridge-azure-tls-") as folder:
            chain, key = os.path.join(folder, "chain.pem"), os.path.join(folder, "key.pem")
            with open(chain, "wb") as out:
                out.write(self._chain_pem)
            with open(key, "wb") as out:
                out.write(self._key_pem)
            context.load_cert_chain(chain, key)
        return context

    def ca_file(self) -> str:
        """A PEM file with the CA (azure-core's `connection_verify`, httpx's `verify`);
        written once, removed by `remove_ca_file`."""
        if self._ca_file is None:
            handle, path = tempfile.mkstemp(prefix="billbridge-azure-emulator-ca-", suffix=".pem")
            with os.fdopen(handle, "wb") as out:
                out.write(self.ca_pem)
            self._ca_file = path
        return self._ca_file

    def write_ca_file(self, path: str) -> str:
        with open(path, "wb") as out:
            out.write(self.ca_pem)
        return path

    def remove_ca_file(self) -> None:
        if self._ca_file is not None:
            try:
                os.unlink(self._ca_file)
            except OSError:
                pass
            self._ca_file = None


class DualProtocolServer(TrackingHTTPServer):
    """TrackingHTTPServer whose connections may open with a TLS handshake.

    The peek and the handshake run in the connection's own thread (finish_request), never in
    the accept loop, so a client that connects and says nothing holds up only itself.
    """

    def __init__(self, address: tuple[str, int], answer: Answer, context: ssl.SSLContext) -> None:
        self.tls_context = context
        super().__init__(address, answer)

    def finish_request(self, request: Any, client_address: Any) -> None:
        sock: socket.socket = request
        try:
            sock.settimeout(HANDSHAKE_TIMEOUT)
            first = sock.recv(1, socket.MSG_PEEK)
        except _QUIET:
            return
        if not first or first[0] != TLS_HANDSHAKE:
            _local.tls = False
            super().finish_request(request, client_address)
            return
        try:
            tls = self.tls_context.wrap_socket(sock, server_side=True)
        except _QUIET_TLS:
            return  # e.g. a client that does not trust the CA aborts the handshake
        # The plain socket is detached now: track the TLS one so stop() can cut it.
        with self._conn_lock:
            self._connections.discard(sock)
            self._connections.add(tls)
        _local.tls = True
        try:
            super().finish_request(tls, client_address)
        finally:
            _local.tls = False
            with self._conn_lock:
                self._connections.discard(tls)
            try:
                tls.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            tls.close()
