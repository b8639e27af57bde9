"""One delivery run in its own process, for tests that kill it: `python -m tests.crash_driver
HOME BASE_URL PEOPLE [MODE]`. Each of PEOPLE people has one message due (a text by default);
the run reads the ledger in HOME, settles what earlier (killed) runs left unknown through
Twilio's lookup, and sends the rest to the sandbox at BASE_URL, as run_journey's delivery
does. With MODE a platform (braze, customerio, iterable), the step hands the text to it
instead; with MODE `webhook`, `email` or `push`, the message goes on that channel, which has
no lookup: an unknown outcome is sent once more (a webhook under the same webhook-id, on which
receivers de-duplicate), never a third time."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import httpx

from activations import engine, guards, ledger, warehouse
from activations.channels import ChannelSettings, Sender
from activations.channels.transport import sender_client
from activations.graph import Handoff
from activations.journeys import Journey, Step, Template
from activations.run import RunSummary, deliver
from activations.tick import DueSend
from switchyard.clock import utc_now

JOURNEY = Journey(
    name="cart",
    audience_model="audience_cart",
    tier="seconds",
    nodes=(Step("remind", 0, ("sms",), {"sms": Template(body="Hi {first_name}, your cart.")}),),
    exit_on=(),
    frequency_cap=None,
)


def people(n: int) -> list[guards.Person]:
    return [
        guards.Person(
            f"p{i}",
            f"u{i}",
            f"p{i}@example.com",
            f"+1415555{i:04d}",
            f"token-{i}",
            f"P{i}",
            dict.fromkeys(("sms", "email", "push"), "subscribed"),
        )
        for i in range(n)
    ]


def send_keys(n: int) -> set[str]:
    return {
        ledger.send_key(JOURNEY.name, "remind", p.person_id, f"e{i}")
        for i, p in enumerate(people(n))
    }


def handing_off(destination: str) -> Journey:
    step = Step("remind", 0, ("sms",), {}, handoff=Handoff(destination, "41"))
    return replace(JOURNEY, nodes=(step,))


def on_channel(channel: str) -> Journey:
    template = Template(subject="Your cart", body="Cart {first_name}")
    return replace(JOURNEY, nodes=(Step("remind", 0, (channel,), {channel: template}),))


# without a lookup at the provider: an unknown outcome is sent once more, at most
UNLOOKED = ("webhook", "email", "push")


def main(home: Path, base_url: str, n: int, mode: str | None = None) -> None:
    journey = JOURNEY
    if mode in UNLOOKED:
        journey = on_channel(mode)
    elif mode:
        journey = handing_off(mode)
    now = utc_now()
    everyone = people(n)
    due = [
        DueSend(f"e{i}", p.person_id, "remind",
                ledger.send_key(JOURNEY.name, "remind", p.person_id, f"e{i}"),
                now - timedelta(minutes=1), now - timedelta(minutes=1), "treatment", None)
        for i, p in enumerate(everyone)
    ]  # fmt: skip
    state = ledger.read_state(home)
    writer = ledger.LedgerWriter(home, uuid.uuid4().hex[:8])
    clients = ChannelSettings.for_sandbox(base_url).clients()
    # the client a run sends with (activations/channels/transport.py's keep-alive transport)
    http = sender_client(4, httpx.Timeout(5))
    sender = Sender(
        http, clients, writer, utc_now, concurrency=dict.fromkeys(UNLOOKED + ("sms",), 4)
    )
    try:
        todo, skips = engine.classify(journey, due, state, now, sender.can_look_up)
        audience = warehouse.Audience({p.person_id: p for p in everyone}, {})
        summary = RunSummary(journey.name, writer.run_id)
        deliver(journey, todo, skips, audience, state, sender, summary, batch_size=8)
    finally:
        sender.close()
        writer.close()


def kill_mid_run(
    command: list[str], cwd: Path, received: Callable[[], int], chance: random.Random, most: int
) -> bool:
    """One run of `command`, SIGKILLed once the sandbox has `received` 1 to `most` more
    messages (mid-batch: some answers still on their way); whether it was killed."""
    run = subprocess.Popen(command, cwd=cwd)
    target = received() + chance.randint(1, most)
    while run.poll() is None and received() < target:
        time.sleep(0.002)
    killed = run.poll() is None
    if killed:
        run.send_signal(signal.SIGKILL)
    run.wait()
    return killed


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), *sys.argv[4:5])
