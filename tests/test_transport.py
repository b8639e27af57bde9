"""The sender's HTTP/1.1 keep-alive transport (activations/channels/transport.py), against real
servers on 127.0.0.1: what it sends, what it reads, when it reuses a connection, and which of
httpx's errors it raises, which the sender reads to tell never sent from maybe processed."""

from __future__ import annotations

import gzip
import json
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from activations.channels.transport import KeepAliveTransport, http_transport


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        self.server.connections.add(self.client_address)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
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
    # chunked and gzipped: httpx undoes the encoding as with its own transport
    assert client.get(f"{server.url}/chunked").json() == {"answer": 42}


def test_one_connection_carries_request_after_request(server: Server, client: httpx.Client) -> None:
    for _ in range(20):
        assert client.get(f"{server.url}/echo").status_code == 200
    assert len(server.connections) == 1
    # an answer that says Connection: close is the connection's last
    client.get(f"{server.url}/close")
    client.get(f"{server.url}/echo")
    assert len(server.connections) == 2


def test_a_connection_the_server_closed_while_idle_is_not_used_again(
    server: Server, client: httpx.Client
) -> None:
    client.get(f"{server.url}/hang-up")
    time.sleep(0.2)  # the server's close reaches the idle connection
    # sent on the closed one, this would be lost after it may have left: an unknown outcome
    assert client.get(f"{server.url}/echo").status_code == 200
    assert len(server.connections) == 2


def test_a_lost_answer_is_not_a_connect_error(server: Server, client: httpx.Client) -> None:
    """The sender sends again after a ConnectError (nothing left this machine) and records an
    unknown outcome after any other TransportError: a lost answer must be the latter."""
    with pytest.raises(httpx.TransportError) as raised:
        client.post(f"{server.url}/lose", content=b"the message")
    assert not isinstance(raised.value, httpx.ConnectError | httpx.ConnectTimeout)
    assert isinstance(raised.value, httpx.RemoteProtocolError)
    assert server.taken == [b"the message"]
    assert client.get(f"{server.url}/echo").status_code == 200  # the pool goes on


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


def test_https_verifies_the_servers_certificate(tls_server: tuple[Server, Path]) -> None:
    server, cert = tls_server
    with (
        httpx.Client(transport=KeepAliveTransport(2), timeout=5) as c,
        pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        c.get(f"{server.url}/echo")  # a self-signed certificate no authority vouches for
    trusting = ssl.create_default_context(cafile=str(cert))
    with httpx.Client(transport=KeepAliveTransport(2, verify=trusting), timeout=5) as c:
        for _ in range(3):
            assert c.post(f"{server.url}/echo", json={"a": 1}).json()["body"] == '{"a":1}'
    assert len(server.connections) == 1  # one kept alive for the three


def test_the_transport_is_a_setting() -> None:
    assert isinstance(http_transport(4, {}), KeepAliveTransport)
    assert isinstance(
        http_transport(4, {"SWITCHYARD_HTTP_TRANSPORT": "httpx"}), httpx.HTTPTransport
    )
    with pytest.raises(ValueError, match="SWITCHYARD_HTTP_TRANSPORT='h3': choose one of keepalive"):
        http_transport(4, {"SWITCHYARD_HTTP_TRANSPORT": "h3"})
