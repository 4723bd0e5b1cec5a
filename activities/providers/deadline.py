"""A total deadline per provider request, for both providers' HTTP clients.

httpx and requests apply their timeouts to each socket operation (connecting, every read, every
write): a server that answers slowly after a slow connect, or trickles its response, keeps a
request alive many times longer than its "timeout". A push must give a request up before Temporal
gives up on the push (core/timeouts.py), so providers send through `client()`: an httpx client
whose network streams give every socket operation only what is left of the deadline that
`within(seconds)` set for the requests of the calling thread.

The deadline lives in a thread-local: httpx's synchronous client does all socket work of a request
in the thread that sends it, and one provider object serves many activity threads at once.
"""

from __future__ import annotations

import ssl
import threading
import time
import urllib.request
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from billbridge.core.timeouts import PROVIDER_REQUEST_TIMEOUT

_local = threading.local()


@contextmanager
def within(seconds: float) -> Iterator[None]:
    """Every request this thread sends in the block must be done `seconds` from now."""
    previous = getattr(_local, "deadline", None)
    _local.deadline = time.monotonic() + seconds
    try:
        yield
    finally:
        _local.deadline = previous


def left() -> float | None:
    """Seconds left before this thread's deadline (None outside `within`)."""
    deadline: float | None = getattr(_local, "deadline", None)
    return None if deadline is None else max(deadline - time.monotonic(), 0.0)


def _budget(timeout: float | None, expired: type[Exception]) -> float | None:
    """The timeout for one socket operation: its own, cut to what is left of the deadline."""
    remaining = left()
    if remaining is None:
        return timeout
    if remaining <= 0:
        raise expired("the request's total deadline passed")
    return remaining if timeout is None else min(timeout, remaining)


class _Stream(httpcore.NetworkStream):
    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _budget(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _budget(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        budget = _budget(timeout, httpcore.ConnectTimeout)
        return _Stream(self._stream.start_tls(ssl_context, server_hostname, budget))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _Backend(httpcore.NetworkBackend):
    def __init__(self, backend: httpcore.NetworkBackend) -> None:
        self._backend = backend

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        budget = _budget(timeout, httpcore.ConnectTimeout)
        return _Stream(self._backend.connect_tcp(host, port, budget, local_address, socket_options))

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        budget = _budget(timeout, httpcore.ConnectTimeout)
        return _Stream(self._backend.connect_unix_socket(path, budget, socket_options))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


class _Transport(httpx.HTTPTransport):
    """httpx's own transport (pooling, proxies, exception mapping), its sockets on the clock."""

    def __init__(self, *, proxy: str | None, verify: ssl.SSLContext | bool) -> None:
        super().__init__(proxy=proxy, verify=verify)
        pool = self._pool
        # httpx offers no way to pass a network backend; its connection pools (direct, HTTP and
        # SOCKS proxies alike) keep theirs here. Fail loudly should httpcore ever rename it.
        if not isinstance(getattr(pool, "_network_backend", None), httpcore.NetworkBackend):
            raise RuntimeError("this httpcore version keeps no _network_backend on its pools")
        pool._network_backend = _Backend(pool._network_backend)


def _proxy_for(url: str) -> str | None:
    """The proxy the environment sets for `url` (HTTPS_PROXY, NO_PROXY, ...), as requests and
    httpx pick it: a custom transport would otherwise silently bypass it."""
    parts = urlsplit(url)
    if parts.hostname and urllib.request.proxy_bypass(parts.hostname):
        return None
    return urllib.request.getproxies().get(parts.scheme)


def client(base_url: str, *, verify: ssl.SSLContext | bool = True) -> httpx.Client:
    """An httpx client for one API whose requests end by the calling thread's deadline."""
    return httpx.Client(transport=_Transport(proxy=_proxy_for(base_url), verify=verify))


def timeout() -> httpx.Timeout:
    """The timeout to pass with a request: what is left of the deadline (it also bounds the wait
    for a pooled connection, which involves no socket); outside `within`, a whole request's."""
    remaining = left()
    if remaining is None:
        return httpx.Timeout(PROVIDER_REQUEST_TIMEOUT.total_seconds())
    return httpx.Timeout(max(remaining, 0.001))
