"""Delivering due steps: the frequency cap across runs and within one, and sends whose outcome was
lost, settled through the provider's lookup or sent at most once more. Real sandbox, real ledger
files; the warehouse's part (entries, people, consents) is given as it would be read."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest

from activations import engine, guards, ledger, warehouse
from activations.channels import ChannelSettings, Message, Sender
from activations.journeys import FrequencyCap, Journey, Step, Template
from activations.run import RunSummary, deliver
from sandbox import Fault, Sandbox
from switchyard import landing

T = datetime(2026, 11, 2, 10, 0)
BODY = "Hi Sam, your cart is waiting."
JOURNEY = Journey(
    name="cart",
    audience_model="audience_cart",
    tier="seconds",
    steps=(
        Step(
            "remind", 0, ("sms",), {"sms": Template(body="Hi {first_name}, your cart is waiting.")}
        ),
    ),
    exit_on=(),
    frequency_cap=FrequencyCap(messages=1, per_hours=24),
)
SAM = guards.Person(
    "p-sam", "sam", None, "+14155550123", None, "Sam", consent={"sms": "subscribed"}
)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    landing.ensure_layout(tmp_path)
    return tmp_path


def entry(entry_id: str, person: guards.Person = SAM) -> engine.Entry:
    return engine.Entry(entry_id, person.person_id, T - timedelta(minutes=5))


def run(home: Path, sandbox: Sandbox, *entries: engine.Entry, now: datetime = T) -> RunSummary:
    """One journey run as run_journey makes it, from the ledger on disk."""
    state = ledger.read_state(home)
    due, skips = engine.due_now(JOURNEY, entries, state, now)
    writer = ledger.LedgerWriter(home, uuid.uuid4().hex[:8])
    clients = ChannelSettings.for_sandbox(sandbox.base_url).clients()
    sender = Sender(httpx.Client(), clients, writer, lambda: now)
    summary = RunSummary(JOURNEY.name, writer.run_id)
    audience = warehouse.Audience(list(entries), {SAM.person_id: SAM}, {})
    try:
        deliver(JOURNEY, due, skips, audience, state, sender, summary)
    finally:
        writer.close()
    return summary


def ref_for(entry_id: str, journey: str = JOURNEY.name, step: str = "remind") -> ledger.SendRef:
    key = ledger.send_key(journey, step, SAM.person_id, entry_id)
    return ledger.SendRef(key, journey, step, SAM.person_id, entry_id)


def record(
    home: Path, ref: ledger.SendRef, status: ledger.LedgerStatus, at: datetime, **kw: object
) -> None:
    writer = ledger.LedgerWriter(home, "earlier")
    writer.write(ref, status, at, channel="sms", recipient=SAM.phone, body=BODY, **kw)
    writer.close()


def test_a_send_recorded_by_an_earlier_run_caps_the_person_now(
    home: Path, sandbox: Sandbox
) -> None:
    # An hour ago another journey sent Sam a message; the cap is one a day, across journeys.
    record(home, ref_for("e0", journey="welcome"), "sent", T - timedelta(hours=1))
    summary = run(home, sandbox, entry("e1"))
    assert summary.skipped == {"capped": 1} and sandbox.received == []


def test_a_send_older_than_the_cap_window_does_not_cap(home: Path, sandbox: Sandbox) -> None:
    record(home, ref_for("e0", journey="welcome"), "sent", T - timedelta(hours=25))
    summary = run(home, sandbox, entry("e1"))
    assert summary.sent == {"sms": 1} and len(sandbox.received) == 1


def test_a_send_earlier_in_the_same_run_caps_the_next(home: Path, sandbox: Sandbox) -> None:
    # Sam entered twice; both entries are due at once: one message, one capped.
    summary = run(home, sandbox, entry("e1"), entry("e2"))
    assert (summary.sent, summary.skipped) == ({"sms": 1}, {"capped": 1})
    assert [r.recipient for r in sandbox.received] == [SAM.phone]


def twilio_accepts(sandbox: Sandbox, send_key: str) -> str:
    """Twilio takes the message and the answer is lost on its way back (as if we crashed)."""
    client = ChannelSettings.for_sandbox(sandbox.base_url).clients()["sms"]
    with httpx.Client() as http:
        message = Message(send_key, "sms", SAM.phone or "", BODY)
        response = http.send(client.build_request(http, message))
    assert response.status_code == 201
    return str(response.json()["sid"])


def test_an_unknown_sms_that_twilio_has_is_recorded_not_sent_again(
    home: Path, sandbox: Sandbox
) -> None:
    ref = ref_for("e1")
    record(home, ref, "attempted", T - timedelta(minutes=2), attempt=1)
    sid = twilio_accepts(sandbox, ref.send_key)
    summary = run(home, sandbox, entry("e1"))
    assert (summary.sent, summary.reconciled) == ({"sms": 1}, 1)
    assert len(sandbox.received) == 1  # only the first, lost-answer one
    state = ledger.read_state(home)
    assert (state.last_status[ref.send_key], state.attempts[ref.send_key]) == ("sent", 1)
    assert ledger_provider_id(home, ref.send_key) == sid


def test_an_unknown_sms_twilio_never_got_is_sent_once_more(home: Path, sandbox: Sandbox) -> None:
    # Sam already has this very text from an earlier entry: that message is not mistaken for ours.
    earlier = ref_for("e0")
    sid = twilio_accepts(sandbox, earlier.send_key)
    record(home, earlier, "sent", T - timedelta(days=2), provider_message_id=sid, attempt=1)
    ref = ref_for("e1")
    record(home, ref, "attempted", T - timedelta(minutes=2), attempt=1)
    summary = run(home, sandbox, entry("e1"))
    assert (summary.sent, summary.reconciled) == ({"sms": 1}, 0)
    assert len(sandbox.received) == 2
    state = ledger.read_state(home)
    assert (state.last_status[ref.send_key], state.attempts[ref.send_key]) == ("sent", 2)


def test_a_failed_lookup_sends_nothing_and_says_why(home: Path, sandbox: Sandbox) -> None:
    ref = ref_for("e1")
    record(home, ref, "attempted", T - timedelta(minutes=2), attempt=1)
    sandbox.fail_next(Fault("twilio", 500))  # the Messages list answers 500
    summary = run(home, sandbox, entry("e1"))
    assert summary.unknown == {"sms": 1} and sandbox.received == []
    state = ledger.read_state(home)
    assert (state.last_status[ref.send_key], state.attempts[ref.send_key]) == ("unknown", 1)


def ledger_provider_id(home: Path, send_key: str) -> str | None:
    folder = landing.table_dir(home, "ledger", "deliveries")
    lines = [
        json.loads(line) for f in folder.glob("*.jsonl") for line in f.read_text().splitlines()
    ]
    sent = [x for x in lines if x["send_key"] == send_key and x["status"] == "sent"]
    return sent[0]["provider_message_id"] if sent else None
