"""One run of one journey: due steps, guards at send time, render, send, ledger."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx

from activations import engine, guards, ledger, warehouse
from activations.channels.core import ChannelClient, Sender
from activations.channels.message import Message
from activations.channels.policy import HttpTimeouts, RateLimiter, RetryPolicy
from activations.journeys import Journey
from activations.render import MissingTemplateVariable, render


@dataclass
class RunSummary:
    journey: str
    run_id: str
    entries_considered: int = 0
    due: int = 0
    sent: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)

    def as_metadata(self) -> dict[str, str | int]:
        return {
            "entries_considered": self.entries_considered,
            "due": self.due,
            "sent": sum(self.sent.values()),
            **{f"sent_{k}": v for k, v in sorted(self.sent.items())},
            "failed": sum(self.failed.values()),
            "skipped": sum(self.skipped.values()),
            **{f"skipped_{k}": v for k, v in sorted(self.skipped.items())},
        }


def utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def run_journey(
    journey: Journey,
    *,
    duckdb_path: Path,
    landing_dir: Path,
    clients: dict[str, ChannelClient],
    now: datetime | None = None,
    retry: RetryPolicy | None = None,
    rate_limits: dict[str, float] | None = None,
    timeouts: HttpTimeouts | None = None,
    transport: httpx.BaseTransport | None = None,
) -> RunSummary:
    # A fixed `now` (tests, backfills) also stamps the ledger, so caps see the simulated time.
    clock: Callable[[], datetime] = (lambda: now) if now is not None else utc_now
    as_of = clock()
    run_id = f"{as_of:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    summary = RunSummary(journey.name, run_id)

    entries, people = warehouse.read_audience(duckdb_path, journey.audience_model, as_of)
    summary.entries_considered = len(entries)
    state = ledger.read_state(landing_dir)
    state.follow_aliases(warehouse.read_person_aliases(duckdb_path))
    due, skips = engine.due_now(journey, entries, state, as_of)
    summary.due = len(due)
    fresh = guards.fresh_consents(landing_dir)

    t = timeouts or HttpTimeouts()
    http = httpx.Client(
        timeout=httpx.Timeout(t.read_seconds, connect=t.connect_seconds), transport=transport
    )
    writer = ledger.LedgerWriter(landing_dir, run_id)
    limits = {ch: RateLimiter(rate) for ch, rate in (rate_limits or {}).items()}
    sender = Sender(http, clients, writer, clock, retry, limits)

    def skip(ref: ledger.SendRef, reason: str) -> None:
        status = "failed" if reason == "outcome_unknown" else "skipped"
        writer.write(ref, status, clock(), reason=reason)
        (summary.failed if status == "failed" else summary.skipped)[reason] += 1

    try:
        for s in skips:
            skip(s.ref, s.reason)
        for d in due:
            person = people.get(d.ref.person_id)
            if person is None:
                skip(d.ref, "no_profile")
                continue
            choice = guards.choose_channel(d.step, person, fresh)
            if isinstance(choice, str):
                skip(d.ref, choice)
                continue
            if guards.over_cap(journey.frequency_cap, person.person_id, state, clock()):
                skip(d.ref, "capped")
                continue
            values = {**d.entry.properties, "first_name": person.first_name}
            try:
                content = render(d.step.templates[choice.channel], values, d.step.fallbacks)
            except MissingTemplateVariable as missing:
                skip(d.ref, f"missing_template_variable:{missing.name}")
                continue
            message = Message(
                send_key=d.ref.send_key,
                channel=choice.channel,
                recipient=choice.recipient,
                body=content.body,
                subject=content.subject,
                title=content.title,
                tags={"journey": journey.name, "step": d.step.name},
            )
            outcome = sender.send(d.ref, message, d.attempt_number)
            if outcome.status == "sent":
                summary.sent[choice.channel] += 1
                state.note_send(person.person_id, clock())
            else:
                summary.failed[choice.channel] += 1
    finally:
        writer.close()
        http.close()
    return summary
