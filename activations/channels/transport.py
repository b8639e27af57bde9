"""A lean HTTP/1.1 keep-alive transport for httpx, on the standard library's `http.client`.

A send is CPU-bound in the sender's process: measured with py-spy, httpcore and h11 (httpx's
default transport) took 38% of the time a sender held the interpreter lock, the cookie jar httpx
fills from every response 7% (benchmarks/delivery.py, docs/scaling.md). The requests and
responses stay httpx's, and so do its errors, which the sender reads to tell a request that
never left (ConnectError, ConnectTimeout, PoolTimeout: safe to send again) from one that may
have been processed (any other TransportError: an unknown outcome). HTTP/1.1 only, no proxies:
set SWITCHYARD_HTTP_TRANSPORT=httpx for httpx's own transport (HTTP/2, proxies from the
environment).
"""

from __future__ import annotations

import http.client
import os
import select
import socket
import ssl
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import httpx

_Origin = tuple[str, str, int]
_DEFAULT_PORTS = {"http": 80, "https": 443}
TRANSPORT_VARIABLE = "SWITCHYARD_HTTP_TRANSPORT"
TRANSPORTS = ("keepalive", "httpx")


def http_transport(
    max_connections: int, environ: Mapping[str, str] = os.environ
) -> httpx.BaseTransport:
    """The transport the sender's requests go through, as SWITCHYARD_HTTP_TRANSPORT says:
    `keepalive` (default, this module's) or `httpx` (httpx's own, with HTTP/2 and proxies)."""
    chosen = environ.get(TRANSPORT_VARIABLE, "").strip().lower() or TRANSPORTS[0]
    if chosen == "keepalive":
        return KeepAliveTransport(max_connections)
    if chosen == "httpx":
        limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        return httpx.HTTPTransport(limits=limits)
    raise ValueError(
        f"{TRANSPORT_VARIABLE}={environ[TRANSPORT_VARIABLE]!r}: choose one of "
        + ", ".join(TRANSPORTS)
    )


class KeepAliveTransport(httpx.BaseTransport):
    """Up to `max_connections` connections at once, each kept open for the next request to
    the same origin (scheme, host, port) while the server keeps it open."""

    def __init__(self, max_connections: int = 100, verify: ssl.SSLContext | bool = True) -> None:
        self._slots = threading.BoundedSemaphore(max_connections)
        self._idle: dict[_Origin, list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()
        self._verify = verify
        self._ssl: ssl.SSLContext | None = None
        self._closed = False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout", {})
        url = request.url
        if url.scheme not in _DEFAULT_PORTS:
            raise httpx.UnsupportedProtocol(f"{url.scheme!r} URLs are not supported: {url}")
        origin = (url.scheme, url.host, url.port or _DEFAULT_PORTS[url.scheme])
        body = request.read()
        with self._slot(timeouts.get("pool")):
            connection = self._checkout(origin)
            if connection is None:
                connection = self._connect(origin, timeouts.get("connect"))
            try:
                response = self._exchange(connection, request, body, timeouts)
            except BaseException:
                connection.close()  # mid-exchange: its state is unknown
                raise
            if response.will_close:
                connection.close()
            else:
                self._checkin(origin, connection)
        return response.as_httpx

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, {}
        for connections in idle.values():
            for connection in connections:
                connection.close()

    @contextmanager
    def _slot(self, timeout: float | None) -> Iterator[None]:
        if not self._slots.acquire(timeout=timeout):
            raise httpx.PoolTimeout(f"no connection free within {timeout} s")
        try:
            yield
        finally:
            self._slots.release()

    def _checkout(self, origin: _Origin) -> http.client.HTTPConnection | None:
        """An idle connection to `origin` the server has not closed, or None."""
        while True:
            with self._lock:
                idle = self._idle.get(origin)
                if not idle:
                    return None
                connection = idle.pop()
            sock = connection.sock
            # Readable while idle: the server closed it (or broke the protocol). Sending on it
            # would fail after the request may have left, an unknown outcome: drop it instead.
            if sock is not None and not select.select([sock], [], [], 0)[0]:
                return connection
            connection.close()

    def _checkin(self, origin: _Origin, connection: http.client.HTTPConnection) -> None:
        with self._lock:
            if not self._closed:
                self._idle.setdefault(origin, []).append(connection)
                return
        connection.close()

    def _connect(self, origin: _Origin, timeout: float | None) -> http.client.HTTPConnection:
        scheme, host, port = origin
        connection: http.client.HTTPConnection
        if scheme == "https":
            connection = http.client.HTTPSConnection(
                host, port, timeout=timeout, context=self._ssl_context()
            )
        else:
            connection = http.client.HTTPConnection(host, port, timeout=timeout)
        try:
            connection.connect()
        except TimeoutError as exc:
            connection.close()
            raise httpx.ConnectTimeout(f"connecting to {host}:{port}: {exc}") from exc
        except OSError as exc:  # refused, unreachable, name not found, TLS handshake
            connection.close()
            raise httpx.ConnectError(f"connecting to {host}:{port}: {exc}") from exc
        sock = connection.sock
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return connection

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            verify = self._verify
            self._ssl = (
                verify
                if isinstance(verify, ssl.SSLContext)
                else (httpx.create_ssl_context(verify=verify))
            )
        return self._ssl

    @staticmethod
    def _exchange(
        connection: http.client.HTTPConnection,
        request: httpx.Request,
        body: bytes,
        timeouts: dict[str, float | None],
    ) -> _Answer:
        sock = connection.sock
        url = request.url
        target = url.raw_path.decode("ascii")
        try:
            if sock is not None:
                sock.settimeout(timeouts.get("write"))
            # httpx built every header (Host, Content-Length, Accept-Encoding): sent as they are
            connection.putrequest(request.method, target, skip_host=True, skip_accept_encoding=True)
            for name, value in request.headers.raw:
                connection.putheader(name, value)
            connection.endheaders(body or None)
        except TimeoutError as exc:
            raise httpx.WriteTimeout(f"sending to {url.host}: {exc}") from exc
        except OSError as exc:
            raise httpx.WriteError(f"sending to {url.host}: {exc}") from exc
        try:
            if sock is not None:
                sock.settimeout(timeouts.get("read"))
            response = connection.getresponse()
            content = response.read()
        except TimeoutError as exc:
            raise httpx.ReadTimeout(f"waiting for {url.host}: {exc}") from exc
        except http.client.HTTPException as exc:  # a closed connection, a malformed answer
            raise httpx.RemoteProtocolError(f"answer from {url.host}: {exc!r}") from exc
        except OSError as exc:
            raise httpx.ReadError(f"reading from {url.host}: {exc}") from exc
        return _Answer(response, content, request)


class _Answer:
    """A response read whole, and whether its connection can carry another request."""

    __slots__ = ("as_httpx", "will_close")

    def __init__(
        self, response: http.client.HTTPResponse, content: bytes, request: httpx.Request
    ) -> None:
        self.will_close = bool(response.will_close)
        headers = response.getheaders()
        # http.client took off the chunked framing: the body is whole, and says how long it is
        headers = [
            (n, v) for n, v in headers if n.lower() not in ("transfer-encoding", "content-length")
        ]
        headers.append(("Content-Length", str(len(content))))
        # a ByteStream: httpx reads it, and undoes any Content-Encoding, as it does its own
        self.as_httpx = httpx.Response(
            response.status,
            headers=headers,
            stream=httpx.ByteStream(content),
            request=request,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": response.reason.encode()},
        )
