"""The sender's HTTP/1.1 keep-alive transport (activations/channels/transport.py), against real
servers on 127.0.0.1: what it sends, what it reads, when it reuses a connection, and which of
httpx's errors it raises, which the sender reads to tell never sent from maybe processed."""

from __future__ import annotations

import contextlib
import gzip
import json
import socket
import ssl
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from activations.channels.transport import KeepAliveTransport, http_transport, sender_client
from activations.connected_content import MAX_BYTES, ContentFetcher, ContentUnavailable
from activations.graph import ConnectedContent


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        self.do_GET()

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()

    def read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = b""
        while size := int(self.rfile.readline().strip(), 16):
            body += self.rfile.read(size)
            self.rfile.readline()
        self.rfile.readline()
        return body

    def do_GET(self) -> None:
        self.server.connections.add(self.client_address)
        body = self.read_body()
        if self.path == "/early-hints":  # 103, then the answer
            self.wfile.write(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n")
            self.wfile.write(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok")
            return
        if self.path == "/late":  # the head now, the body a moment later
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
            self.wfile.flush()
            time.sleep(0.3)
            self.wfile.write(b"WRONG")
            return
        if self.path == "/short":  # announces 100 bytes, sends 10, hangs up
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
            self.close_connection = True
            return
        if self.path == "/endless":  # a chunked answer that never ends
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            part = b"x" * 65536
            try:
                while True:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            except OSError:
                self.close_connection = True
                return
        if self.path == "/lose":  # took the request, then the connection went
            self.server.taken.append(body)
            self.close_connection = True
            return
        if self.path == "/slow":
            time.sleep(1.0)
        if self.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Content-Encoding", "gzip")
            self.end_headers()
            packed = gzip.compress(b'{"answer": 42}')
            for part in (packed[:7], packed[7:]):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
            return
        echoed = json.dumps(
            {
                "method": self.command,
                "path": self.path,
                "headers": [[k.lower(), v] for k, v in self.headers.items()],
                "body": body.decode(),
            }
        ).encode()
        self.send_response(201 if self.command == "POST" else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(echoed)))
        self.send_header("Set-Cookie", "a=1")
        self.send_header("Set-Cookie", "b=2")
        self.send_header("X-Name", "café")  # latin-1 on the wire, not ASCII
        if self.path == "/close":
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(echoed)
        if self.path == "/hang-up":  # kept alive as far as the client knows, then closed
            self.close_connection = True


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.connections: set[tuple[str, int]] = set()
        self.taken: list[bytes] = []

    @property
    def url(self) -> str:
        scheme = "https" if isinstance(self.socket, ssl.SSLSocket) else "http"
        return f"{scheme}://127.0.0.1:{self.server_address[1]}"


def serving(server: Server) -> Iterator[Server]:
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def server() -> Iterator[Server]:
    yield from serving(Server())


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(transport=KeepAliveTransport(4), timeout=5) as c:
        yield c


def test_requests_go_as_httpx_built_them_and_answers_come_back_whole(
    server: Server, client: httpx.Client
) -> None:
    response = client.post(
        f"{server.url}/messages?to=%2B1415", data={"Body": "hi there"}, headers={"X-Key": "k1"}
    )
    assert response.status_code == 201 and response.http_version == "HTTP/1.1"
    echoed = response.json()
    assert echoed["method"] == "POST" and echoed["path"] == "/messages?to=%2B1415"
    assert echoed["body"] == "Body=hi+there"
    headers = dict(echoed["headers"])
    assert headers["x-key"] == "k1" and headers["content-length"] == str(len("Body=hi+there"))
    assert headers["host"] == server.url.removeprefix("http://")
    assert [h for h, _ in echoed["headers"]].count("host") == 1  # httpx's own, not a second
    assert response.headers.get_list("set-cookie") == ["a=1", "b=2"]
    assert response.headers["x-name"] == "café"
    # chunked and gzipped: httpx undoes the encoding as with its own transport
    assert client.get(f"{server.url}/chunked").json() == {"answer": 42}
    # a streamed body goes chunked, as httpx framed it
    streamed = client.post(f"{server.url}/echo", content=iter([b"hello ", b"world"]))
    assert streamed.json()["body"] == "hello world"
    assert dict(streamed.json()["headers"])["transfer-encoding"] == "chunked"
    # HEAD: the length the server announced, no body
    head = client.head(f"{server.url}/echo")
    assert (head.headers["content-length"], head.content) == ("2", b"")
    assert client.get(f"{server.url}/echo").status_code == 200  # and the pool goes on


def test_one_connection_carries_request_after_request(server: Server) -> None:
    transport = KeepAliveTransport(4, keepalive_expiry=0.3)
    with httpx.Client(transport=transport, timeout=5) as client:
        for _ in range(20):
            assert client.get(f"{server.url}/echo").status_code == 200
        assert len(server.connections) == 1
        # an answer that says Connection: close is the connection's last
        client.get(f"{server.url}/close")
        client.get(f"{server.url}/echo")
        assert len(server.connections) == 2
        # idle past the expiry: something on the way may have dropped it, a new one is made
        time.sleep(0.5)
        client.get(f"{server.url}/echo")
        assert len(server.connections) == 3


def test_an_answer_closed_before_its_body_came_leaves_nothing_for_the_next(
    server: Server, client: httpx.Client
) -> None:
    with client.stream("GET", f"{server.url}/late") as response:
        assert response.status_code == 200  # closed unread, its body still on the way
    # on the same connection, the next request would read that body as its answer
    assert client.get(f"{server.url}/echo").json()["path"] == "/echo"
    assert len(server.connections) == 2


def test_at_most_max_connections_are_kept_idle(server: Server) -> None:
    with contextlib.ExitStack() as stack:
        other = stack.enter_context(contextlib.contextmanager(serving)(Server()))
        c = stack.enter_context(httpx.Client(transport=KeepAliveTransport(2), timeout=5))
        slow = [threading.Thread(target=lambda: c.get(f"{server.url}/slow")) for _ in range(2)]
        for t in slow:
            t.start()
        for t in slow:
            t.join()
        # two idle to the first server: the second's connection is not kept beside them
        c.get(f"{other.url}/echo")
        c.get(f"{other.url}/echo")
        assert len(other.connections) == 2
        c.get(f"{server.url}/echo")
        assert len(server.connections) == 2  # one of the two kept


def test_a_connection_the_server_closed_while_idle_is_not_used_again(
    server: Server, client: httpx.Client
) -> None:
    client.get(f"{server.url}/hang-up")
    time.sleep(0.2)  # the server's close reaches the idle connection
    # sent on the closed one, this would be lost after it may have left: an unknown outcome
    assert client.get(f"{server.url}/echo").status_code == 200
    assert len(server.connections) == 2


def test_a_lost_or_broken_answer_is_not_a_connect_error(
    server: Server, client: httpx.Client
) -> None:
    """The sender sends again after a ConnectError (nothing left this machine) and records an
    unknown outcome after any other TransportError: once a request may have left, it is the
    latter."""
    with pytest.raises(httpx.RemoteProtocolError):
        client.post(f"{server.url}/lose", content=b"the message")
    assert server.taken == [b"the message"]
    with pytest.raises(httpx.RemoteProtocolError, match="IncompleteRead"):
        client.get(f"{server.url}/short")  # the body ended before its announced length
    # an informational answer other than 100 would be taken for the answer: refused instead
    with pytest.raises(httpx.RemoteProtocolError, match="informational 103"):
        client.post(f"{server.url}/early-hints", content=b"x")
    assert client.get(f"{server.url}/echo").status_code == 200  # the pool goes on


def test_a_request_cut_off_while_sending_is_not_a_connect_error() -> None:
    # A server that reads the start of a request and resets the connection: the rest of a
    # large body fails to go out. The start may have been taken: never a connect error.
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def reset_after_a_little() -> None:
            conn, _ = listener.accept()
            conn.recv(1024)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()

        threading.Thread(target=reset_after_a_little, daemon=True).start()
        with (
            httpx.Client(transport=KeepAliveTransport(1), timeout=5) as c,
            pytest.raises(httpx.TransportError) as raised,
        ):
            c.post(f"http://127.0.0.1:{port}/", content=b"x" * 32_000_000)
    assert not isinstance(raised.value, httpx.ConnectError | httpx.ConnectTimeout)
    assert isinstance(raised.value, httpx.WriteError | httpx.ReadError)


def test_refused_slow_and_a_full_pool_raise_httpx_errors(server: Server) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    with httpx.Client(transport=KeepAliveTransport(1), timeout=5) as c:
        with pytest.raises(httpx.ConnectError):
            c.get(f"http://127.0.0.1:{port}/")
        with pytest.raises(httpx.ReadTimeout):
            c.get(f"{server.url}/slow", timeout=httpx.Timeout(5, read=0.2))
        # one connection, held by a slow request: the next waits for it, up to the pool timeout
        held = threading.Thread(target=lambda: c.get(f"{server.url}/slow"))
        held.start()
        time.sleep(0.2)
        with pytest.raises(httpx.PoolTimeout):
            c.get(f"{server.url}/echo", timeout=httpx.Timeout(5, pool=0.2))
        held.join()
        assert c.get(f"{server.url}/echo").status_code == 200


def test_connected_content_stops_reading_an_endless_answer(server: Server) -> None:
    # The answer is streamed: the fetcher's size cap stops it, and its connection is closed.
    with httpx.Client(transport=KeepAliveTransport(2), timeout=5) as c:
        fetcher = ContentFetcher(c)
        spec = ConnectedContent("offer", f"{server.url}/endless", 5.0, "skip", None)
        with pytest.raises(ContentUnavailable, match=f"over {MAX_BYTES} bytes"):
            fetcher.values((spec,), {})
        assert c.get(f"{server.url}/echo").status_code == 200


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[Server, Path]]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    server = Server()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    yield from ((s, cert) for s in serving(server))


