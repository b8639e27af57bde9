"""Delivering due steps: the frequency cap across runs and within one, and sends whose outcome was
lost, settled through the provider's lookup or sent at most once more. Real sandbox, real ledger
files; the warehouse's part (entries, people, consents) is given as it would be read."""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import stamina

from activations import cap_policy, engine, guards, ledger, warehouse
from activations.cap_policy import CapPolicy
from activations.channels import ChannelSettings, Message, RetryPolicy, Sender
from activations.channels.core import LookupFailed
from activations.channels.twilio import TwilioClient
from activations.graph import ConnectedContent
from activations.journeys import FrequencyCap, Journey, QuietHours, Step, Template
from activations.ledger.compact import compact
from activations.run import BATCH_SIZE, ReadGuards, RunSummary, deliver
from activations.tick import DueSend
from sandbox import RANDOM_FAULTS, SANDBOX_CREDENTIALS, Fault, Sandbox
from switchyard import landing, preference_links
from switchyard.clock import utc_now
from switchyard.preference_links import LinkSigner, LinkSubject

T = datetime(2026, 11, 2, 10, 0)
BODY = "Hi Sam, your cart is waiting."
JOURNEY = Journey(
    name="cart",
    audience_model="audience_cart",
    tier="seconds",
    nodes=(
        Step(
            "remind", 0, ("sms",), {"sms": Template(body="Hi {first_name}, your cart is waiting.")}
        ),
    ),
    exit_on=(),
    frequency_cap=FrequencyCap(messages=1, per_hours=24),
)
UNCAPPED = replace(JOURNEY, frequency_cap=None)
SAM = guards.Person(
    "p-sam", "sam", None, "+14155550123", None, "Sam", consent={"sms": "subscribed"}
)


@pytest.fixture
def clock() -> list[datetime]:
    """The providers' clock, in step with the runs' (set it to move time for the sandbox)."""
    return [T]


@pytest.fixture
def sandbox(clock: list[datetime]) -> Iterator[Sandbox]:
    # Twilio keeps a message `queued` (no date_sent) until it is handed on: here, for an hour.
    with Sandbox(clock=lambda: clock[0].replace(tzinfo=UTC), twilio_send_after_seconds=3600) as sb:
        yield sb


@pytest.fixture
def home(tmp_path: Path) -> Path:
    landing.ensure_layout(tmp_path)
    return tmp_path


def entry(entry_id: str, person: guards.Person = SAM) -> engine.Entry:
    return engine.Entry(entry_id, person.person_id, T - timedelta(minutes=5))


def run(
    home: Path,
    sandbox: Sandbox,
    *entries: engine.Entry,
    now: datetime = T,
    journey: Journey = JOURNEY,
    person: guards.Person = SAM,
    others: Iterable[guards.Person] = (),
    consents: guards.FreshConsents | None = None,
    suppressions: guards.Suppressions | None = None,
    links: LinkSigner | None = None,
    aliases: dict[str, list[str]] | None = None,
    reread: ReadGuards | None = None,
    batch_size: int = BATCH_SIZE,
) -> RunSummary:
    """One journey run as run_journey makes it, from the ledger on disk (`aliases`: as
    dim_person_aliases names replaced person ids; `reread`: the guards read again before every
    step; `batch_size`: messages a batch, and so a request of a provider that takes several)."""
    state = ledger.read_state(home)
    state.follow_aliases(aliases or {})
    writer = ledger.LedgerWriter(home, uuid.uuid4().hex[:8])
    clients = ChannelSettings.for_sandbox(sandbox.base_url).clients()
    sender = Sender(httpx.Client(), clients, writer, lambda: now)
    due_sends = as_due(journey, entries, now)
    due, skips = engine.classify(journey, due_sends, state, now, sender.can_look_up)
    summary = RunSummary(journey.name, writer.run_id)
    audience = warehouse.Audience(
        {p.person_id: p for p in (person, *others)}, consents or {}, suppressions or {}
    )
    try:
        deliver(journey, due, skips, audience, state, sender, summary, links=links,
                reread=reread, reread_seconds=0, batch_size=batch_size)  # fmt: skip
    finally:
        writer.close()
    return summary


def as_due(journey: Journey, entries: Iterable[engine.Entry], now: datetime) -> list[DueSend]:
    """Each entry at each step that is due by `now`, as the tick would hand them on (the tick's
    own part is tested in test_journey_engine)."""
    return [
        DueSend(
            e.entry_id,
            e.person_id,
            step.name,
            ledger.send_key(journey.name, step.name, e.person_id, e.entry_id),
            e.enters_at + timedelta(minutes=step.wait_minutes),
            e.enters_at,
            e.arm,
            json.dumps(e.properties) if e.properties else None,
        )  # fmt: skip
        for e in entries
        for step in journey.steps
        if e.enters_at + timedelta(minutes=step.wait_minutes) <= now
    ]


def ref_for(
    entry_id: str, journey: str = JOURNEY.name, step: str = "remind", person: str = SAM.person_id
) -> ledger.SendRef:
    key = ledger.send_key(journey, step, person, entry_id)
    return ledger.SendRef(key, journey, step, person, entry_id)


MERGED = {"p-old": [SAM.person_id]}  # Sam went by p-old before identity resolution merged them


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
    assert summary.deferred == {"capped": 1} and summary.skipped == {}
    assert sandbox.received == []
    line = ledger_line(home, ref_for("e1").send_key, "deferred")
    # deferred until the earlier message leaves the 24 h window
    assert (line["status"], line["reason"], line["reason_detail"]) == (
        "deferred", "capped", f"until {(T + timedelta(hours=23)).isoformat()}",
    )  # fmt: skip


def test_a_capped_step_is_sent_by_a_later_run_once_the_cap_allows(
    home: Path, sandbox: Sandbox
) -> None:
    record(home, ref_for("e0", journey="welcome"), "sent", T - timedelta(hours=1))
    assert run(home, sandbox, entry("e1")).deferred == {"capped": 1}
    # Still within the window a run later: deferred again, nothing sent.
    assert run(home, sandbox, entry("e1"), now=T + timedelta(hours=22)).deferred == {"capped": 1}
    later = run(home, sandbox, entry("e1"), now=T + timedelta(hours=23, minutes=1))
    assert later.sent == {"sms": 1} and later.deferred == {}
    assert [r.recipient for r in sandbox.received] == [SAM.phone]
    # and once sent, it is decided: a further run sends nothing more
    again = run(home, sandbox, entry("e1"), now=T + timedelta(hours=30))
    assert (again.sent, again.deferred, len(sandbox.received)) == ({}, {}, 1)


def test_the_projects_cap_policy_holds_back_a_journey_without_a_cap_of_its_own(
    home: Path, sandbox: Sandbox
) -> None:
    # An hour ago another journey sent Sam a message. Uncapped, this journey sends; under the
    # project's policy (one a day; skip) it holds back, as a journey's own cap would.
    record(home, ref_for("e0", journey="welcome"), "sent", T - timedelta(hours=1))
    (capped,) = cap_policy.apply([UNCAPPED], CapPolicy(1, 24, on_cap="skip"))
    held = run(home, sandbox, entry("e1"), journey=capped)
    assert (held.sent, held.skipped) == ({}, {"capped": 1})
    assert run(home, sandbox, entry("e2"), journey=UNCAPPED).sent == {"sms": 1}


def test_a_transactional_journey_is_neither_capped_nor_quiet_nor_counted(
    home: Path, sandbox: Sandbox
) -> None:
    # Sam had a message an hour ago (cap: one a day) and it is night in New York: a receipt
    # goes all the same.
    record(home, ref_for("e0", journey="welcome"), "sent", T - timedelta(hours=1))
    receipt = replace(NIGHTS, name="receipts", message_type="transactional",
                      frequency_cap=JOURNEY.frequency_cap)  # fmt: skip
    summary = run(home, sandbox, entry("e1"), journey=receipt, person=NEW_YORKER)
    assert (summary.sent, summary.deferred) == ({"sms": 1}, {})
    # and the receipt does not count toward the cap of a marketing journey
    people = {SAM.person_id}
    counted = ledger.read_state(home, people=people, sends_since=T - timedelta(days=1))
    assert counted.sends_within(SAM.person_id, T, 24) == 2
    exempt = ledger.read_state(
        home, people=people, sends_since=T - timedelta(days=1), uncounted_journeys={"receipts"}
    )
    assert exempt.sends_within(SAM.person_id, T, 24) == 1
    # nor does a receipt whose outcome is still in doubt
    record(home, ref_for("e9", journey="receipts"), "attempted", T - timedelta(minutes=5))
    doubt = ledger.read_state(
        home, people=people, sends_since=T - timedelta(days=1), uncounted_journeys={"receipts"}
    )
    assert ref_for("e9", journey="receipts").send_key in doubt.pending
    assert doubt.sends_within(SAM.person_id, T, 24) == 1


def test_a_topic_opt_out_holds_on_top_of_marketing_consent(home: Path, sandbox: Sandbox) -> None:
    tips = replace(UNCAPPED, topic="tips")
    said = T - timedelta(minutes=1)
    out: guards.FreshConsents = {("sam", "sms", "tips"): ("unsubscribed", said)}
    summary = run(home, sandbox, entry("e1"), journey=tips, consents=out)
    assert (summary.sent, summary.skipped) == ({}, {"no_consent": 1})
    line = ledger_line(home, ref_for("e1").send_key, "skipped")
    assert line["reason_detail"] == "sms: topic tips unsubscribed"
    # the same person on a journey of another topic, or of none, gets it
    assert run(home, sandbox, entry("e2"), journey=UNCAPPED, consents=out).sent == {"sms": 1}
    # an opt-in topic needs an explicit subscription
    opt_in = replace(tips, topic_opt_in=True)
    assert run(home, sandbox, entry("e3"), journey=opt_in).skipped == {"no_consent": 1}
    joined: guards.FreshConsents = {("sam", "sms", "tips"): ("subscribed", said)}
    assert run(home, sandbox, entry("e4"), journey=opt_in, consents=joined).sent == {"sms": 1}
    # and a newer marketing opt-out still wins over the topic
    both = {**joined, ("sam", "sms", "marketing"): ("unsubscribed", said)}
    assert run(home, sandbox, entry("e5"), journey=opt_in, consents=both).sent == {}


