"""Email over SMTP (submission, port 587): STARTTLS, then AUTH, then one message per send.

What a reply means for the ledger:
- no connection, or a 4xx (to MAIL, RCPT, DATA or the message; 421 as the server closes): the
  server did not take it, so it is sent again with backoff;
- a 5xx: refused for good (failed, with the server's words), even if the server then hangs up;
- the connection lost after the message went (no reply to it): the server may have queued it,
  an unknown outcome. SMTP has no lookup, so it is sent at most once more, with the same
  Message-ID (`<send key@sender's domain>`), which receiving systems can recognise.
"""

from __future__ import annotations

import smtplib
import ssl
import threading
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

from activations.channels.core import OutcomeUnknown, Retryable
from activations.channels.message import Message, Outcome
from activations.channels.unsubscribe import list_unsubscribe_headers


# refused TLS (no STARTTLS, an untrusted certificate) or credentials
class _WirePolicy(policy.EmailPolicy):
    """SMTP's policy, except that List-Unsubscribe goes out as written: its signed URL (~300
    characters, unbreakable) would otherwise be wrapped in RFC 2047 encoded-words, which no
    mailbox provider reads as RFC 2369's `<URI>`. Other headers fold at 78 as usual."""

    def fold_binary(self, name: str, value: Any) -> bytes:
        if name.lower() == "list-unsubscribe":
            return f"{name}: {value}{self.linesep}".encode("ascii")
        return super().fold_binary(name, value)


WIRE_POLICY = _WirePolicy(linesep="\r\n")
_SETUP_ERRORS = (smtplib.SMTPAuthenticationError, smtplib.SMTPNotSupportedError, ssl.SSLError)


@dataclass(frozen=True)
class SmtpClient:
    host: str
    port: int
    from_address: str
    username: str | None = None
    password: str | None = None
    starttls: bool = True
    ca_file: str | None = None  # trust this CA (a private relay); default: the system's
    timeout_seconds: float = 30.0
    channel: str = "email"
    idempotent: bool = False
    # one connection per sending thread, kept open between messages
    _local: threading.local = field(default_factory=threading.local, compare=False, repr=False)
    _open: list[smtplib.SMTP] = field(default_factory=list, compare=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, compare=False, repr=False)

    def message_id(self, send_key: str) -> str:
        domain = self.from_address.rpartition("@")[2] or "switchyard.invalid"
        return f"<{send_key}@{domain}>"

    def compose(self, message: Message) -> EmailMessage:
        mail = EmailMessage()
        mail["From"] = self.from_address
        mail["To"] = message.recipient
        mail["Subject"] = message.subject or ""
        mail["Date"] = formatdate(usegmt=True)
        mail["Message-ID"] = self.message_id(message.send_key)
        mail["X-Switchyard-Send-Key"] = message.send_key  # bounces and replies carry it back
        for name, value in list_unsubscribe_headers(message.unsubscribe_url).items():
            mail[name] = value
        mail.set_content(message.body)
        return mail

    def deliver(self, message: Message) -> Outcome:
        mail = self.compose(message).as_bytes(policy=WIRE_POLICY)
        try:
            conn = self._connection()
        except SmtpSetupError as exc:  # as an HTTP provider's 401: failed, with what to fix
            return Outcome("failed", reason=str(exc), provider_fault=True)
        try:
            code, reply = conn.mail(self.from_address)
            if code == 250:
                code, reply = conn.rcpt(message.recipient)
        except (smtplib.SMTPException, OSError) as exc:
            self._drop(conn)  # nothing of the message went: safe to send again
            raise Retryable(f"SMTP connection lost before the message: {exc!r}") from exc
        if code not in (250, 251):
            self._reset(conn)
            return self._refused(code, reply)  # the reply decides, whatever the connection does
        try:
            code, reply = conn.data(mail)
        except smtplib.SMTPDataError as exc:  # DATA itself refused: the message never went
            self._reset(conn)
            return self._refused(exc.smtp_code, exc.smtp_error)
        except (smtplib.SMTPException, OSError) as exc:
            self._drop(conn)
            raise OutcomeUnknown(f"no SMTP reply to the message: {exc!r}") from exc
        if code == 250:
            return Outcome("sent", code, self.message_id(message.send_key))
        self._reset(conn)  # a 4xx is "not taken, try later" (421: the server is closing)
        return self._refused(code, reply)

    def _reset(self, conn: smtplib.SMTP) -> None:
        """Ready the connection for the next message, or drop it if the server has gone."""
        try:
            conn.rset()
        except (smtplib.SMTPException, OSError):
            self._drop(conn)

    @staticmethod
    def _refused(code: int, reply: bytes | str) -> Outcome:
        text = reply.decode(errors="replace") if isinstance(reply, bytes) else reply
        if 400 <= code < 500:
            raise Retryable(f"SMTP {code} {text}")
        return Outcome("failed", code, reason=f"SMTP {code} {text}")

    def _connection(self) -> smtplib.SMTP:
        conn: smtplib.SMTP | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        try:
            conn = smtplib.SMTP(self.host, self.port, timeout=self.timeout_seconds)
        except (smtplib.SMTPException, OSError) as exc:
            raise Retryable(f"could not connect: {exc!r}") from exc
        try:
            conn.ehlo()
            if self.starttls:
                conn.starttls(context=ssl.create_default_context(cafile=self.ca_file))
                conn.ehlo()
            if self.username:
                conn.login(self.username, self.password or "")
        except (
            smtplib.SMTPAuthenticationError,
            smtplib.SMTPNotSupportedError,
            ssl.SSLError,
        ) as exc:
            conn.close()
            # Settings, not a passing fault: every message would meet it.
            raise SmtpSetupError(
                f"SMTP {self.host}:{self.port}: {exc} (check SWITCHYARD_SMTP_USERNAME, "
                "SWITCHYARD_SMTP_PASSWORD, SWITCHYARD_SMTP_STARTTLS and SWITCHYARD_SMTP_CA_FILE)"
            ) from exc
        except (smtplib.SMTPException, OSError) as exc:
            conn.close()
            raise Retryable(f"could not connect: {exc!r}") from exc
        self._local.conn = conn
        with self._lock:
            self._open.append(conn)
        return conn

    def _drop(self, conn: smtplib.SMTP) -> None:
        self._local.conn = None
        conn.close()

    def close(self) -> None:
        with self._lock:
            conns, self._open[:] = list(self._open), []
        for conn in conns:
            try:
                conn.quit()
            except (smtplib.SMTPException, OSError):
                conn.close()


class SmtpSetupError(Exception):
    """The SMTP server refused our TLS or credentials: a setting to fix, not a fault to retry."""
