"""Provider feedback through the collector: SendGrid's Event Webhook and Twilio's callbacks and
inbound texts, signatures checked, landing as feedback events and suppressions that the
send-time guard reads: a bounce or a STOP stops the next message."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from activations import guards, warehouse
from activations.journeys import Step, Template
from activations.ledger import SkipReason
from intake.collector import CollectorSettings, create_app
from intake.feedback import twilio_signature
from switchyard import landing
from switchyard.settings import Paths
from tests.dbt_helpers import dbt_build
from tests.servers import serving
from tests.test_collector import ROTATE

TWILIO_TOKEN = "twilio-auth-token-for-tests"
PRIVATE = ec.generate_private_key(ec.SECP256R1())
PUBLIC = base64.b64encode(
    PRIVATE.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
).decode()


def sendgrid_headers(body: bytes, at: int | None = None, key: Any = PRIVATE) -> dict[str, str]:
    stamp = str(at if at is not None else int(time.time()))
    signature = key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {
        "Content-Type": "application/json",
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
    }


def settings_for(home: Path) -> CollectorSettings:
    return CollectorSettings(
        home, {"wk": "web"}, ROTATE, sendgrid_public_key=PUBLIC, twilio_auth_token=TWILIO_TOKEN
    )


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    landing.ensure_layout(tmp_path)
    with serving(create_app(settings_for(tmp_path))) as url:
        yield url, tmp_path


def landed(home: Path, source: str, table: str, ids: set[str], key: str) -> dict[str, Any]:
    folder = landing.table_dir(home, source, table)
    deadline = time.monotonic() + 20 * ROTATE
    while True:
        rows = {}
        for path in folder.glob("*.jsonl"):
            for line in path.read_text().splitlines():
                if line:
                    row = json.loads(line)
                    rows[row[key]] = row
        if ids <= set(rows):
            return rows
        assert time.monotonic() < deadline, f"never landed: {ids - set(rows)}"
        time.sleep(ROTATE / 4)


# SendGrid's Event Webhook payloads, as its event reference shows them, with our custom_args
# (send_key, journey, step) back as top-level fields.
def sg(event: str, n: int, **extra: Any) -> dict[str, Any]:
    return {"email": f"p{n}@example.com", "timestamp": 1793000000 + n, "smtp-id": f"<{n}@sg>",
            "event": event, "sg_event_id": f"sg-{event}-{n}", "sg_message_id": f"msg{n}.filter",
            "send_key": f"key-{n}", "journey": "cart", "step": "remind", **extra}  # fmt: skip


EVENTS = [
    sg("processed", 0),
    sg("delivered", 1, response="250 OK"),
    sg("open", 2, useragent="Mozilla/5.0", ip="255.255.255.255"),
    sg("click", 3, url="https://example.com/cart"),
    sg("bounce", 4, type="bounce", status="5.0.0", reason="550 no such user"),
    sg("bounce", 5, type="blocked", status="4.0.0", reason="policy"),
    sg("dropped", 6, reason="Bounced Address", status="5.0.0"),
    sg("dropped", 11, reason="Invalid SMTPAPI header"),  # ours, not the address's: no suppression
    sg("group_resubscribe", 12, asm_group_id=10),
    sg("spamreport", 7),
    sg("unsubscribe", 8),
    sg("group_unsubscribe", 9, asm_group_id=10),
    sg("deferred", 10, response="400 try again later", attempt="5"),
]


def test_sendgrid_events_land_as_feedback_and_suppressions(
    collector: tuple[str, Path],
) -> None:
    url, home = collector
    body = json.dumps(EVENTS).encode()
    answer = httpx.post(f"{url}/webhooks/sendgrid", content=body, headers=sendgrid_headers(body))
    assert answer.status_code == 200 and answer.json() == {"landed": 9}
    events = landed(home, "feedback", "events", {"sg-delivered-1", "sg-bounce-4"}, "event_id")
    assert {r["event"] for r in events.values()} == {
        "delivered", "open", "click", "bounce", "dropped", "spamreport", "unsubscribe"
    }  # fmt: skip
    assert events["sg-bounce-4"]["send_key"] == "key-4"
    assert "sg-bounce-5" not in events  # blocked: the receiver's policy, not a bounce
    held = landed(
        home,
        "preferences",
        "suppressions",
        {"sendgrid:sg-bounce-4", "sendgrid:sg-group_resubscribe-12"},
        "suppression_id",
    )
    scopes = {r["address"]: (r["status"], r["scope"], r["reason"]) for r in held.values()}
    assert scopes == {
        "p4@example.com": ("suppressed", "all", "bounce"),
        "p6@example.com": ("suppressed", "all", "dropped: bounced address"),
        "p7@example.com": ("suppressed", "all", "spamreport"),
        "p8@example.com": ("suppressed", "marketing", "unsubscribe"),
        "p9@example.com": ("suppressed", "marketing", "unsubscribe"),
        "p12@example.com": ("lifted", "marketing", "group_resubscribe"),
    }


@pytest.mark.parametrize(
    ("why", "headers"),
    [
        ("unsigned", {"Content-Type": "application/json"}),
        ("another key", "other-key"),
        ("ten minutes old", "old"),
        ("another body", "tampered"),
    ],
)
def test_a_sendgrid_request_not_signed_by_sendgrid_is_refused(
    collector: tuple[str, Path], why: str, headers: Any
) -> None:
    url, home = collector
    body = json.dumps([sg("bounce", 1, type="bounce")]).encode()
    if headers == "other-key":
        headers = sendgrid_headers(body, key=ec.generate_private_key(ec.SECP256R1()))
    elif headers == "old":
        headers = sendgrid_headers(body, at=int(time.time()) - 600)
    elif headers == "tampered":
        headers = sendgrid_headers(json.dumps([sg("bounce", 2, type="bounce")]).encode())
    answer = httpx.post(f"{url}/webhooks/sendgrid", content=body, headers=headers)
    assert answer.status_code == 401, why
    time.sleep(2 * ROTATE)
    assert not list(landing.table_dir(home, "preferences", "suppressions").glob("collect-*"))


def twilio_post(url: str, path: str, params: dict[str, str], token: str = TWILIO_TOKEN) -> Any:
    signature = twilio_signature(token, f"{url}{path}", params)
    return httpx.post(f"{url}{path}", data=params, headers={"X-Twilio-Signature": signature})


def test_stop_start_and_help_from_an_inbound_text(collector: tuple[str, Path]) -> None:
    url, home = collector
    inbound = {"From": "+14155550123", "To": "+14155550100", "AccountSid": "AC1"}
    inbox = "/webhooks/twilio/inbound"

    def text(sid: str, body: str, token: str = TWILIO_TOKEN) -> Any:
        return twilio_post(url, inbox, {**inbound, "MessageSid": sid, "Body": body}, token)

    stop = text("SM1", " stop ")
    assert stop.status_code == 200 and stop.text.endswith("<Response></Response>")
    assert "<Message>Reply STOP to unsubscribe" in text("SM2", "HELP").text
    assert text("SM3", "START", token="guess").status_code == 401
    assert text("SM4", "Start").status_code == 200
    rows = landed(home, "preferences", "suppressions", {"twilio:SM1", "twilio:SM4"},
                  "suppression_id")  # fmt: skip
    assert {k: r["status"] for k, r in rows.items()} == {
        "twilio:SM1": "suppressed", "twilio:SM4": "lifted"
    }  # fmt: skip


def test_a_status_callback_lands_by_send_key(collector: tuple[str, Path]) -> None:
    url, home = collector
    path = "/webhooks/twilio/status?send_key=key-7"
    callback = {"MessageSid": "SM7", "MessageStatus": "undelivered", "To": "+14155550123",
                "ErrorCode": "21610", "AccountSid": "AC1"}  # fmt: skip
    assert twilio_post(url, path, callback).status_code == 200
    sent = {**callback, "MessageSid": "SM8", "MessageStatus": "sent", "ErrorCode": ""}
    assert twilio_post(url, path, sent).status_code == 200  # a step on the way: not landed
    events = landed(home, "feedback", "events", {"twilio:SM7:undelivered"}, "event_id")
    assert events["twilio:SM7:undelivered"]["send_key"] == "key-7" and len(events) == 1
    held = landed(home, "preferences", "suppressions", {"twilio:SM7:21610"}, "suppression_id")
    assert held["twilio:SM7:21610"]["address"] == "+14155550123"


def test_a_stop_landed_after_the_build_stops_the_next_text(paths: Paths) -> None:
    sms_or_email = Step("remind", 0, ("sms", "email"), {
        "sms": Template(body="b"), "email": Template(subject="s", body="b")})  # fmt: skip
    sam = guards.Person("p-sam", "sam", "Sam@Example.com", "+14155550123", None, "Sam",
                        {"sms": "subscribed", "email": "subscribed"})  # fmt: skip
    dbt_build(paths, "int_suppressions_current", "stg_preferences__suppressions")

    def choice() -> guards.Channel | guards.NoChannel:
        with warehouse.attached(paths.duckdb) as con:
            held = warehouse.read_suppressions(con, [sam])  # what read_people reads for Sam
        return guards.choose_channel(sms_or_email, sam, {}, suppressions=held)

    assert choice() == guards.Channel("sms", "+14155550123")
    with serving(create_app(settings_for(paths.landing))) as url:
        inbound = {"From": "+14155550123", "To": "+1415", "MessageSid": "SM9", "Body": "STOP"}
        assert twilio_post(url, "/webhooks/twilio/inbound", inbound).status_code == 200
        bounce = json.dumps([sg("bounce", 1, type="bounce", email="SAM@example.com")]).encode()
        for _ in range(2):  # SendGrid delivers an event again when unsure it arrived
            answer = httpx.post(f"{url}/webhooks/sendgrid", content=bounce,
                                headers=sendgrid_headers(bounce))  # fmt: skip
            assert answer.status_code == 200
        # a later unsubscribe by the same address does not lift the hard bounce
        later = json.dumps([sg("unsubscribe", 2, email="sam@example.com")]).encode()
        answer = httpx.post(f"{url}/webhooks/sendgrid", content=later,
                            headers=sendgrid_headers(later))  # fmt: skip
        assert answer.status_code == 200
    # no rebuild: the view reads the landing files as they are now
    refused = choice()
    assert isinstance(refused, guards.NoChannel) and refused.reason == SkipReason.SUPPRESSED
    assert refused.detail == (
        "sms: +14155550123 suppressed (STOP); email: Sam@Example.com suppressed (bounce)"
    )
    dbt_build(paths, "stg_preferences__suppressions", "int_suppressions_current", command="test")