def test_an_opt_out_landed_while_the_run_sends_holds_for_the_steps_after_it(
    home: Path, sandbox: Sandbox
) -> None:
    # Sam's opt-out lands after his first step went to its queue: his second is not sent.
    asked: list[list[str]] = []

    def reread(people: list[guards.Person]) -> tuple[guards.FreshConsents, guards.Suppressions]:
        asked.append([p.person_id for p in people])
        opted_out = ("unsubscribed", T) if len(asked) > 1 else ("subscribed", T - timedelta(days=1))
        return {("sam", "sms", "marketing"): opted_out}, {}

    summary = run(home, sandbox, entry("e1"), entry("e2"), journey=UNCAPPED, reread=reread)
    assert (summary.sent, summary.skipped) == ({"sms": 1}, {"no_consent": 1})
    assert asked == [[SAM.person_id]] * 2
    assert ledger_line(home, ref_for("e2").send_key, "skipped")["reason_detail"] == (
        "sms: marketing consent unsubscribed"
    )


def test_a_transactional_message_needs_no_marketing_consent_but_stop_holds(
    home: Path, sandbox: Sandbox
) -> None:
    receipt = replace(UNCAPPED, name="receipts", message_type="transactional")
    never_asked = replace(SAM, consent={})
    summary = run(home, sandbox, entry("e1"), journey=receipt, person=never_asked)
    assert summary.sent == {"sms": 1}
    assert run(home, sandbox, entry("e1"), person=never_asked, now=T).skipped == {"no_consent": 1}
    stop: guards.FreshConsents = {("sam", "sms", "marketing"): ("unsubscribed", T)}
    summary = run(home, sandbox, entry("e2"), journey=receipt, consents=stop)
    assert summary.skipped == {"no_consent": 1} and len(sandbox.received) == 1


def test_a_suppressed_number_is_skipped_and_an_unsubscribe_spares_receipts(
    home: Path, sandbox: Sandbox
) -> None:
    stop: guards.Suppressions = {("sms", SAM.phone or ""): ("all", "STOP")}
    summary = run(home, sandbox, entry("e1"), journey=UNCAPPED, suppressions=stop)
    assert (summary.sent, summary.skipped) == ({}, {"suppressed": 1})
    line = ledger_line(home, ref_for("e1").send_key, "skipped")
    assert line["reason_detail"] == f"sms: {SAM.phone} suppressed (STOP)"
    receipt = replace(UNCAPPED, name="receipts", message_type="transactional")
    assert run(home, sandbox, entry("e2"), journey=receipt, suppressions=stop).sent == {}
    unsubscribed: guards.Suppressions = {("sms", SAM.phone or ""): ("marketing", "unsubscribe")}
    assert run(home, sandbox, entry("e3"), journey=UNCAPPED, suppressions=unsubscribed).sent == {}
    spared = run(home, sandbox, entry("e4"), journey=receipt, suppressions=unsubscribed)
    assert spared.sent == {"sms": 1}


def test_a_deferred_step_expires_and_skip_policy_never_defers(home: Path, sandbox: Sandbox) -> None:
    expiring = replace(JOURNEY, nodes=(replace(JOURNEY.steps[0], expires_after_hours=6),))
    record(home, ref_for("e0", journey="welcome"), "sent", T - timedelta(hours=1))
    assert run(home, sandbox, entry("e1"), journey=expiring).deferred == {"capped": 1}
    late = run(home, sandbox, entry("e1"), journey=expiring, now=T + timedelta(hours=7))
    assert late.skipped == {"expired": 1} and sandbox.received == []
    assert JOURNEY.frequency_cap is not None
    skipping = replace(JOURNEY, frequency_cap=replace(JOURNEY.frequency_cap, on_cap="skip"))
    summary = run(home, sandbox, entry("e2"), journey=skipping)
    assert (summary.skipped, summary.deferred) == ({"capped": 1}, {})
    # on_cap exit: skipped the same way, and the line says the entry leaves (the tick reads it)
    exiting = replace(JOURNEY, frequency_cap=replace(JOURNEY.frequency_cap, on_cap="exit"))
    summary = run(home, sandbox, entry("e3"), journey=exiting)
    assert (summary.skipped, summary.deferred) == ({"capped": 1}, {})
    line = ledger_line(home, ref_for("e3").send_key, "skipped")
    assert (line["reason"], line["reason_detail"]) == (
        "capped",
        "on_cap exit: the entry leaves the journey",
    )


def test_a_send_older_than_the_cap_window_does_not_cap(home: Path, sandbox: Sandbox) -> None:
    record(home, ref_for("e0", journey="welcome"), "sent", T - timedelta(hours=25))
    summary = run(home, sandbox, entry("e1"))
    assert summary.sent == {"sms": 1} and len(sandbox.received) == 1


def test_a_send_earlier_in_the_same_run_caps_the_next(home: Path, sandbox: Sandbox) -> None:
    # Sam entered twice; both entries are due at once: one message, one capped.
    summary = run(home, sandbox, entry("e1"), entry("e2"))
    assert (summary.sent, summary.deferred) == ({"sms": 1}, {"capped": 1})
    assert [r.recipient for r in sandbox.received] == [SAM.phone]


def accepted_at(clock: list[datetime], when: datetime, sandbox: Sandbox, send_key: str) -> str:
    """Twilio accepted this text at `when` (its clock), and the answer was lost."""
    clock[0] = when
    try:
        return twilio_accepts(sandbox, send_key)
    finally:
        clock[0] = T


def twilio_accepts(sandbox: Sandbox, send_key: str, body: str = BODY, sender: str = "") -> str:
    """Twilio takes the message and the answer is lost on its way back (as if we crashed)."""
    client = ChannelSettings.for_sandbox(sandbox.base_url).clients()["sms"]
    if sender:
        client = replace(client, from_number=sender)  # type: ignore[type-var]
    with httpx.Client() as http:
        message = Message(send_key, "sms", SAM.phone or "", body)
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


def test_an_unknown_sms_twilio_never_got_is_sent_once_more(
    home: Path, sandbox: Sandbox, clock: list[datetime]
) -> None:
    # An hour ago Sam got this very text for an earlier entry: it is not mistaken for this one.
    earlier = ref_for("e0")
    sid = accepted_at(clock, T - timedelta(hours=1), sandbox, earlier.send_key)
    record(home, earlier, "sent", T - timedelta(hours=1), provider_message_id=sid, attempt=1)
    ref = ref_for("e1")
    record(home, ref, "attempted", T - timedelta(hours=2), attempt=1)
    summary = run(home, sandbox, entry("e1"), journey=UNCAPPED)
    assert (summary.sent, summary.reconciled) == ({"sms": 1}, 0)
    assert len(sandbox.received) == 2
    state = ledger.read_state(home)
    assert (state.last_status[ref.send_key], state.attempts[ref.send_key]) == ("sent", 2)


def test_an_unknown_sms_under_a_merged_id_is_settled_once_under_the_new_one(
    home: Path, sandbox: Sandbox
) -> None:
    # Sent to Sam's phone under the id Sam had before a merge, the answer lost.
    old = ref_for("e1", person="p-old")
    record(home, old, "attempted", T - timedelta(minutes=2), attempt=1)
    twilio_accepts(sandbox, old.send_key)
    # The step goes on under Sam's id: the lookup finds the message; nothing is sent again.
    summary = run(home, sandbox, entry("e1"), aliases=MERGED)
    assert (summary.sent, summary.reconciled) == ({"sms": 1}, 1)
    # The old key then goes on as the new one: not 'exited', and not a decision of its own.
    later = run(home, sandbox, now=T + timedelta(minutes=5), aliases=MERGED)
    assert (later.skipped, later.superseded, len(sandbox.received)) == ({}, 1, 1)
    state = ledger.read_state(home)
    assert state.last_status == {old.send_key: "skipped", ref_for("e1").send_key: "sent"}
    assert run(home, sandbox, now=T + timedelta(minutes=10), aliases=MERGED).skipped == {}


def test_a_lookup_that_failed_under_the_new_key_leaves_the_old_attempt_in_doubt(
    home: Path, sandbox: Sandbox
) -> None:
    old = ref_for("e1", person="p-old")
    record(home, old, "attempted", T - timedelta(minutes=2), attempt=1)
    twilio_accepts(sandbox, old.send_key)  # Twilio has the text
    sandbox.fail_next(Fault("twilio", status=503))  # the lookup under the new key fails once
    first = run(home, sandbox, entry("e1"), aliases=MERGED)
    assert first.sent == {} and len(sandbox.received) == 1
    # The new key's 'unknown' line (the failed lookup) carries no attempt of its own: the next
    # run looks the old attempt up again, finds it, and sends nothing.
    later = run(home, sandbox, entry("e1"), now=T + timedelta(minutes=5), aliases=MERGED)
    assert (later.sent, later.reconciled, len(sandbox.received)) == ({"sms": 1}, 1, 1)


def test_a_step_deferred_under_the_new_id_stays_due_as_an_unmerged_one_would(
    home: Path, sandbox: Sandbox
) -> None:
    # Two attempts Twilio never got (the second sent once more after a lookup), under the old
    # id; the step goes on under Sam's id, and the cap holds it back run after run.
    old = ref_for("e1", person="p-old")
    record(home, old, "attempted", T - timedelta(minutes=3), attempt=1)
    record(home, old, "attempted", T - timedelta(minutes=2), attempt=2)
    record(home, ref_for("e0", journey="welcome"), "sent", T - timedelta(hours=1))  # the cap
    for minute in range(3):
        summary = run(home, sandbox, entry("e1"), now=T + timedelta(minutes=minute), aliases=MERGED)
        # not failed as outcome_unknown: Twilio's list says none of them arrived
        assert (summary.deferred, summary.failed, summary.gave_up) == ({"capped": 1}, {}, 0)
    assert sandbox.received == []
    later = run(home, sandbox, entry("e1"), now=T + timedelta(hours=23, minutes=1), aliases=MERGED)
    assert (later.sent, len(sandbox.received)) == ({"sms": 1}, 1)  # once the cap allows


