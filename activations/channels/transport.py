"""A lean HTTP/1.1 keep-alive transport for httpx, on the standard library's `http.client`.

A send is CPU-bound in the sender's process: measured with py-spy, httpcore and h11 (httpx's
default transport) took 38% of the time a sender held the interpreter lock
(benchmarks/delivery.py, docs/scaling.md). The requests and responses stay httpx's, and so do
its errors, which the sender reads to tell a request that never left (ConnectError,
ConnectTimeout, PoolTimeout: safe to send again) from one that may have been processed (any
other TransportError: an unknown outcome). Responses are streamed, as httpx's own are: a reader
that stops early (connected content's size cap) closes the connection instead of reading on.
HTTP/1.1 only, no proxies: SWITCHYARD_HTTP_TRANSPORT=httpx (or a proxy set in the environment)
sends through httpx's own transport instead.
"""

from __future__ import annotations

import http.client
import os
import select
import socket
import ssl
import threading
import time
from collections.abc import Iterator, Mapping

import httpx

_Origin = tuple[str, str, int]
_DEFAULT_PORTS = {"http": 80, "https": 443}
TRANSPORT_VARIABLE = "SWITCHYARD_HTTP_TRANSPORT"
TRANSPORTS = ("keepalive", "httpx")
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")
KEEPALIVE_EXPIRY_SECONDS = 5.0  # as httpx's: a connection idle longer may be gone on the way
READ_CHUNK = 64 * 1024


def http_transport(
    max_connections: int, environ: Mapping[str, str] = os.environ
) -> KeepAliveTransport | None:
    """The transport a run's requests go through, as SWITCHYARD_HTTP_TRANSPORT says:
    `keepalive` (this module's) or `httpx` (None: httpx.Client builds its own, which goes
    through a proxy set in the environment). Unset: keepalive, unless a proxy is set."""
    raw = environ.get(TRANSPORT_VARIABLE, "")
    chosen = raw.strip().lower()
    if not chosen:
        proxied = any(environ.get(v) or environ.get(v.lower()) for v in PROXY_VARIABLES)
        chosen = "httpx" if proxied else "keepalive"
    if chosen == "keepalive":
        return KeepAliveTransport(max_connections)
    if chosen == "httpx":
        return None
    raise ValueError(f"{TRANSPORT_VARIABLE}={raw!r}: choose one of " + ", ".join(TRANSPORTS))


def sender_client(
    in_flight: int,
    timeout: httpx.Timeout,
    transport: httpx.BaseTransport | None = None,
    environ: Mapping[str, str] = os.environ,
) -> httpx.Client:
    """The client a run sends and fetches connected content with: a kept-alive connection for
    each request it may have in flight, through `transport` or the one the settings choose."""
    chosen = transport if transport is not None else http_transport(in_flight, environ)
    return httpx.Client(
        timeout=timeout,
        # (the limits are for httpx's own transport, when the settings chose it)
        limits=httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight),
        transport=chosen,
    )


class KeepAliveTransport(httpx.BaseTransport):
    """Up to `max_connections` requests at once, each connection kept open for the next request
    to the same origin (scheme, host, port) while the server keeps it open, for up to
    `keepalive_expiry` seconds idle; at most `max_connections` idle ones are kept."""

    def __init__(
        self,
        max_connections: int = 100,
        verify: ssl.SSLContext | bool = True,
        keepalive_expiry: float = KEEPALIVE_EXPIRY_SECONDS,
    ) -> None:
        self._max = max_connections
        self._slots = threading.BoundedSemaphore(max_connections)
        self._idle: dict[_Origin, list[tuple[float, http.client.HTTPConnection]]] = {}
        self._lock = threading.Lock()
        self._verify = verify
        self._expiry = keepalive_expiry
        self._ssl: ssl.SSLContext | None = None
        self._closed = False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout", {})
        url = request.url
        if url.scheme not in _DEFAULT_PORTS:
            raise httpx.UnsupportedProtocol(f"{url.scheme!r} URLs are not supported: {url}")
        origin = (url.scheme, url.host, url.port or _DEFAULT_PORTS[url.scheme])
        pool_timeout = timeouts.get("pool")
        if not self._slots.acquire(timeout=pool_timeout):
            raise httpx.PoolTimeout(f"no connection free within {pool_timeout} s")
        connection: http.client.HTTPConnection | None = None
        try:
            connection = self._checkout(origin) or self._connect(origin, timeouts.get("connect"))
            answer = _send(connection, request, timeouts)
        except BaseException:
            if connection is not None:
                connection.close()  # mid-exchange: its state is unknown
            self._slots.release()
            raise
        # The slot and the connection are the response's until it is read or closed.
        return httpx.Response(
            answer.status,
            headers=[(n.encode("latin-1"), v.encode("latin-1")) for n, v in answer.getheaders()],
            stream=_Body(self, origin, connection, answer, request.url.host),
            extensions={
                "http_version": b"HTTP/1.0" if answer.version == 10 else b"HTTP/1.1",
                "reason_phrase": answer.reason.encode("latin-1", "replace"),
            },
        )

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, {}
        for connections in idle.values():
            for _, connection in connections:
                connection.close()

    def _release(
        self, origin: _Origin, connection: http.client.HTTPConnection, reusable: bool
    ) -> None:
        """A response is done with its connection: kept for the next request, or closed."""
        try:
            if reusable:
                with self._lock:
                    idle = self._idle.setdefault(origin, [])
                    if not self._closed and sum(map(len, self._idle.values())) < self._max:
                        idle.append((time.monotonic(), connection))
                        return
            connection.close()
        finally:
            self._slots.release()

    def _checkout(self, origin: _Origin) -> http.client.HTTPConnection | None:
        """An idle connection to `origin` the server has not closed, or None."""
        while True:
            with self._lock:
                idle = self._idle.get(origin)
                if not idle:
                    return None
                since, connection = idle.pop()
                if not idle:  # (connected content reaches many origins: none kept empty)
                    del self._idle[origin]
            if time.monotonic() - since <= self._expiry and _still_open(connection):
                return connection
            # Closed by the server (readable while idle), or idle so long that something on the
            # way may have dropped it: sent on, the request would be lost after it may have
            # left, an unknown outcome.
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
            connection.connect()  # TCP, and the TLS handshake: no byte of the request yet
        except TimeoutError as exc:
            connection.close()
            raise httpx.ConnectTimeout(f"connecting to {host}:{port}: {exc}") from exc
        except OSError as exc:  # refused, unreachable, name not found, certificate refused
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
                else httpx.create_ssl_context(verify=verify)
            )
        return self._ssl


