"""Email over SMTP against a real SMTP server (aiosmtpd) that demands STARTTLS and AUTH: what
each reply means for the ledger, and the settings that choose SMTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from activations import ledger
from activations.channels import ChannelSettings, Message, RetryPolicy, Sender
from activations.channels.core import Outgoing
from activations.channels.settings import ChannelSettingsError, open_channels
from activations.channels.smtp import SmtpClient
from sandbox.smtp import SmtpFault, SmtpSandbox
from switchyard import landing
from switchyard.preference_links import LinkSigner, LinkSubject

NOW = datetime(2026, 11, 2, 12, 0)
SETTINGS = {
    "SWITCHYARD_CHANNELS": "providers",
    "SWITCHYARD_EMAIL_PROVIDER": "smtp",
    "SWITCHYARD_EMAIL_FROM": "hello@shop.example",
}


LINKS = LinkSigner("https://prefs.example", "link-secret-for-tests-0123456789abcdef")


def email(n: int) -> Message:
    # what run.deliver signs for marketing: a real token, ~270 characters that cannot be folded
    link, _ = LINKS.urls(LinkSubject("email", f"u-ada-{n}", topic="cart_reminders"))
    return Message(
        f"key-{n}", "email", f"ada{n}@example.com", f"Hi Ada {n} ✓", "Cart", unsubscribe_url=link
    )


def ref(n: int) -> ledger.SendRef:
    return ledger.SendRef(f"key-{n}", "cart", "remind", f"p{n}", f"e{n}")


@pytest.fixture
def smtp() -> Iterator[SmtpSandbox]:
    with SmtpSandbox() as server:
        yield server


@pytest.fixture
def sender(tmp_path: Path, smtp: SmtpSandbox) -> Iterator[Sender]:
    landing.ensure_layout(tmp_path)
    clients = ChannelSettings.for_sandbox("http://127.0.0.1:9", smtp).clients()
    writer = ledger.LedgerWriter(tmp_path, "smtp-run")
    sender = Sender(httpx.Client(), clients, writer, lambda: NOW, RetryPolicy(attempts=3))
    yield sender
    sender.close()
    writer.close()


def lines(home: Path) -> list[dict[str, object]]:
    folder = landing.table_dir(home, "ledger", "deliveries")
    return [json.loads(line) for f in sorted(folder.glob("run-*.jsonl")) for line in f.open()]


def test_email_goes_over_starttls_and_auth_with_its_headers_and_is_ledgered(
    sender: Sender, smtp: SmtpSandbox, tmp_path: Path
) -> None:
    messages = [email(n) for n in range(6)]
    outcomes = sender.send_batch([Outgoing(ref(n), m) for n, m in enumerate(messages)])
    assert [o.status for o in outcomes] == ["sent"] * 6
    mails = {m.recipients[0]: m for m in smtp.received}
    assert set(mails) == {f"ada{n}@example.com" for n in range(6)}
    mail = mails["ada0@example.com"]
    assert mail.body == "Hi Ada 0 ✓" and mail.header("Subject") == "Cart"
    assert mail.header("From") == "hello@switchyard.example"
    assert mail.header("Message-ID") == "<key-0@switchyard.example>"
    assert mail.header("X-Switchyard-Send-Key") == "key-0"
    # marketing email: one-click unsubscribe (RFC 8058)
    # the link as sent: signing again may fall in the next second (another iat, another token)
    link = messages[0].unsubscribe_url
    assert link and len(link) > 200
    # on the wire as RFC 2369's <URI>, unfolded and not encoded-words
    assert f"\r\nList-Unsubscribe: <{link}>\r\n".encode() in mail.raw
    assert mail.header("List-Unsubscribe-Post") == "List-Unsubscribe=One-Click"
    sent = [line for line in lines(tmp_path) if line["status"] == "sent"]
    assert {line["provider_message_id"] for line in sent} == {
        f"<key-{n}@switchyard.example>" for n in range(6)
    }
    # connections are kept between messages: at most one per sending thread
    assert smtp.sessions <= 2 * 8  # EHLO twice per connection (before and after STARTTLS)


def test_a_4xx_is_sent_again_and_a_5xx_fails_for_good(sender: Sender, smtp: SmtpSandbox) -> None:
    smtp.fail_next("451")
    assert sender.send(ref(1), email(1)).status == "sent"
    assert [m.recipients for m in smtp.received] == [["ada1@example.com"]]  # once, after the 451
    smtp.fail_next("550")
    refused = sender.send(ref(2), email(2))
    assert (refused.status, refused.http_status) == ("failed", 550)
    assert refused.reason == "SMTP 550 5.1.1 Mailbox unavailable"
    assert len(smtp.received) == 1


@pytest.mark.parametrize(
    "fault, status, code, taken",
    [
        ("421", "sent", 250, 1),  # "closing, try later", then gone: sent again on a new one
        ("554-close", "failed", 554, 0),  # refused, then gone: refused all the same
        ("rcpt-550-close", "failed", 550, 0),  # the recipient refused, then gone
    ],
)
def test_the_reply_decides_even_when_the_server_hangs_up_after_it(
    sender: Sender, smtp: SmtpSandbox, fault: SmtpFault, status: str, code: int, taken: int
) -> None:
    smtp.fail_next(fault)
    outcome = sender.send(ref(5), email(5))
    assert (outcome.status, outcome.http_status) == (status, code)
    assert len(smtp.received) == taken
    assert sender.send(ref(6), email(6)).status == "sent"  # the next one opens a new connection


def test_a_message_taken_without_a_reply_is_an_unknown_outcome_not_resent(
    sender: Sender, smtp: SmtpSandbox, tmp_path: Path
) -> None:
    smtp.fail_next("drop")
    outcome = sender.send(ref(3), email(3))
    assert outcome.status == "unknown" and "no SMTP reply" in (outcome.reason or "")
    assert len(smtp.received) == 1  # the server has it; it was not sent blindly again
    state = ledger.read_state(tmp_path)
    assert state.last_status["key-3"] == "unknown" and "key-3" in state.pending
    # the next message opens a new connection and goes
    assert sender.send(ref(4), email(4)).status == "sent"


def test_wrong_credentials_fail_with_what_to_fix(tmp_path: Path, smtp: SmtpSandbox) -> None:
    landing.ensure_layout(tmp_path)
    client = SmtpClient(
        "127.0.0.1",
        smtp.port,
        "hello@shop.example",
        "switchyard",
        "wrong",
        ca_file=str(smtp.ca_file),
    )
    writer = ledger.LedgerWriter(tmp_path, "bad")
    outcome = Sender(httpx.Client(), {"email": client}, writer, lambda: NOW).send(ref(5), email(5))
    writer.close()
    assert outcome.status == "failed"
    assert "535" in (outcome.reason or "") and "SWITCHYARD_SMTP_PASSWORD" in (outcome.reason or "")
    # and a server whose certificate is not trusted is refused before any credentials go
    untrusted = SmtpClient("127.0.0.1", smtp.port, "hello@shop.example", "switchyard", "x")
    refused = untrusted.deliver(email(6))
    assert refused.status == "failed" and "CERTIFICATE_VERIFY_FAILED" in (refused.reason or "")
    assert smtp.received == []


def test_no_server_listening_is_retried_then_left_to_a_later_run(tmp_path: Path) -> None:
    landing.ensure_layout(tmp_path)
    client = SmtpClient("127.0.0.1", 9, "hello@shop.example")
    writer = ledger.LedgerWriter(tmp_path, "down")
    sender = Sender(httpx.Client(), {"email": client}, writer, lambda: NOW, RetryPolicy(attempts=2))
    outcome = sender.send(ref(7), email(7))
    writer.close()
    assert (outcome.status, outcome.reason) == ("deferred", "retrying")
    assert "could not connect" in (outcome.detail or "")
    assert ledger.read_state(tmp_path).refused(ref(7).send_key)


def test_smtp_is_chosen_by_settings_naming_what_is_missing() -> None:
    with pytest.raises(ChannelSettingsError, match="SWITCHYARD_SMTP_HOST"):
        ChannelSettings.from_env(SETTINGS, ["email"])
    settings = ChannelSettings.from_env(
        {
            **SETTINGS,
            "SWITCHYARD_SMTP_HOST": "smtp.shop.example",
            "SWITCHYARD_SMTP_USERNAME": "apikey",
            "SWITCHYARD_SMTP_PASSWORD": "secret",
        },
        ["email"],
    )
    assert isinstance(settings.email, SmtpClient)
    assert (settings.email.host, settings.email.port, settings.email.starttls) == (
        "smtp.shop.example",
        587,
        True,
    )
    with pytest.raises(ChannelSettingsError, match="SWITCHYARD_SMTP_STARTTLS"):
        ChannelSettings.from_env(
            {**SETTINGS, "SWITCHYARD_SMTP_HOST": "h", "SWITCHYARD_SMTP_STARTTLS": "maybe"},
            ["email"],
        )
    with pytest.raises(ChannelSettingsError, match="SWITCHYARD_EMAIL_PROVIDER"):
        ChannelSettings.from_env({**SETTINGS, "SWITCHYARD_EMAIL_PROVIDER": "mailgun"}, ["email"])


def test_the_sandbox_mode_starts_an_smtp_server_for_smtp_email(tmp_path: Path) -> None:
    env = {"SWITCHYARD_CHANNELS": "sandbox", "SWITCHYARD_EMAIL_PROVIDER": "smtp"}
    with open_channels(tmp_path / "received.jsonl", ["email"], env) as settings:
        assert isinstance(settings.email, SmtpClient)
        assert settings.email.deliver(email(8)).status == "sent"
        settings.email.close()