def test_an_unknown_sms_under_a_merged_id_whose_entry_left_is_looked_up_not_superseded(
    home: Path, sandbox: Sandbox
) -> None:
    # The entry left before its step was due under the new id: no key goes on from the old
    # one, whose attempt is still its own to settle (Twilio has the message: sent).
    old = ref_for("e1", person="p-old")
    record(home, old, "attempted", T - timedelta(minutes=2), attempt=1)
    twilio_accepts(sandbox, old.send_key)
    summary = run(home, sandbox, aliases=MERGED)
    assert (summary.skipped, summary.superseded, summary.reconciled) == ({}, 0, 1)
    assert ledger.read_state(home).last_status == {old.send_key: "sent"}


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


def test_a_lookup_never_claims_a_message_recorded_for_another_send(
    home: Path, sandbox: Sandbox
) -> None:
    # Sam's first entry is texted; his second gets the same text, and Twilio answers 503.
    assert run(home, sandbox, entry("e1"), journey=UNCAPPED).sent == {"sms": 1}
    sandbox.fail_next(Fault("twilio", 503))
    summary = run(home, sandbox, entry("e1"), entry("e2"), journey=UNCAPPED)
    assert (summary.unknown, summary.reconciled) == ({"sms": 1}, 0)  # e1's text is not e2's
    state = ledger.read_state(home)
    assert state.last_status[ref_for("e2").send_key] == "unknown"


def test_the_lookup_skips_texts_that_are_not_ours(
    home: Path, sandbox: Sandbox, clock: list[datetime]
) -> None:
    ref = ref_for("e1")
    clock[0] = T - timedelta(days=1)
    twilio_accepts(sandbox, "old")  # the same text a day before the attempt: not this one
    clock[0] = T - timedelta(minutes=1)
    record(home, ref, "attempted", T - timedelta(minutes=2), attempt=1)
    twilio_accepts(sandbox, "other", body="Another text entirely.")
    twilio_accepts(sandbox, "other-number", sender="+14155550199")
    clock[0] = T
    summary = run(home, sandbox, entry("e1"))
    assert (summary.sent, summary.reconciled) == ({"sms": 1}, 0)  # none matched: sent once more
    assert len(sandbox.received) == 4


def test_a_messaging_service_lookup_checks_the_sender_itself(sandbox: Sandbox) -> None:
    # Sent through a Messaging Service, the list cannot be filtered by From: the client checks.
    client = ChannelSettings.for_sandbox(sandbox.base_url).clients()["sms"]
    assert isinstance(client, TwilioClient)
    service = replace(client, from_number=None, messaging_service_sid="MG" + "1" * 32)
    message = Message("k1", "sms", SAM.phone or "", BODY)
    with httpx.Client() as http:
        ours = http.send(service.build_request(http, message)).json()["sid"]
        http.send(client.build_request(http, message))  # the same text from a plain number
        assert service.find_sent(http, message, T - timedelta(minutes=1), ()) == ours


def test_the_lookup_pages_until_it_finds_ours(home: Path, sandbox: Sandbox) -> None:
    ref = ref_for("e1")
    record(home, ref, "attempted", T - timedelta(minutes=2), attempt=1)
    sid = twilio_accepts(sandbox, ref.send_key)
    for n in range(3):  # newer texts to Sam come first in the list
        twilio_accepts(sandbox, f"later-{n}", body=f"Later text {n}.")
    client = ChannelSettings.for_sandbox(sandbox.base_url).clients()["sms"]
    assert isinstance(client, TwilioClient)
    one_per_page = replace(client, page_size=1)
    message = Message(ref.send_key, "sms", SAM.phone or "", BODY)
    with httpx.Client() as http:
        assert one_per_page.find_sent(http, message, T - timedelta(minutes=2), ()) == sid
        assert one_per_page.find_sent(http, message, T - timedelta(minutes=2), {sid}) is None


def test_an_earlier_attempt_found_by_the_lookup_is_sent_not_skipped(
    home: Path, sandbox: Sandbox
) -> None:
    # Sam bought in the meantime (exited), but the text had gone out: the ledger says so.
    ref = ref_for("e1")
    record(home, ref, "attempted", T - timedelta(minutes=2), attempt=1)
    twilio_accepts(sandbox, ref.send_key)
    summary = run(home, sandbox)  # e1 is no longer at the step: nothing of it is due
    assert (summary.sent, summary.skipped, summary.reconciled) == ({"sms": 1}, {}, 1)
    assert ledger.read_state(home).last_status[ref.send_key] == "sent"


def test_an_attempt_still_unknown_after_one_more_fails_for_good(
    home: Path, sandbox: Sandbox
) -> None:
    # Email over SendGrid, which has no lookup: nothing can say these did not go out.
    ref = ref_for("e1")
    writer = ledger.LedgerWriter(home, "earlier")
    for n, hours in ((1, 2), (2, 1)):
        writer.write(ref, "attempted", T - timedelta(hours=hours), attempt=n, channel="email",
                     recipient="sam@example.com", subject="Your cart", body=BODY)  # fmt: skip
    writer.close()
    summary = run(home, sandbox, entry("e1"))
    assert (summary.gave_up, summary.sent, sandbox.received) == (1, {}, [])
    state = ledger.read_state(home)
    assert (state.last_status[ref.send_key], state.attempts[ref.send_key]) == ("failed", 2)
    # It may have gone out: it still counts toward Sam's cap.
    assert state.sends_within(SAM.person_id, T, 24) == 1


def test_a_text_twilio_does_not_have_is_sent_again_after_two_unknown_attempts(
    home: Path, sandbox: Sandbox
) -> None:
    # Twilio's list says first whether an attempt went out: absent, it is sent again safely.
    ref = ref_for("e1")
    record(home, ref, "attempted", T - timedelta(hours=2), attempt=1)
    record(home, ref, "attempted", T - timedelta(hours=1), attempt=2)
    summary = run(home, sandbox, entry("e1"))
    assert (summary.gave_up, summary.sent, len(sandbox.received)) == (0, {"sms": 1}, 1)
    assert ledger.read_state(home).attempts[ref.send_key] == 3
    # and found, it is recorded as sent, not sent again
    record(home, ref_for("e2"), "attempted", T - timedelta(minutes=1), attempt=2)
    twilio_accepts(sandbox, ref_for("e2").send_key)
    assert run(home, sandbox, entry("e2")).reconciled == 1 and len(sandbox.received) == 2


def test_an_unknown_attempt_held_back_by_a_guard_stays_visible(
    home: Path, sandbox: Sandbox
) -> None:
    # An email whose answer was lost (SendGrid has no lookup), then Sam opts out: it may have
    # gone out, so it is not 'skipped' but failed as outcome_unknown, with what was attempted.
    ref = ref_for("e1")
    writer = ledger.LedgerWriter(home, "earlier")
    writer.write(ref, "attempted", T - timedelta(minutes=2), attempt=1, channel="email",
                 recipient="sam@example.com", subject="Your cart", body=BODY)  # fmt: skip
    writer.close()
    opted_out = replace(SAM, consent={"sms": "unsubscribed"})
    summary = run(home, sandbox, entry("e1"), person=opted_out)
    assert (summary.gave_up, summary.skipped, sandbox.received) == (1, {}, [])
    line = ledger_line(home, ref.send_key, "failed")
    assert (line["reason"], line["reason_detail"]) == (
        "outcome_unknown",
        "not sent once more: no_consent",
    )
    assert (line["channel"], line["recipient"]) == ("email", "sam@example.com")
    assert ledger.read_state(home).sends_within(SAM.person_id, T, 24) == 1


def test_an_sms_twilio_never_got_is_skipped_like_any_other(home: Path, sandbox: Sandbox) -> None:
    # Twilio's list shows the lost attempt never arrived: an opt-out now skips it, and it does
    # not count toward the cap.
    ref = ref_for("e1")
    record(home, ref, "attempted", T - timedelta(minutes=2), attempt=1)
    opted_out = replace(SAM, consent={"sms": "unsubscribed"})
    summary = run(home, sandbox, entry("e1"), person=opted_out)
    assert (summary.gave_up, summary.skipped, sandbox.received) == (0, {"no_consent": 1}, [])
    assert ledger.read_state(home).sends_within(SAM.person_id, T, 24) == 0


def test_a_settled_attempt_counts_once_toward_the_cap(home: Path, sandbox: Sandbox) -> None:
    # Two a day allowed. e1's first attempt was lost and never reached Twilio: sent once more
    # now, it is one message, not two, so e2 still goes out.
    two_a_day = replace(JOURNEY, frequency_cap=FrequencyCap(messages=2, per_hours=24))
    record(home, ref_for("e1"), "attempted", T - timedelta(minutes=2), attempt=1)
    summary = run(home, sandbox, entry("e1"), entry("e2"), journey=two_a_day)
    assert (summary.sent, summary.skipped) == ({"sms": 2}, {})


def test_a_reconciled_send_counts_toward_the_cap_in_the_same_run(
    home: Path, sandbox: Sandbox
) -> None:
    ref = ref_for("e1")
    record(home, ref, "attempted", T - timedelta(minutes=2), attempt=1)
    twilio_accepts(sandbox, ref.send_key)
    summary = run(home, sandbox, entry("e1"), entry("e2"))
    assert (summary.reconciled, summary.deferred) == (1, {"capped": 1})
    assert len(sandbox.received) == 1


