"""A real SMTP server on 127.0.0.1 (aiosmtpd) for the SMTP email channel: STARTTLS with a
certificate made for the run, AUTH required after it, the messages it accepted kept in order, and
faults on demand (a 4xx "try again later", a 5xx refusal, a connection dropped after the message
was taken, before the reply, and replies after which the server hangs up)."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import ipaddress
import socket
import ssl
import tempfile
import threading
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from sandbox.credentials import SANDBOX_CREDENTIALS, SandboxCredentials

# 451/550: the reply to the message. drop: the message taken, no reply. 421: "closing", then
# hangs up. 554-close: refused, then hangs up. rcpt-550-close: the recipient refused, then hangs up.
SmtpFault = Literal["451", "550", "drop", "421", "554-close", "rcpt-550-close"]


@dataclass(frozen=True)
class Mail:
    sender: str
    recipients: list[str]
    message: EmailMessage
    raw: bytes = b""  # as it came over the wire

    def header(self, name: str) -> str | None:
        value = self.message[name]
        return None if value is None else str(value)

    @property
    def body(self) -> str:
        part = self.message.get_body(("plain",))
        return "" if part is None else part.get_content().rstrip("\r\n")  # type: ignore[union-attr]


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, and its key, as PEM files in `folder`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "switchyard sandbox")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "smtp-cert.pem", folder / "smtp-key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


class SmtpSandbox:
    """`with SmtpSandbox() as smtp:` then smtp.port, smtp.ca_file (trust it to verify STARTTLS)."""

    def __init__(
        self, host: str = "127.0.0.1", credentials: SandboxCredentials = SANDBOX_CREDENTIALS
    ) -> None:
        self.host = host
        self.credentials = credentials
        self._folder = tempfile.TemporaryDirectory(prefix="switchyard-smtp-")
        self.ca_file, key_file = self_signed_certificate(Path(self._folder.name))
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(self.ca_file, key_file)
        self._lock = threading.Lock()
        self._received: list[Mail] = []
        self._faults: list[SmtpFault] = []
        self.sessions = 0  # connections that said EHLO
        self._controller = Controller(
            _Handler(self),
            hostname=host,
            port=_free_port(host),  # aiosmtpd checks its server by connecting to this port
            tls_context=tls,
            require_starttls=True,
            auth_required=True,
            auth_require_tls=True,
            authenticator=self._authenticate,
        )

    @property
    def port(self) -> int:
        return int(self._controller.port)

    @property
    def received(self) -> list[Mail]:
        with self._lock:
            return list(self._received)

    def fail_next(self, fault: SmtpFault) -> None:
        with self._lock:
            self._faults.append(fault)

    def _next_fault(self) -> SmtpFault | None:
        with self._lock:
            return self._faults.pop(0) if self._faults else None

    def _keep(self, mail: Mail) -> None:
        with self._lock:
            self._received.append(mail)

    def _authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == self.credentials.smtp_username
            and auth_data.password.decode() == self.credentials.smtp_password
        )
        return AuthResult(success=ok, handled=False)

    def start(self) -> SmtpSandbox:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()
        self._folder.cleanup()

    def __enter__(self) -> SmtpSandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


class _Handler:
    def __init__(self, sandbox: SmtpSandbox) -> None:
        self.sandbox = sandbox

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        with self.sandbox._lock:
            self.sandbox.sessions += 1
        return responses

    async def handle_RSET(self, server: Any, session: Any, envelope: Any) -> str:
        if getattr(session, "hang_up", False):
            server.transport.abort()
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        with self.sandbox._lock:
            fault = self.sandbox._faults[0] if self.sandbox._faults else None
        if fault == "rcpt-550-close":
            self.sandbox._next_fault()
            return _then_hang_up(session, "550 5.1.1 No such user")
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        fault = self.sandbox._next_fault()
        if fault == "421":
            return _then_hang_up(session, "421 4.3.2 Service shutting down, try again later")
        if fault == "554-close":
            return _then_hang_up(session, "554 5.7.1 Rejected as spam")
        if fault == "451":
            return "451 4.3.0 Temporary failure, try again later"
        if fault == "550":
            return "550 5.1.1 Mailbox unavailable"
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self.sandbox._keep(
            Mail(envelope.mail_from, list(envelope.rcpt_tos), parsed, envelope.content)
        )
        if fault == "drop":  # taken, and the reply never arrives
            server.transport.abort()
            return "250 OK"
        return "250 2.0.0 OK queued"


def _then_hang_up(session: Any, reply: str) -> str:
    """`reply`, after which the server is gone: the client's next command gets no answer."""
    session.hang_up = True
    return reply
