"""A small asyncio HTTP/1.1 server for the sandbox: one event loop on its own thread, keep-alive
connections, Content-Length bodies. Written here rather than taken from an ASGI server because a
sandbox must be able to misbehave as a provider does on the wire: an ASGI app cannot close a
connection without answering (the lost response a sender must not retry blindly); here a
handler's `None` does exactly that.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Awaitable, Callable
from http import HTTPStatus

from sandbox.providers import Reply, Request

Handler = Callable[[Request], Awaitable[Reply | None]]  # None: close without an answer

MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 32 * 1024 * 1024


class AsyncHttpServer:
    """Listens on `host:port` from construction (port 0: any free one, see `address`); serves on
    a background thread after `start()`, or on the calling thread in `serve_forever()`."""

    def __init__(self, host: str, port: int, handler: Handler) -> None:
        self.handler = handler
        self._socket = socket.create_server((host, port), backlog=1024, reuse_port=False)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._socket.getsockname()[:2]
        return str(host), int(port)

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self.serve_forever, daemon=True, name="switchyard-sandbox"
        )
        self._thread.start()
        self._ready.wait()

    def serve_forever(self) -> None:
        asyncio.run(self._serve())

    def stop(self) -> None:
        loop, stopped = self._loop, self._stopped
        if loop is not None and stopped is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stopped.set)
        if self._thread is not None:
            self._thread.join(10)
        self._socket.close()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        server = await asyncio.start_server(
            self._connection, sock=self._socket, limit=MAX_HEAD_BYTES
        )
        self._ready.set()
        async with server:
            await self._stopped.wait()
            server.close()
            # open keep-alive connections would hold wait_closed: they end with the loop

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:  # headers and body go out in one write anyway; no Nagle delay
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                request, keep_alive = await self._read_request(reader)
                if request is None:
                    return
                reply = await self.handler(request)
                if reply is None:  # lost: the connection ends without an answer
                    return
                writer.write(_encode(reply, keep_alive))
                await writer.drain()
                if not keep_alive:
                    return
        except _BadRequest as bad:
            writer.write(_encode(Reply(bad.status, {"error": str(bad)}), keep_alive=False))
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # the client went away
        finally:
            writer.close()

    async def _read_request(self, reader: asyncio.StreamReader) -> tuple[Request | None, bool]:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as eof:
            if eof.partial.strip():
                raise _BadRequest(400, "the request ended inside its headers") from None
            return None, False  # closed between requests
        except asyncio.LimitOverrunError:
            raise _BadRequest(431, "request headers too large") from None
        lines = head.decode("latin-1").split("\r\n")
        try:
            method, target, version = lines[0].split(" ")
        except ValueError:
            raise _BadRequest(400, f"not an HTTP request line: {lines[0]!r}") from None
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if not line:
                continue
            name, sep, value = line.partition(":")
            if not sep:
                raise _BadRequest(400, f"not a header: {line!r}")
            headers[name.strip().lower()] = value.strip()
        if "chunked" in headers.get("transfer-encoding", "").lower():
            raise _BadRequest(411, "send the body with a Content-Length")
        try:
            length = int(headers.get("content-length") or 0)
        except ValueError:
            raise _BadRequest(400, "Content-Length is not a number") from None
        if length < 0 or length > MAX_BODY_BYTES:
            raise _BadRequest(413, f"a body of {length} bytes")
        body = await reader.readexactly(length) if length else b""
        connection = headers.get("connection", "").lower()
        keep_alive = connection != "close" if version == "HTTP/1.1" else connection == "keep-alive"
        path, _, query = target.partition("?")
        return Request(method=method, path=path, headers=headers, body=body, query=query), (
            keep_alive
        )


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _encode(reply: Reply, keep_alive: bool) -> bytes:
    payload = b"" if reply.body is None else json.dumps(reply.body).encode()
    try:
        phrase = HTTPStatus(reply.status).phrase
    except ValueError:
        phrase = ""
    head = [f"HTTP/1.1 {reply.status} {phrase}"]
    if reply.body is not None:
        head.append("Content-Type: application/json")
    head.extend(f"{name}: {value}" for name, value in reply.headers.items())
    head.append(f"Content-Length: {len(payload)}")
    if not keep_alive:
        head.append("Connection: close")
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + payload