def ledger_line(home: Path, send_key: str, status: str) -> dict[str, object]:
    folder = landing.table_dir(home, "ledger", "deliveries")
    lines = [
        json.loads(line) for f in folder.glob("*.jsonl") for line in f.read_text().splitlines()
    ]
    (line,) = [x for x in lines if x["send_key"] == send_key and x["status"] == status]
    return line


def test_a_message_accepted_before_a_5xx_is_found_at_once(home: Path, sandbox: Sandbox) -> None:
    sandbox.fail_next(Fault("twilio", 503, after_processing=True))  # took it, then answered 503
    summary = run(home, sandbox, entry("e1"))
    assert (summary.sent, summary.reconciled, len(sandbox.received)) == ({"sms": 1}, 1, 1)


def test_the_lookup_reads_past_older_texts_sent_later(
    home: Path, sandbox: Sandbox, clock: list[datetime]
) -> None:
    # Twilio orders its list by date sent. A text created 20 minutes ago but held in Twilio's
    # queue until a minute ago comes before ours (still queued): the lookup reads on.
    ref = ref_for("e1")
    sandbox.twilio_send_after_seconds = 19 * 60
    clock[0] = T - timedelta(minutes=20)
    twilio_accepts(sandbox, "older", body="An older text.")
    sandbox.twilio_send_after_seconds = 3600
    clock[0] = T - timedelta(minutes=2)
    record(home, ref, "attempted", T - timedelta(minutes=2), attempt=1)
    sid = twilio_accepts(sandbox, ref.send_key)
    clock[0] = T
    client = ChannelSettings.for_sandbox(sandbox.base_url).clients()["sms"]
    assert isinstance(client, TwilioClient)
    message = Message(ref.send_key, "sms", SAM.phone or "", BODY)
    with httpx.Client() as http:
        listed = http.get(
            f"{sandbox.base_url}/2010-04-01/Accounts/{client.account_sid}/Messages.json",
            params={"To": SAM.phone or ""},
            headers={"authorization": client.build_request(http, message).headers["authorization"]},
        ).json()["messages"]
        assert [m["body"] for m in listed] == ["An older text.", BODY]
        assert (
            replace(client, page_size=1).find_sent(http, message, T - timedelta(minutes=2), ())
            == sid
        )


def test_a_lookup_past_its_page_limit_fails_instead_of_guessing(
    home: Path, sandbox: Sandbox
) -> None:
    for n in range(3):
        twilio_accepts(sandbox, f"other-{n}", body=f"Text {n}.")
    client = ChannelSettings.for_sandbox(sandbox.base_url).clients()["sms"]
    assert isinstance(client, TwilioClient)
    message = Message("k", "sms", SAM.phone or "", BODY)
    with httpx.Client() as http, pytest.raises(LookupFailed, match="more than 2 messages"):
        replace(client, page_size=1, max_pages=2).find_sent(http, message, T, ())
    with httpx.Client() as http:  # within the limit, the same lookup answers: not there
        assert replace(client, page_size=1, max_pages=4).find_sent(http, message, T, ()) is None


def test_a_clock_a_little_behind_twilios_still_finds_the_message(
    home: Path, sandbox: Sandbox, clock: list[datetime]
) -> None:
    # Twilio stamped the message a minute before our own `attempted` line (clocks differ).
    ref = ref_for("e1")
    accepted_at(clock, T - timedelta(minutes=3), sandbox, ref.send_key)
    record(home, ref, "attempted", T - timedelta(minutes=2), attempt=1)
    assert run(home, sandbox, entry("e1")).reconciled == 1


def test_the_lookup_searches_from_the_first_attempt(
    home: Path, sandbox: Sandbox, clock: list[datetime]
) -> None:
    # Two attempts, both unanswered; Twilio got the first. Found, it is sent, not failed.
    ref = ref_for("e1")
    accepted_at(clock, T - timedelta(hours=3), sandbox, ref.send_key)
    record(home, ref, "attempted", T - timedelta(hours=3), attempt=1)
    record(home, ref, "attempted", T - timedelta(hours=2), attempt=2)
    summary = run(home, sandbox, entry("e1"))
    assert (summary.reconciled, summary.gave_up, len(sandbox.received)) == (1, 0, 1)


def test_a_reconciled_send_is_counted_once_toward_the_cap(home: Path, sandbox: Sandbox) -> None:
    two_a_day = replace(JOURNEY, frequency_cap=FrequencyCap(messages=2, per_hours=24))
    ref = ref_for("e1")
    record(home, ref, "attempted", T - timedelta(minutes=2), attempt=1)
    twilio_accepts(sandbox, ref.send_key)
    summary = run(home, sandbox, entry("e1"), entry("e2"), journey=two_a_day)
    assert (summary.reconciled, summary.sent, summary.skipped) == (1, {"sms": 2}, {})


def test_a_webhook_step_goes_to_the_teams_endpoint_by_person_id(
    home: Path, sandbox: Sandbox, clock: list[datetime]
) -> None:
    # A receiver refuses a webhook-timestamp five minutes off its own clock: the real one here.
    clock[0] = datetime.now(UTC).replace(tzinfo=None)
    hook = Step("notify", 0, ("webhook",), {"webhook": Template(body="Cart of {first_name}")})
    journey = replace(UNCAPPED, nodes=(hook,))
    summary = run(home, sandbox, entry("e1"), journey=journey)
    assert summary.sent == {"webhook": 1}
    (got,) = sandbox.received
    assert (got.channel, got.recipient, got.body) == ("webhook", SAM.person_id, "Cart of Sam")
    # an explicit opt-out of the webhook channel holds
    opted_out = replace(SAM, consent={**SAM.consent, "webhook": "unsubscribed"})
    assert run(home, sandbox, entry("e2"), journey=journey, person=opted_out).skipped == {
        "no_consent": 1
    }


def test_a_template_that_fails_for_one_person_skips_their_step_with_why(
    home: Path, sandbox: Sandbox
) -> None:
    total = Step("remind", 0, ("sms",), {"sms": Template(body="Your total: {total | money}")})
    journey = replace(UNCAPPED, nodes=(total,))
    odd = replace(entry("e1"), properties={"total": "n/a"})
    fine = replace(entry("e2"), properties={"total": "12.5"})
    summary = run(home, sandbox, odd, fine, journey=journey)
    assert summary.skipped == {"unrenderable_template": 1} and summary.sent == {"sms": 1}
    line = ledger_line(home, ref_for("e1").send_key, "skipped")
    assert line["reason_detail"] == "ValueError: money: 'n/a' is not a number"
    assert [r.body for r in sandbox.received] == ["Your total: $12.50"]


def test_a_message_that_fails_gives_its_cap_place_back_within_the_run(
    home: Path, sandbox: Sandbox
) -> None:
    # One a day. Twilio refuses e1's text: nothing reached Sam, so e2 goes out now.
    sandbox.fail_next(Fault("twilio", 400))
    summary = run(home, sandbox, entry("e1"), entry("e2"))
    assert (summary.failed, summary.sent, summary.deferred) == ({"sms": 1}, {"sms": 1}, {})
    assert len(sandbox.received) == 1


def test_a_deferred_step_of_an_entry_that_left_is_recorded_as_exited(
    home: Path, sandbox: Sandbox
) -> None:
    record(home, ref_for("e0", journey="welcome"), "sent", T - timedelta(hours=1))
    assert run(home, sandbox, entry("e1")).deferred == {"capped": 1}
    later = run(home, sandbox, now=T + timedelta(hours=30))  # e1 is no longer due: it left
    assert later.skipped == {"exited": 1} and sandbox.received == []
    assert ledger.read_state(home).last_status[ref_for("e1").send_key] == "skipped"


def test_at_one_clock_reading_an_outcome_outranks_a_deferral(home: Path) -> None:
    # A run with a fixed clock defers, and sends, at the same instant: the send is the state,
    # whichever line was written (or is read) first.
    refs = [ref_for(f"e{n}") for n in range(20)]
    for n, ref in enumerate(refs):
        order = ("deferred", "attempted", "sent") if n % 2 else ("attempted", "sent", "deferred")
        for status in order:
            record(home, ref, status, T)  # each its own file
    assert ledger.read_state(home).last_status == {ref.send_key: "sent" for ref in refs}


NIGHTS = replace(
    UNCAPPED, quiet_hours=QuietHours("21:00", "08:00", ("sms", "push"), "Europe/Berlin")
)
# T is 10:00 UTC: 05:00 in New York (quiet), 11:00 in Berlin (not).
NEW_YORKER = replace(SAM, timezone="America/New_York")


def test_a_step_due_in_the_persons_quiet_hours_waits_for_their_end(
    home: Path, sandbox: Sandbox
) -> None:
    summary = run(home, sandbox, entry("e1"), journey=NIGHTS, person=NEW_YORKER)
    assert summary.deferred == {"quiet_hours": 1} and sandbox.received == []
    line = ledger_line(home, ref_for("e1").send_key, "deferred")
    # 08:00 in New York (EST, UTC-5) is 13:00 UTC
    assert line["reason_detail"] == f"until {(T + timedelta(hours=3)).isoformat()}"
    # still quiet at 12:59 UTC; sent at 13:00
    later = T + timedelta(hours=2, minutes=59)
    again = run(home, sandbox, entry("e1"), journey=NIGHTS, person=NEW_YORKER, now=later)
    assert again.sent == {} and again.deferred == {"quiet_hours": 1}
    ledger_line(home, ref_for("e1").send_key, "deferred")  # still one line: nothing changed
    done = run(
        home, sandbox, entry("e1"), journey=NIGHTS, person=NEW_YORKER, now=T + timedelta(hours=3)
    )
    assert done.sent == {"sms": 1} and len(sandbox.received) == 1