def _still_open(connection: http.client.HTTPConnection) -> bool:
    """No data and no end of stream waiting on an idle connection (poll: any descriptor)."""
    sock = connection.sock
    if sock is None:
        return False
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return not poller.poll(0)


def _send(
    connection: http.client.HTTPConnection,
    request: httpx.Request,
    timeouts: Mapping[str, float | None],
) -> http.client.HTTPResponse:
    """`request` on `connection`, and the head of its answer. Nothing here raises a Connect
    error: from here on, the provider may have the request."""
    sock = connection.sock
    url = request.url
    chunked = request.headers.get("transfer-encoding", "").lower() == "chunked"
    try:
        # httpx built every header (Host, Content-Length, Accept-Encoding): sent as they are
        connection.putrequest(
            request.method, url.raw_path.decode("ascii"), skip_host=True, skip_accept_encoding=True
        )
        for name, value in request.headers.raw:
            connection.putheader(name, value)
    except (ValueError, http.client.HTTPException) as exc:  # nothing sent yet
        raise httpx.LocalProtocolError(f"request to {url.host}: {exc}") from exc
    try:
        if sock is not None:
            sock.settimeout(timeouts.get("write"))
        if chunked and isinstance(request.stream, httpx.SyncByteStream):
            # a streamed body: http.client frames each part
            connection.endheaders(iter(request.stream), encode_chunked=True)
        else:
            connection.endheaders(request.read() or None)
    except TimeoutError as exc:
        raise httpx.WriteTimeout(f"sending to {url.host}: {exc}") from exc
    except OSError as exc:
        raise httpx.WriteError(f"sending to {url.host}: {exc}") from exc
    try:
        if sock is not None:
            sock.settimeout(timeouts.get("read"))
        answer = connection.getresponse()
    except TimeoutError as exc:
        raise httpx.ReadTimeout(f"waiting for {url.host}: {exc}") from exc
    except http.client.HTTPException as exc:  # closed without an answer, or a malformed one
        raise httpx.RemoteProtocolError(f"answer from {url.host}: {exc!r}") from exc
    except OSError as exc:
        raise httpx.ReadError(f"reading from {url.host}: {exc}") from exc
    if 100 < answer.status < 200:
        # http.client passes over 100 Continue only: another informational answer (103 Early
        # Hints) would be taken for the final one and leave that on the connection.
        raise httpx.RemoteProtocolError(
            f"answer from {url.host}: informational {answer.status} is not supported"
        )
    return answer


class _Body(httpx.SyncByteStream):
    """The body of an answer, read as the caller reads it (http.client undoes the chunked
    framing; httpx the content encoding); its connection goes back to the transport once the
    body is read whole, or is closed if the caller stops before."""

    def __init__(
        self,
        transport: KeepAliveTransport,
        origin: _Origin,
        connection: http.client.HTTPConnection,
        answer: http.client.HTTPResponse,
        host: str,
    ) -> None:
        self._transport = transport
        self._origin = origin
        self._connection: http.client.HTTPConnection | None = connection
        self._answer = answer
        self._host = host

    def __iter__(self) -> Iterator[bytes]:
        answer = self._answer
        try:
            while chunk := answer.read1(READ_CHUNK):
                yield chunk
            if answer.length:  # the connection ended before the length it announced
                raise http.client.IncompleteRead(b"", answer.length)
            answer.read()  # at the end: only now does http.client let go of the connection
        except TimeoutError as exc:
            raise httpx.ReadTimeout(f"reading from {self._host}: {exc}") from exc
        except http.client.HTTPException as exc:  # cut short, or broken chunked framing
            raise httpx.RemoteProtocolError(f"answer from {self._host}: {exc!r}") from exc
        except OSError as exc:
            raise httpx.ReadError(f"reading from {self._host}: {exc}") from exc

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        answer = self._answer
        reusable = answer.isclosed() and not answer.will_close
        answer.close()
        self._transport._release(self._origin, connection, reusable)
