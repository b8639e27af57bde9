"""Journey steps that hand their message to an engagement platform (Braze campaigns, Customer.io
transactional messages, Iterable triggered campaigns), against the sandbox: the step's channel
still decides consent and the ledger, the send key is kept, a lost answer is never handed over
again. Delivery as run_journey makes it (tests/test_delivery.py's `run`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from activations import engine, guards
from activations.graph import GraphError, Handoff
from activations.journeys import Journey, Step, Template
from sandbox import Fault, Sandbox
from switchyard import landing
from tests.test_delivery import entry, ledger_line, ref_for, run

ADA = guards.Person(
    "p-ada", "ada", "ada@example.com", None, None, "Ada", consent={"email": "subscribed"}
)


def journey(destination: str, campaign: str, channel: str = "email") -> Journey:
    step = Step(
        "remind", 0, (channel,), {},
        handoff=Handoff(destination, campaign, {"greeting": "Hi {first_name}", "sku": "{sku}"}),
    )  # fmt: skip
    return Journey(
        name="cart",
        audience_model="audience_cart",
        tier="seconds",
        nodes=(step,),
        exit_on=(),
        frequency_cap=None,
    )


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox() as sb:
        yield sb


@pytest.fixture
def home(tmp_path: Path) -> Path:
    landing.ensure_layout(tmp_path)
    return tmp_path


def with_sku(e: engine.Entry) -> engine.Entry:
    return replace(e, properties={"sku": "mug"})


@pytest.mark.parametrize(
    ("destination", "campaign", "channel"),
    [
        ("braze", "cmp-1", "braze_campaign"),
        ("customerio", "7", "email"),
        ("iterable", "41", "email"),
    ],
)
def test_a_step_hands_its_message_to_the_platform_once(
    destination: str, campaign: str, channel: str, home: Path, sandbox: Sandbox
) -> None:
    cart = journey(destination, campaign)
    summary = run(home, sandbox, with_sku(entry("e1", ADA)), journey=cart, person=ADA)
    assert summary.sent == {"email": 1}
    (received,) = sandbox.received
    key = ref_for("e1", person=ADA.person_id).send_key
    assert (received.provider, received.channel, received.recipient) == (
        destination,
        channel,
        "ada",
    )
    assert received.subject == campaign and received.send_key == key
    assert json.loads(received.body or "") == {"greeting": "Hi Ada", "sku": "mug", "send_key": key}
    # the ledger: the step's channel (caps and metrics count it), the platform's user
    line = ledger_line(home, key, "sent")
    assert (line["channel"], line["recipient"]) == ("email", "ada")
    # decided: a second run hands nothing over again
    again = run(home, sandbox, with_sku(entry("e1", ADA)), journey=cart, person=ADA)
    assert again.sent == {} and len(sandbox.received) == 1


def test_guards_still_decide(home: Path, sandbox: Sandbox) -> None:
    cart = journey("braze", "cmp-1")
    no_consent = replace(ADA, consent={"email": "unsubscribed"})
    assert run(home, sandbox, entry("e1", ADA), journey=cart, person=no_consent).skipped == {
        "no_consent": 1
    }
    anonymous = replace(ADA, person_id="p-anon", user_id=None)
    summary = run(home, sandbox, entry("e2", anonymous), journey=cart, person=anonymous)
    assert summary.skipped == {"no_address": 1} and sandbox.received == []
    line = ledger_line(home, ref_for("e2", person="p-anon").send_key, "skipped")
    assert "no user_id: braze" in str(line["reason_detail"])


@pytest.mark.parametrize(
    ("channel", "fault"),
    [
        ("email", Fault("braze", lose_response=True)),  # Braze took it; the answer was lost
        ("sms", Fault("braze", lose_response=True)),
        ("email", Fault("braze", 502, after_processing=True)),  # took it, then a 5xx
    ],
)
def test_a_lost_answer_is_never_handed_over_again(
    channel: str, fault: Fault, home: Path, sandbox: Sandbox
) -> None:
    # On SMS too, where Twilio could be asked: Braze sent it, if anyone did, and Braze cannot.
    cart = journey("braze", "cmp-1", channel)
    ada = replace(ADA, phone="+14155550199", consent={"email": "subscribed", "sms": "subscribed"})
    sandbox.fail_next(fault)
    first = run(home, sandbox, with_sku(entry("e1", ADA)), journey=cart, person=ada)
    assert first.unknown == {channel: 1} and len(sandbox.received) == 1
    # No lookup can say whether Braze has it, and a second hand-off could be a second message:
    # failed, visibly, with what was handed over, and never sent again.
    second = run(home, sandbox, with_sku(entry("e1", ADA)), journey=cart, person=ada)
    assert len(sandbox.received) == 1 and second.gave_up == 1 and second.sent == {}
    line = ledger_line(home, ref_for("e1", person=ADA.person_id).send_key, "failed")
    assert line["reason"] == "outcome_unknown" and line["recipient"] == "ada"
    assert line["reason_detail"] == engine.HANDOFF_IN_DOUBT
    third = run(home, sandbox, with_sku(entry("e1", ADA)), journey=cart, person=ada)
    assert len(sandbox.received) == 1 and third.gave_up == 0


def test_a_refusal_before_any_work_is_retried_and_handed_over_once(
    home: Path, sandbox: Sandbox
) -> None:
    # A 429 is refused before the platform did anything: retried in the run, sent once.
    cart = journey("customerio", "7")
    sandbox.fail_next(Fault("customerio", 429, retry_after=0))
    summary = run(home, sandbox, with_sku(entry("e1", ADA)), journey=cart, person=ADA)
    assert summary.sent == {"email": 1} and len(sandbox.received) == 1
    assert sandbox.requests_seen == 2


BRAZE = {"destination": "braze", "campaign_id": "c"}


@pytest.mark.parametrize(
    ("handoff", "channels", "message"),
    [
        ({"destination": "customerio", "campaign_id": "7"}, ["in_app"], "send on"),
        ({"destination": "hubspot", "campaign_id": "7"}, ["email"], "one of"),
        ({"destination": "iterable"}, ["email"], "campaign_id"),
        ({"destination": "braze"}, ["email"], "no template"),  # /messages/send: its own
        ({"destination": "braze"}, ["in_app"], "send on"),
        ({**BRAZE, "properties": {"a": "[% if %]"}}, ["email"], "does not parse"),
    ],
)  # fmt: skip
def test_hand_offs_are_checked(
    handoff: dict[str, object], channels: list[str], message: str
) -> None:
    meta = {
        "name": "x", "tier": "hours", "entry": {"event": "signed_up"},
        "steps": [{"name": "s", "channels": channels, "handoff": handoff}],
    }  # fmt: skip
    with pytest.raises((GraphError, ValueError), match=message):
        Journey.from_meta("audience_x", meta)


def test_airship_pushes_the_steps_own_template(home: Path, sandbox: Sandbox) -> None:
    step = Step(
        "nudge", 0, ("push",),
        {"push": Template(title="Still there, {first_name}?", body="Your {sku} is waiting.")},
        handoff=Handoff("airship", ""),
    )  # fmt: skip
    cart = Journey(
        name="cart", audience_model="audience_cart", tier="seconds", nodes=(step,), exit_on=(),
        frequency_cap=None,
    )  # fmt: skip
    ada = replace(ADA, push_token="tok-ada", consent={"push": "subscribed"})
    summary = run(home, sandbox, with_sku(entry("e1", ada)), journey=cart, person=ada)
    assert summary.sent == {"push": 1}
    (received,) = sandbox.received
    key = ref_for("e1", step="nudge", person=ADA.person_id).send_key
    assert (received.provider, received.recipient, received.subject, received.body) == (
        "airship", "ada", "Still there, Ada?", "Your mug is waiting.",
    )  # fmt: skip
    assert received.send_key == key


@pytest.mark.parametrize(
    ("channel", "template", "expected"),
    [
        ("email", Template(subject="Hi {first_name}", body="Your {sku} waits."),
         ("Hi Ada", "Your mug waits.")),
        ("sms", Template(body="Your {sku} waits."), (None, "Your mug waits.")),
        ("push", Template(title="Still there?", body="Your {sku} waits."),
         ("Still there?", "Your mug waits.")),
    ],
)  # fmt: skip
def test_braze_without_a_campaign_sends_the_steps_own_message(
    channel: str,
    template: Template,
    expected: tuple[str | None, str],
    home: Path,
    sandbox: Sandbox,
) -> None:
    step = Step("nudge", 0, (channel,), {channel: template}, handoff=Handoff("braze", ""))
    cart = Journey(
        name="cart", audience_model="audience_cart", tier="seconds", nodes=(step,), exit_on=(),
        frequency_cap=None,
    )  # fmt: skip
    ada = replace(
        ADA, phone="+14155550199", push_token="tok-ada",
        consent={"email": "subscribed", "sms": "subscribed", "push": "subscribed"},
    )  # fmt: skip
    summary = run(home, sandbox, with_sku(entry("e1", ada)), journey=cart, person=ada)
    assert summary.sent == {channel: 1}
    (received,) = sandbox.received
    assert (received.provider, received.channel, received.recipient) == ("braze", channel, "ada")
    assert (received.subject, received.body) == expected
    if channel != "sms":  # Braze's SMS object carries no extras
        assert received.send_key == ref_for("e1", step="nudge", person=ADA.person_id).send_key


def test_a_hand_off_killed_at_random_points_goes_out_at_most_once(tmp_path: Path) -> None:
    # A real process per run, SIGKILLed at a random moment (seeded), with 429s on the way; then
    # runs to the end. Nothing is handed over twice; what a killed run left in doubt is failed
    # as outcome_unknown; what no killed run had sent yet goes out, once.
    import random
    import subprocess
    import sys
    from collections import Counter

    from activations import ledger
    from tests import crash_driver

    landing.ensure_layout(tmp_path)
    chance = random.Random(7)
    people = 60
    root = Path(__file__).parent.parent
    with Sandbox(latency_seconds=0.05) as sb:
        command = [sys.executable, "-m", "tests.crash_driver", str(tmp_path), sb.base_url,
                   str(people), "braze"]  # fmt: skip
        kills = 0
        for _ in range(3):
            sb.fail_next(Fault("braze", 429, count=3, retry_after=0))
            kills += crash_driver.kill_mid_run(command, root, lambda: len(sb.received), chance, 10)
        # A hand-off's attempted line is written as its request leaves, not when it is queued:
        # what the killed runs had queued but not sent has no line, and is not in doubt.
        touched = set(ledger.read_state(tmp_path).last_status)
        for _ in range(2):
            subprocess.run(command, cwd=root, check=True)
        received = Counter(r.send_key for r in sb.received)
    keys = crash_driver.send_keys(people)
    untouched = keys - touched
    assert kills == 3 and touched and untouched
    assert set(received.values()) == {1}  # never twice
    state = ledger.read_state(tmp_path)
    statuses = {k: state.last_status[k] for k in keys}
    sent = {k for k, s in statuses.items() if s == "sent"}
    assert untouched <= sent <= set(received)  # a sent line is a hand-off the platform answered
    # every other key was in doubt after a kill: failed as outcome_unknown, not handed over again
    given_up = keys - sent
    assert given_up and given_up <= touched
    assert {ledger_line(tmp_path, k, "failed")["reason"] for k in given_up} == {"outcome_unknown"}


def test_a_platform_that_keeps_failing_holds_up_only_its_own_hand_offs(home: Path) -> None:
    # Braze unreachable: its hand-offs queue on their own route, so once its breaker opens
    # those still waiting are deferred, never attempted, while the step's built-in channel
    # (SMS to the same people, in the same run) goes out in full.
    from activations import ledger, warehouse
    from activations.channels import ChannelSettings, RetryPolicy, Sender
    from activations.run import RunSummary, deliver
    from tests.test_delivery import SAM, UNCAPPED, T, as_due

    with Sandbox() as sandbox:
        clients = ChannelSettings.for_sandbox(sandbox.base_url).clients()
        clients["handoff_braze"] = replace(clients["handoff_braze"], base_url="http://127.0.0.1:9")  # type: ignore[type-var]
        handing = Step("nudge", 0, ("sms",), {}, handoff=Handoff("braze", "cmp-1"))
        texting = Step("remind", 0, ("sms",), {"sms": Template(body="Hi {first_name}")})
        both = replace(UNCAPPED, nodes=(handing, texting))
        writer = ledger.LedgerWriter(home, "r")
        quick = RetryPolicy(attempts=2, wait_initial_seconds=0.01, wait_max_seconds=0.01)
        sender = Sender(httpx.Client(), clients, writer, lambda: T, quick)
        entries = [entry(f"e{n}") for n in range(8)]
        state = ledger.read_state(home)
        due, skips = engine.classify(both, as_due(both, entries, T), state, T)
        summary = RunSummary(both.name, writer.run_id)
        audience = warehouse.Audience({SAM.person_id: SAM}, {})
        deliver(both, due, skips, audience, state, sender, summary, batch_size=2)
        writer.close()
        texts = sum(1 for r in sandbox.received if r.provider == "twilio")
    assert texts == 8 and summary.sent == {"sms": 8}
    # Batches of two hand-offs, two in flight: the third failure opens Braze's breaker, two or
    # three batches are refused (no connection: a later run hands them over), the rest deferred
    refused = summary.deferred["retrying"]
    assert refused in (4, 6) and summary.deferred == {
        "retrying": refused,
        "provider_down": 8 - refused,
    }


def test_a_stopped_run_leaves_no_doubt_about_hand_offs_that_never_left(home: Path) -> None:
    # One Braze worker, slow answers: stopped (Ctrl-C) with one hand-off on its way and two
    # still queued behind it. Those two were never attempted: no line, so no doubt about them.
    from activations import ledger
    from activations.channels import ChannelSettings, Sender
    from activations.channels.core import Outgoing
    from activations.channels.message import Message
    from activations.ledger.keys import SendRef
    from tests.test_delivery import T

    refs = [SendRef(f"k{n}", "cart", "nudge", f"p{n}", f"e{n}") for n in range(3)]
    with Sandbox(latency_seconds=0.3) as sandbox:
        clients = ChannelSettings.for_sandbox(sandbox.base_url).clients()
        writer = ledger.LedgerWriter(home, "r")
        sender = Sender(httpx.Client(), clients, writer, lambda: T,
                        concurrency={"handoff_braze": 1})  # fmt: skip
        flight = sender.submit([
            Outgoing(r, Message(r.send_key, "email", f"u{n}", "{}", route="handoff_braze",
                                tags={"campaign_id": "cmp-1"}))
            for n, r in enumerate(refs)
        ])  # fmt: skip
        sender.abandon(flight)
        sender.close()
        writer.close()
        assert len(sandbox.received) == 1
    state = ledger.read_state(home)
    assert state.last_status == {"k0": "sent"} and state.attempts == {"k0": 1}