def test_quiet_hours_use_the_journeys_zone_for_people_without_one_and_spare_other_channels(
    home: Path, sandbox: Sandbox
) -> None:
    # No zone of his own: Berlin's 11:00 is not quiet.
    assert run(home, sandbox, entry("e1"), journey=NIGHTS).sent == {"sms": 1}
    # A zone this machine does not know counts as none.
    lost = replace(SAM, timezone="Mars/Olympus_Mons")
    assert run(home, sandbox, entry("e2"), journey=NIGHTS, person=lost).sent == {"sms": 1}
    # Email is not among the quiet channels here.
    push_only = replace(NIGHTS, quiet_hours=replace(NIGHTS.quiet_hours, channels=("push",)))
    assert run(home, sandbox, entry("e3"), journey=push_only, person=NEW_YORKER).sent == {"sms": 1}


def test_a_text_twilio_never_got_then_held_by_quiet_hours_is_sent_when_they_end(
    home: Path, sandbox: Sandbox
) -> None:
    # Two attempts lost; the lookup shows neither arrived, then the night holds the step back.
    # Once the night is over it is sent: the deferral did not turn it into a lost cause.
    ref = ref_for("e1")
    record(home, ref, "attempted", T - timedelta(hours=2), attempt=1)
    record(home, ref, "attempted", T - timedelta(hours=1), attempt=2)
    night = run(home, sandbox, entry("e1"), journey=NIGHTS, person=NEW_YORKER)
    assert (night.deferred, night.gave_up, sandbox.received) == ({"quiet_hours": 1}, 0, [])
    # The deferred key's attempts stay unsettled: they count toward the cap until looked up.
    assert ledger.read_state(home).pending[ref.send_key].channel == "sms"
    morning = run(home, sandbox, entry("e1"), journey=NIGHTS, person=NEW_YORKER,
                  now=T + timedelta(hours=3))  # fmt: skip
    assert (morning.sent, morning.gave_up, len(sandbox.received)) == ({"sms": 1}, 0, 1)


def test_an_email_in_doubt_stays_in_doubt_through_a_deferral(home: Path, sandbox: Sandbox) -> None:
    # Two email attempts without an answer (SendGrid has no lookup), then the cap deferred the
    # step: the deferral does not make a third attempt safe. It is given up, and still counts.
    ref = ref_for("e1")
    writer = ledger.LedgerWriter(home, "earlier")
    for n, hours in ((1, 3), (2, 2)):
        writer.write(ref, "attempted", T - timedelta(hours=hours), attempt=n, channel="email",
                     recipient="sam@example.com", subject="Your cart", body=BODY)  # fmt: skip
    writer.write(ref, "deferred", T - timedelta(hours=1), reason="capped", reason_detail="until")
    writer.close()
    state = ledger.read_state(home)
    assert state.pending[ref.send_key].channel == "email"
    assert state.sends_within(SAM.person_id, T, 24) == 1
    summary = run(home, sandbox, entry("e1"), journey=UNCAPPED)
    assert (summary.gave_up, summary.sent, sandbox.received) == (1, {}, [])
    assert ledger_line(home, ref.send_key, "failed")["reason"] == "outcome_unknown"


def test_a_text_twilio_never_got_after_five_attempts_fails_without_counting_as_sent(
    home: Path, sandbox: Sandbox
) -> None:
    ref = ref_for("e1")
    for n in range(1, ledger.MAX_ATTEMPTS + 1):
        record(home, ref, "attempted", T - timedelta(hours=6 - n), attempt=n)
    summary = run(home, sandbox, entry("e1"), journey=UNCAPPED)
    assert (summary.dead_letters, summary.sent, sandbox.received) == (1, {}, [])
    line = ledger_line(home, ref.send_key, "failed")
    assert (line["reason"], line["reason_detail"]) == (
        "attempts_exhausted",
        "the provider has none of its 5 attempts",
    )
    assert ledger.read_state(home).sends_within(SAM.person_id, T, 24) == 0


def test_a_text_twilio_refused_goes_on_a_later_run_once_its_wait_is_over(
    home: Path, sandbox: Sandbox
) -> None:
    # Every try of the run meets a 429 (never processed): nothing went out, the step is
    # deferred (retrying) and does not count toward the cap; a run before the wait is over
    # sends nothing, one after it sends the text once.
    sandbox.fail_next(Fault("twilio", 429, count=5, retry_after=0))
    first = run(home, sandbox, entry("e1"))
    assert (first.deferred, first.failed, sandbox.received) == ({"retrying": 1}, {}, [])
    ref = ref_for("e1")
    line = ledger_line(home, ref.send_key, "deferred")
    assert (line["reason"], line["channel"], line["attempt"]) == ("retrying", "sms", 1)
    until = ledger.deferred_until(str(line["reason_detail"]))
    assert until is not None and until >= T + timedelta(minutes=1)
    state = ledger.read_state(home)
    assert state.refused(ref.send_key) and state.pending == {}
    assert state.sends_within(SAM.person_id, T, 24) == 0
    seen = sandbox.requests_seen
    early = run(home, sandbox, entry("e1"), now=T + timedelta(seconds=30))
    assert early.deferred == {"retrying": 1} and sandbox.requests_seen == seen
    later = run(home, sandbox, entry("e1"), now=until)
    assert later.sent == {"sms": 1} and len(sandbox.received) == 1
    assert ledger.read_state(home).attempts[ref.send_key] == 2


def email_journey() -> tuple[Journey, guards.Person]:
    step = Step("remind", 0, ("email",), {"email": Template(subject="Cart", body=BODY)})
    ada = guards.Person(
        "p-ada", "u-ada", "ada@example.com", None, None, "Ada", {"email": "subscribed"}
    )
    return replace(UNCAPPED, nodes=(step,)), ada


def test_an_email_refused_is_not_in_doubt_and_five_refusals_are_the_dead_letter(
    home: Path, sandbox: Sandbox
) -> None:
    # SendGrid has no lookup: an attempt in doubt is sent once more at most. A refused one went
    # nowhere, so each later run tries again, up to five attempts in all; then the step is
    # failed (attempts_exhausted) with the provider's last refusal, and never counts as a send.
    journey, ada = email_journey()
    ref = ref_for("e1", person=ada.person_id)
    now = T
    for attempt in range(1, ledger.MAX_ATTEMPTS + 1):
        sandbox.fail_next(Fault("sendgrid", 429, count=5, retry_after=0))
        summary = run(home, sandbox, entry("e1", ada), journey=journey, person=ada, now=now)
        assert (summary.gave_up, summary.deferred) == (0, {"retrying": 1})
        assert sandbox.received == []
        state = ledger.read_state(home)
        assert (state.attempts[ref.send_key], state.refusals[ref.send_key]) == (attempt, attempt)
        assert state.last_status[ref.send_key] == "deferred"
        now += timedelta(hours=2)  # past the wait, which doubles with each refusal
    seen = sandbox.requests_seen
    summary = run(home, sandbox, entry("e1", ada), journey=journey, person=ada, now=now)
    assert (summary.dead_letters, summary.gave_up, sandbox.requests_seen) == (1, 0, seen)
    line = ledger_line(home, ref.send_key, "failed")
    assert (line["reason"], line["reason_detail"]) == (
        "attempts_exhausted",
        "none of its 5 attempts was taken; the last: gave up after retries: HTTP 429 rate limited",
    )
    # on the channel it was attempted on, as the metrics count it
    assert (line["channel"], line["recipient"], line["attempt"]) == ("email", ada.email, 5)
    assert ledger.read_state(home).sends_within(ada.person_id, now, 24) == 0
    # a decided key: no run tries it again
    seen = sandbox.requests_seen
    run(home, sandbox, entry("e1", ada), journey=journey, person=ada, now=now)
    assert sandbox.requests_seen == seen
    assert ledger.read_state(home).last_status[ref.send_key] == "failed"


def email_line(
    home: Path, ref: ledger.SendRef, status: ledger.LedgerStatus, at: datetime, **kw: object
) -> None:
    writer = ledger.LedgerWriter(home, uuid.uuid4().hex[:8])
    writer.write(ref, status, at, channel="email", recipient="ada@example.com", subject="Cart",
                 body=BODY, **kw)  # fmt: skip
    writer.close()


def refusal(until: datetime) -> dict[str, object]:
    detail = f"until {until.isoformat(timespec='seconds')}; gave up after retries: HTTP 429"
    return {"reason": "retrying", "reason_detail": detail}


def email_attempt(
    home: Path, ref: ledger.SendRef, at: datetime, attempt: int, refused_until: datetime | None
) -> None:
    """An email attempt and its outcome: refused (until then), or unknown (a lost answer)."""
    email_line(home, ref, "attempted", at, attempt=attempt)
    if refused_until is None:
        email_line(home, ref, "unknown", at, attempt=attempt)
    else:
        email_line(home, ref, "deferred", at, attempt=attempt, **refusal(refused_until))


@pytest.mark.parametrize("second_at", [timedelta(0), timedelta(seconds=-1), timedelta(minutes=2)])
@pytest.mark.parametrize("compacted", [False, True])
def test_an_attempt_after_a_refusal_that_got_no_answer_is_in_doubt(
    home: Path, second_at: timedelta, compacted: bool
) -> None:
    # Attempt 1 refused; attempt 2 left and the run died before its answer: attempt 2 may have
    # gone out, whatever the clocks say (a refusal settles its own attempt only).
    ref = ref_for("e1")
    email_attempt(home, ref, T, 1, refused_until=T + timedelta(minutes=1))
    if compacted:
        compact(home)
    email_line(home, ref, "attempted", T + second_at, attempt=2)
    state = ledger.read_state(home)
    assert not state.refused(ref.send_key) and ref.send_key in state.pending
    assert state.doubtful(ref.send_key) == 1