def test_https_verifies_the_servers_certificate(
    tls_server: tuple[Server, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, cert = tls_server
    with (
        httpx.Client(transport=KeepAliveTransport(2), timeout=5) as c,
        pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        c.get(f"{server.url}/echo")  # a self-signed certificate no authority vouches for
    # trusted as the README says: SSL_CERT_FILE, as for httpx's own transport
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    with httpx.Client(transport=KeepAliveTransport(2), timeout=5) as c:
        for _ in range(3):
            assert c.post(f"{server.url}/echo", json={"a": 1}).json()["body"] == '{"a":1}'
    assert len(server.connections) == 1  # one kept alive for the three


def test_the_transport_is_a_setting_and_a_proxy_goes_through_httpx(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert isinstance(http_transport(4, {}), KeepAliveTransport)
    assert http_transport(4, {"SWITCHYARD_HTTP_TRANSPORT": "httpx"}) is None
    with pytest.raises(ValueError, match="SWITCHYARD_HTTP_TRANSPORT='h3': choose one of keepalive"):
        http_transport(4, {"SWITCHYARD_HTTP_TRANSPORT": "h3"})
    # a proxy in the environment: httpx's own transport, which goes through it
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", server.url)
    assert http_transport(4) is None
    with sender_client(4, httpx.Timeout(5)) as c:
        answer = c.get("http://provider.invalid/v1/send").json()
    # the proxy (our server) was asked for the absolute URL
    assert answer["path"] == "http://provider.invalid/v1/send"