def test_an_attempt_in_doubt_stays_in_doubt_through_later_refusals(
    home: Path, sandbox: Sandbox
) -> None:
    # Attempt 1's answer was lost (it may have arrived); the once more it gets is refused, and
    # the next, and the next: each later run still sees attempt 1 in doubt (it counts toward
    # the cap), and in the end the step is failed as outcome_unknown, not "none taken".
    journey, ada = email_journey()
    ref = ref_for("e1", person=ada.person_id)
    email_attempt(home, ref, T - timedelta(hours=1), 1, refused_until=None)
    now = T
    for attempt in range(2, ledger.MAX_ATTEMPTS + 1):
        sandbox.fail_next(Fault("sendgrid", 429, count=5, retry_after=0))
        summary = run(home, sandbox, entry("e1", ada), journey=journey, person=ada, now=now)
        assert summary.deferred == {"retrying": 1} and sandbox.received == []
        state = ledger.read_state(home)
        assert (state.attempts[ref.send_key], state.doubtful(ref.send_key)) == (attempt, 1)
        assert state.sends_within(ada.person_id, now, 24) == 1
        now += timedelta(hours=2)
    summary = run(home, sandbox, entry("e1", ada), journey=journey, person=ada, now=now)
    assert (summary.gave_up, summary.dead_letters, sandbox.received) == (1, 0, [])
    assert ledger_line(home, ref.send_key, "failed")["reason"] == "outcome_unknown"


def test_a_refusals_wait_holds_with_an_earlier_attempt_in_doubt(
    home: Path, sandbox: Sandbox
) -> None:
    # Attempt 1's answer was lost; its once more was refused with a wait of two hours: nothing
    # goes before then (not the lookup nor the once more), and then the once more goes.
    journey, ada = email_journey()
    ref = ref_for("e1", person=ada.person_id)
    email_attempt(home, ref, T - timedelta(hours=2), 1, refused_until=None)
    email_attempt(home, ref, T - timedelta(minutes=1), 2, refused_until=T + timedelta(hours=2))
    early = run(home, sandbox, entry("e1", ada), journey=journey, person=ada)
    assert (early.deferred, sandbox.requests_seen) == ({"retrying": 1}, 0)
    later = run(
        home, sandbox, entry("e1", ada), journey=journey, person=ada, now=T + timedelta(hours=2)
    )
    assert later.sent == {"email": 1} and len(sandbox.received) == 1


def test_an_attempt_in_doubt_keeps_counting_in_the_run_its_once_more_is_refused(
    home: Path, sandbox: Sandbox
) -> None:
    # A cap of one message a day. e1's first email may have gone out; its once more is refused
    # in this run: e1's doubt still holds Ada's one message, so e2 waits for the cap.
    journey, ada = email_journey()
    journey = replace(journey, frequency_cap=FrequencyCap(messages=1, per_hours=24))
    first = ref_for("e1", person=ada.person_id)
    email_attempt(home, first, T - timedelta(hours=2), 1, refused_until=None)
    sandbox.fail_next(Fault("sendgrid", 429, count=5, retry_after=0))
    e1 = engine.Entry("e1", ada.person_id, T - timedelta(minutes=10))
    summary = run(home, sandbox, e1, entry("e2", ada), journey=journey, person=ada)
    assert summary.deferred == {"retrying": 1, "capped": 1} and sandbox.received == []


def test_a_refused_attempt_does_not_use_up_the_once_more(home: Path, sandbox: Sandbox) -> None:
    # Attempt 1 refused (went nowhere), attempt 2 unknown: the first that may have gone out, so
    # it gets its once more, as a lone unknown attempt does.
    journey, ada = email_journey()
    ref = ref_for("e1", person=ada.person_id)
    email_attempt(home, ref, T - timedelta(hours=3), 1, refused_until=T - timedelta(hours=2))
    email_attempt(home, ref, T - timedelta(hours=1), 2, refused_until=None)
    summary = run(home, sandbox, entry("e1", ada), journey=journey, person=ada)
    assert (summary.gave_up, summary.sent, len(sandbox.received)) == (0, {"email": 1}, 1)


def test_a_refusal_under_a_merged_id_waits_there_too(home: Path, sandbox: Sandbox) -> None:
    # Sam went by p-old; the old key's attempt was refused, with a two-hour Retry-After: the step
    # goes on under the new key, not before then.
    old = ref_for("e1", person="p-old")
    until = T + timedelta(hours=2)
    record(home, old, "attempted", T - timedelta(minutes=1), attempt=1)
    record(home, old, "deferred", T - timedelta(minutes=1), attempt=1, **refusal(until))
    early = run(home, sandbox, entry("e1"), journey=UNCAPPED, aliases=MERGED)
    assert early.deferred == {"retrying": 1} and sandbox.received == []
    later = run(home, sandbox, entry("e1"), journey=UNCAPPED, aliases=MERGED, now=until)
    assert later.sent == {"sms": 1} and len(sandbox.received) == 1


@pytest.mark.parametrize(
    "start, end, local, quiet_until",
    [
        ("21:00", "08:00", "22:30", "08:00+1"),  # across midnight, evening
        ("21:00", "08:00", "07:59", "08:00"),  # across midnight, morning
        ("21:00", "08:00", "08:00", None),
        ("21:00", "08:00", "20:59", None),
        ("12:00", "14:00", "13:00", "14:00"),  # within a day
        ("12:00", "14:00", "14:00", None),
    ],
)
def test_quiet_hours_bounds(start: str, end: str, local: str, quiet_until: str | None) -> None:
    quiet = QuietHours(start, end, ("sms",), "UTC")
    now = datetime.combine(T.date(), datetime.strptime(local, "%H:%M").time())
    got = guards.quiet_until(quiet, "sms", SAM, now)
    if quiet_until is None:
        assert got is None
    else:
        hhmm, plus = quiet_until.split("+") if "+" in quiet_until else (quiet_until, "0")
        day = T.date() + timedelta(days=int(plus))
        assert got == datetime.combine(day, datetime.strptime(hhmm, "%H:%M").time())


def test_with_a_fifth_of_requests_failing_every_message_arrives_exactly_once(
    home: Path, sandbox: Sandbox, clock: list[datetime]
) -> None:
    # Twilio's requests (sends and lookups) meet 429s, 503s before and after processing and lost
    # responses at random; runs follow each other until nothing is left to settle.
    # (Sixty people: Twilio's list cannot tell identical texts to one number apart.)
    sandbox.fail_at_random(0.2, seed=11, providers=("twilio",))
    people = [
        replace(SAM, person_id=f"p{n}", phone=f"+1415555{n:04d}", first_name=f"P{n}")
        for n in range(60)
    ]
    entries = [entry(f"e{n}", p) for n, p in enumerate(people)]
    keys = {ledger.send_key(JOURNEY.name, "remind", e.person_id, e.entry_id) for e in entries}
    now = T
    for _ in range(6):
        clock[0] = now
        run(home, sandbox, *entries, now=now, journey=UNCAPPED, others=people)
        now += timedelta(hours=2)
    received = Counter(r.send_key for r in sandbox.received)
    assert set(received) == keys and set(received.values()) == {1}  # each once, none twice
    state = ledger.read_state(home)
    assert {state.last_status[k] for k in keys} == {"sent"}
    assert sandbox.requests_seen > 60  # the faults were met (retries, lookups)


# A template per channel without a lookup, and its provider as the sandbox names it.
UNLOOKED = {
    "webhook": ("webhook", Template(body="Cart {first_name}")),
    "email": ("sendgrid", Template(subject="Cart", body="Cart {first_name}")),
    "push": ("fcm", Template(title="Cart", body="Still there, {first_name}?")),
}


def run_to_the_end(
    home: Path, sandbox: Sandbox, channel: str, tries: int, people: int = 40
) -> tuple[set[str], Counter[str]]:
    """Each of `people` with one message due on `channel`, one a request, over six runs two
    hours apart (deferred retries come due): the send keys, and what the sandbox received."""
    template = UNLOOKED[channel][1]
    journey = replace(UNCAPPED, nodes=(Step("remind", 0, (channel,), {channel: template}),))
    everyone = [
        guards.Person(f"p{n}", f"u{n}", f"p{n}@example.com", None, f"tok-{n}", f"P{n}",
                      dict.fromkeys(("email", "push"), "subscribed"))
        for n in range(people)
    ]  # fmt: skip
    entries = [entry(f"e{n}", p) for n, p in enumerate(everyone)]
    now = T
    with stamina.set_testing(True, attempts=tries):
        for _ in range(6):
            # one message a request, so that a fifth of the emails meet a fault too
            run(home, sandbox, *entries, now=now, journey=journey, person=everyone[0],
                others=everyone, batch_size=1)  # fmt: skip
            now += timedelta(hours=2)
    keys = {ledger.send_key(journey.name, "remind", e.person_id, e.entry_id) for e in entries}
    return keys, Counter(r.send_key or "" for r in sandbox.received)


@pytest.mark.parametrize(
    "channel, kinds",
    [
        # webhooks are idempotent (the receiver de-duplicates on webhook-id): every fault, each
        # retried within the run (across runs, an unknown outcome goes once more at most)
        ("webhook", RANDOM_FAULTS),
        # SendGrid and FCM take no key: exactly once holds for what they never processed, each
        # refusal tried again by the next run
        ("email", ("429",)),
        ("push", ("429",)),
    ],
)
def test_with_a_fifth_of_requests_failing_on_channels_without_a_lookup_each_arrives_once(
    home: Path, sandbox: Sandbox, clock: list[datetime], channel: str, kinds: tuple[str, ...]
) -> None:
    sandbox.fail_at_random(0.2, seed=7, providers=(UNLOOKED[channel][0],), kinds=kinds)
    # The providers' clock is the wall's: a webhook receiver checks the webhook-timestamp the
    # sender stamps from it (no Twilio lookup here reads the runs' simulated time).
    clock[0] = utc_now().replace(tzinfo=None)
    keys, received = run_to_the_end(home, sandbox, channel, tries=5 if channel == "webhook" else 1)
    assert set(received) == keys and set(received.values()) == {1}  # each once, none twice
    state = ledger.read_state(home)
    assert {state.last_status[k] for k in keys} == {"sent"}
    assert sandbox.requests_seen > 40  # the faults were met
    folder = landing.table_dir(home, "ledger", "deliveries")
    lines = [json.loads(x) for f in folder.glob("run-*.jsonl") for x in f.read_text().splitlines()]
    if channel != "webhook":  # refused, and sent by a later run
        assert any(x["status"] == "deferred" for x in lines)
    if channel == "webhook":  # some went over the wire more than once, and the receiver kept one
        assert max(sandbox.webhook_deliveries.values()) >= 2


@pytest.mark.parametrize("channel", ["email", "push"])
def test_a_fifth_of_answers_lost_or_failing_after_processing_goes_at_most_twice(
    home: Path, sandbox: Sandbox, channel: str
) -> None:
    # SendGrid and FCM take no idempotency key: a lost answer or a 5xx leaves the outcome
    # unknown, sent once more under the at-most-once-more rule. Nothing arrives three times,
    # and whatever never arrived is recorded as given up (failed, outcome_unknown).
    sandbox.fail_at_random(0.2, seed=3, providers=(UNLOOKED[channel][0],))
    keys, received = run_to_the_end(home, sandbox, channel, tries=5)
    state = ledger.read_state(home)
    assert set(received) <= keys and max(received.values()) <= 2
    assert {state.last_status[k] for k in keys} <= {"sent", "failed"}
    given_up = {k for k in keys if state.last_status[k] == "failed"}
    assert keys - set(received) <= given_up
    folder = landing.table_dir(home, "ledger", "deliveries")
    lines = [json.loads(x) for f in folder.glob("run-*.jsonl") for x in f.read_text().splitlines()]
    failed = {x["reason"] for x in lines if x["send_key"] in given_up and x["status"] == "failed"}
    assert failed <= {"outcome_unknown"}
    # Never retried blindly: an attempt the provider refused (a 429) went nowhere; of the rest,
    # each recorded before it went, at most two per message, and a message arrived at most
    # once per such attempt.
    tried: dict[str, set[int]] = {}
    for x in lines:
        if x["status"] == "attempted":
            tried.setdefault(x["send_key"], set()).add(x["attempt"])
    for x in lines:
        if x["status"] == "deferred" and x["attempt"] is not None:
            tried[x["send_key"]].discard(x["attempt"])
    assert all(n <= len(tried[k]) <= 2 for k, n in received.items()), (received, tried)
    assert max(len(went) for went in tried.values()) <= 2
    # not vacuous: answers were lost, and some message went once more
    assert max(received.values()) == 2


@pytest.mark.slow
@pytest.mark.parametrize("channel", ["sms", "webhook", "email", "push"])
def test_a_sender_killed_at_random_points_loses_and_duplicates_nothing(
    tmp_path: Path, channel: str
) -> None:
    # A real process per run, SIGKILLed at a random moment (seeded), over and over; then runs
    # to the end. Twilio's lookup settles what a killed run left unknown. The other channels
    # have no lookup: an unknown outcome goes once more (a webhook under its webhook-id, which
    # the receiver de-duplicates; an email or a push may then arrive twice), never a third time.
    import random
    import subprocess
    import sys

    from tests import crash_driver

    landing.ensure_layout(tmp_path)
    chance = random.Random(int(os.environ.get("SWITCHYARD_KILL_SEED", "5")))
    people = 60 if channel == "sms" else 120
    with Sandbox(latency_seconds=0.05) as sb:
        command = [
            sys.executable,
            "-m",
            "tests.crash_driver",
            str(tmp_path),
            sb.base_url,
            str(people),
            *([channel] if channel != "sms" else []),
        ]
        kills = 0
        root = Path(__file__).parent.parent
        # Killed once 1 to 12 more texts arrived, or requests (an email request carries 8
        # messages, and no lookup slows the others).
        arrived = (lambda: len(sb.received)) if channel == "sms" else lambda: sb.requests_seen
        for _ in range(8):
            kills += crash_driver.kill_mid_run(command, root, arrived, chance, 12)
        for _ in range(2):  # to the end: whatever is left unknown is settled
            done = subprocess.run(command, cwd=root, capture_output=True, text=True)
            assert done.returncode == 0, done.stderr[-3000:]
        received = Counter(r.send_key for r in sb.received)
        if channel == "webhook":  # what went over the wire, before the receiver de-duplicated
            received = Counter(sb.webhook_deliveries)
    keys = crash_driver.send_keys(people)
    assert kills >= 2  # the test did kill runs mid-way
    state = ledger.read_state(tmp_path)
    folder = landing.table_dir(tmp_path, "ledger", "deliveries")
    lines = [json.loads(x) for f in folder.glob("run-*.jsonl") for x in f.read_text().splitlines()]
    attempts = Counter(x["send_key"] for x in lines if x["status"] == "attempted")
    if channel == "sms":  # Twilio's lookup: every text sent exactly once
        assert set(received) == keys and set(received.values()) == {1}
        assert {state.last_status[k] for k in keys} == {"sent"}
    else:
        # Without a lookup, a key in doubt goes once more, never a third time: at most two
        # attempts, and only a key attempted twice can arrive twice (a webhook under the same
        # webhook-id, which its receiver de-duplicates).
        assert max(attempts.values()) <= 2
        assert max(received.values()) <= 2
        assert all(n == 1 or attempts[k] == 2 for k, n in received.items()), received
        # A key whose second attempt was in doubt too is given up as outcome_unknown, with
        # its two attempts in the ledger: what never arrived is one of those, never gone quietly.
        given_up = {k for k in keys if state.last_status[k] != "sent"}
        reasons = {
            x["reason"] for x in lines if x["send_key"] in given_up and x["status"] == "failed"
        }
        assert {state.last_status[k] for k in given_up} <= {"failed"}
        assert reasons <= {"outcome_unknown"}
        assert all(attempts[k] == 2 for k in given_up), {k: attempts[k] for k in given_up}
        assert keys - set(received) <= given_up
        assert set(received) <= keys
        # not vacuous: many went out and were recorded sent, and kills left keys in doubt that
        # went once more
        sent = keys - given_up
        assert len(sent) >= len(keys) // 4, (len(sent), len(given_up))
        assert any(attempts[k] == 2 for k in keys)
    # killed runs left attempts without an outcome, which later runs settled
    settled = [x for x in lines if (x["reason"] or "").startswith("reconciled")]
    resent = [x for x in lines if x["status"] == "attempted" and x["attempt"] > 1]
    assert settled or resent, (kills, len(lines))


@pytest.mark.parametrize(
    "start, end, now_utc, quiet_until_utc",
    [
        # New York sets its clocks forward at 02:00 EST on 2026-03-08 (07:00 UTC): a night
        # ending at 02:30, which that day never reads, ends as the clock jumps.
        ("22:00", "02:30", "2026-03-08T06:45", "2026-03-08T07:00"),
        # ... and an ordinary night across the change ends at 08:00 EDT (12:00 UTC, not 13:00).
        ("21:00", "08:00", "2026-03-08T04:00", "2026-03-08T12:00"),
        # It sets them back at 02:00 EDT on 2026-11-01 (06:00 UTC): 01:15 comes twice. A night
        # ending at 01:30 ends at the first 01:30 after now, in either of them.
        ("22:00", "01:30", "2026-11-01T05:15", "2026-11-01T05:30"),
        ("22:00", "01:30", "2026-11-01T06:15", "2026-11-01T06:30"),
    ],
)
def test_quiet_hours_across_daylight_saving_changes(
    start: str, end: str, now_utc: str, quiet_until_utc: str
) -> None:
    quiet = QuietHours(start, end, ("sms",), "UTC")
    got = guards.quiet_until(quiet, "sms", NEW_YORKER, datetime.fromisoformat(now_utc))
    assert got == datetime.fromisoformat(quiet_until_utc)


def fetching(url: str, **rule: object) -> Journey:
    recs = ConnectedContent("recs", url, **rule)  # type: ignore[arg-type]
    body = "Hi {first_name}, {recs.title}: {recs['items'][0]}"
    step = Step("remind", 0, ("sms",), {"sms": Template(body=body)}, connected_content=(recs,))
    return replace(UNCAPPED, nodes=(step,))


def test_connected_content_is_fetched_at_send_time_once_per_url(
    home: Path, sandbox: Sandbox
) -> None:
    journey = fetching(f"{sandbox.base_url}/_sandbox/content?user={{user_id}}")
    odd = replace(SAM, user_id="sam&admin=1")  # a value cannot change the URL's shape
    summary = run(home, sandbox, entry("e1"), entry("e2"), journey=journey, person=odd)
    assert summary.sent == {"sms": 2}
    assert [r.body for r in sandbox.received] == ["Hi Sam, Picked for sam&admin=1: mug"] * 2
    assert sandbox.requests_seen == 1 + 2  # one fetch for the two messages, then two texts


def test_connected_content_that_fails_skips_or_falls_back_as_declared(
    home: Path, sandbox: Sandbox
) -> None:
    url = f"{sandbox.base_url}/_sandbox/content?user={{user_id}}"
    sandbox.fail_next(Fault("content", 503))
    skipped = run(home, sandbox, entry("e1"), journey=fetching(url))
    assert skipped.skipped == {"connected_content_failed": 1} and sandbox.received == []
    line = ledger_line(home, ref_for("e1").send_key, "skipped")
    assert line["reason_detail"].endswith("/_sandbox/content?user=sam: HTTP 503")
    # too slow for its timeout: the declared fallback stands in
    sandbox.fail_next(Fault("content", delay_seconds=1.0))
    fallback = {"title": "Our picks", "items": ["gift card"]}
    slow = fetching(url, timeout_seconds=0.2, on_failure="fallback", fallback=fallback)
    assert run(home, sandbox, entry("e2"), journey=slow).sent == {"sms": 1}
    assert [r.body for r in sandbox.received] == ["Hi Sam, Our picks: gift card"]


def test_a_provider_that_keeps_failing_is_left_alone_for_the_rest_of_the_run(
    home: Path, sandbox: Sandbox
) -> None:
    # Twilio unreachable: after three failures in a row the run stops trying it, defers the
    # rest (a later run sends them) and carries on with what works.
    clients = ChannelSettings.for_sandbox(sandbox.base_url).clients()
    clients["sms"] = replace(clients["sms"], base_url="http://127.0.0.1:9")  # type: ignore[type-var]
    writer = ledger.LedgerWriter(home, "r")
    quick = RetryPolicy(attempts=2, wait_initial_seconds=0.01, wait_max_seconds=0.01)
    sender = Sender(httpx.Client(), clients, writer, lambda: T, quick)
    entries = [entry(f"e{n}") for n in range(8)]
    due, skips = engine.classify(UNCAPPED, as_due(UNCAPPED, entries, T), ledger.read_state(home), T)
    summary = RunSummary(UNCAPPED.name, writer.run_id)
    audience = warehouse.Audience({SAM.person_id: SAM}, {})
    deliver(UNCAPPED, due, skips, audience, ledger.read_state(home), sender, summary, batch_size=2)
    writer.close()
    # Batches of two, two of them in flight at once: the third failure opens the breaker, so
    # two or three batches are refused (no connection: nothing went out, a later run tries
    # again) and the rest are deferred, never attempted.
    refused = summary.deferred["retrying"]
    assert refused in (4, 6) and summary.deferred == {
        "retrying": refused,
        "provider_down": 8 - refused,
    }
    assert summary.failed == {}
    state = ledger.read_state(home)
    assert set(state.last_status.values()) == {"deferred"}
    assert (
        sorted(state.attempts.get(k, 0) for k in state.last_status)
        == [0] * (8 - refused) + [1] * refused
    )
    assert sum(map(state.refused, state.last_status)) == refused and state.pending == {}


def test_a_calendar_day_cap_starts_again_at_the_persons_midnight(
    home: Path, sandbox: Sandbox
) -> None:
    # One a day, by Sam's calendar in New York (UTC-5): T is 05:00 there.
    daily = replace(JOURNEY, frequency_cap=FrequencyCap(1, 24, calendar_day=True))
    # At 23:00 yesterday, his time: another day, not counted.
    record(home, ref_for("e0", journey="welcome"), "sent", T - timedelta(hours=6))
    assert run(home, sandbox, entry("e1"), journey=daily, person=NEW_YORKER).sent == {"sms": 1}
    # A second today waits for his next midnight: 05:00 UTC tomorrow.
    held = run(home, sandbox, entry("e2"), journey=daily, person=NEW_YORKER)
    assert held.deferred == {"capped": 1}
    line = ledger_line(home, ref_for("e2").send_key, "deferred")
    assert line["reason_detail"] == f"until {datetime(2026, 11, 3, 5, 0).isoformat()}"
    # A sliding 24 h window would have counted last night's and held the first one back.
    night = ledger.LedgerState({}, {}, {SAM.person_id: [T - timedelta(hours=6)]})
    zone = NEW_YORKER.timezone
    assert guards.over_cap(JOURNEY.frequency_cap, SAM.person_id, night, T, None, zone)
    assert not guards.over_cap(daily.frequency_cap, SAM.person_id, night, T, None, zone)


@pytest.mark.parametrize("capped", [False, True])
def test_a_stalled_channel_holds_up_only_its_own_messages(
    home: Path, sandbox: Sandbox, capped: bool
) -> None:
    # Four people reached by push, due first, and four by email. FCM stops answering: the
    # emails go out and are recorded while the pushes hang; the pushes follow on release.
    # Capped: the first push person is due twice, and the cap waits for their first message
    # only a moment, then defers the second step, rather than hold up the emails.
    step = Step("remind", 0, ("push", "email"), {
        "push": Template(title="Your cart", body="Still there?"),
        "email": Template(subject="Your cart", body="Still there?"),
    })  # fmt: skip
    cap = FrequencyCap(messages=5, per_hours=24) if capped else None
    journey = replace(UNCAPPED, nodes=(step,), frequency_cap=cap)
    pushed = [guards.Person(f"p{n}", f"p{n}", None, None, f"tok-{n}", "P",
                            consent={"push": "subscribed"}) for n in range(4)]  # fmt: skip
    mailed = [guards.Person(f"m{n}", f"m{n}", f"m{n}@example.com", None, None, "M",
                            consent={"email": "subscribed"}) for n in range(4)]  # fmt: skip
    people = pushed + mailed
    entries = [engine.Entry(f"e-{p.person_id}", p.person_id, T) for p in people]
    if capped:
        entries.insert(1, engine.Entry("e-p0-again", "p0", T))
    writer = ledger.LedgerWriter(home, "r")
    clients = ChannelSettings.for_sandbox(sandbox.base_url).clients()
    sender = Sender(httpx.Client(timeout=30), clients, writer, lambda: T)
    due, skips = engine.classify(journey, as_due(journey, entries, T), ledger.read_state(home), T)
    summary = RunSummary(journey.name, writer.run_id)
    audience = warehouse.Audience({p.person_id: p for p in people}, {})
    sandbox.stall("fcm")
    failure: list[BaseException] = []

    def delivering() -> None:
        try:
            deliver(journey, due, skips, audience, ledger.read_state(home), sender, summary, 2)
        except BaseException as exc:  # reported by the test thread
            failure.append(exc)

    worker = threading.Thread(target=delivering)
    worker.start()
    try:
        deadline = time.monotonic() + 20
        while summary.sent["email"] < 4 and worker.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        # every email recorded as sent while no push has an answer yet
        assert (summary.sent["email"], summary.sent["push"]) == (4, 0)
        assert sorted(r.recipient for r in sandbox.received) == [p.email for p in mailed]
    finally:
        sandbox.release("fcm")
        worker.join(30)
        writer.close()
    assert not failure and summary.sent == {"email": 4, "push": 4}
    assert len(sandbox.received) == 8
    assert summary.deferred == ({"capped": 1} if capped else {})


def test_messages_carry_signed_links_and_marketing_email_the_one_click_headers(
    home: Path, sandbox: Sandbox
) -> None:
    body = "Hi {first_name}. Stop: {unsubscribe_url} Choose: {preferences_url}"
    step = Step("remind", 0, ("email",), {"email": Template(subject="Cart", body=body)})
    journey = replace(UNCAPPED, nodes=(step,), topic="cart_reminders")
    ada = guards.Person(
        "p-ada", "u-ada", "ada@example.com", None, None, "Ada", {"email": "subscribed"}
    )
    lee = guards.Person(
        "p-lee", None, "lee@example.com", None, None, "Lee", {"email": "subscribed"}
    )
    links = ChannelSettings.for_sandbox(sandbox.base_url).links
    run(home, sandbox, entry("e1", ada), entry("e2", lee), journey=journey, person=ada,
        others=[lee], links=links)  # fmt: skip
    got = {r.recipient: r for r in sandbox.received}

    def subject_of(url: str) -> LinkSubject:
        return preference_links.read(SANDBOX_CREDENTIALS.link_secret, url.rsplit("/", 1)[1])

    for person, user, address in ((ada, "u-ada", None), (lee, None, "lee@example.com")):
        mail = got[str(person.email)]
        assert mail.list_unsubscribe and mail.body
        url = mail.list_unsubscribe.strip("<>")
        key = ledger.send_key(journey.name, "remind", person.person_id, f"e{1 if user else 2}")
        # consent is kept by user id; a person without one is unsubscribed by address
        assert subject_of(url) == LinkSubject("email", user, address, "cart_reminders", key)
        assert f"Stop: {url} Choose: {url.replace('/unsubscribe/', '/preferences/')}" in mail.body
    # without links, a template that names one is skipped saying what to set; an entry's own
    # property of that name never stands in for the signed link
    fake = replace(entry("e4", ada), properties={"unsubscribe_url": "https://evil.example"})
    unlinked = run(home, sandbox, fake, journey=replace(journey, name="nolinks"), person=ada)
    assert unlinked.skipped == {"missing_variable": 1}
    line = ledger_line(home, ledger.send_key("nolinks", "remind", ada.person_id, "e4"), "skipped")
    assert "SWITCHYARD_LINK_SECRET" in line["reason_detail"]
    # a transactional message carries the links in its body, but no List-Unsubscribe
    receipt = replace(journey, name="receipt", message_type="transactional")
    run(home, sandbox, entry("e3", ada), journey=receipt, person=ada, links=links)
    key = ledger.send_key("receipt", "remind", ada.person_id, "e3")
    (sent,) = [r for r in sandbox.received if r.send_key == key]
    assert sent.list_unsubscribe is None and "/preferences/" in str(sent.body)


def test_a_token_fcm_calls_dead_is_suppressed_at_once_for_the_next_send(
    home: Path, sandbox: Sandbox
) -> None:
    push = Step("nudge", 0, ("push",), {"push": Template(title="Cart", body="Still there?")})
    journey = replace(UNCAPPED, nodes=(push,))
    gone = replace(SAM, push_token="unregistered-tok", consent={"push": "subscribed"})
    summary = run(home, sandbox, entry("e1", gone), journey=journey, person=gone)
    assert summary.failed == {"push": 1}
    folder = landing.table_dir(home, "preferences", "suppressions")
    (row,) = [json.loads(line) for f in folder.glob("sender-*.jsonl") for line in f.open()]
    assert (row["channel"], row["address"], row["scope"], row["reason"]) == (
        "push",
        "unregistered-tok",
        "all",
        "dead_push_token",
    )
    # the send-time guard's read of it (int_suppressions_current), before any rebuild
    held: guards.Suppressions = {("push", "unregistered-tok"): ("all", "dead_push_token")}
    step_two = replace(journey, name="cart-2")
    again = run(home, sandbox, entry("e2", gone), journey=step_two, person=gone, suppressions=held)
    assert again.failed == {} and len(sandbox.received) == 0
