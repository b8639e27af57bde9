"""A dry run: what a journey would do now on the real warehouse data, without sending anything or
writing a ledger line. The same decisions as a run (`run.deliver`), delivered to a list."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from activations.channels.core import Sender
from activations.channels.message import Message, Outcome
from activations.journeys import Journey
from activations.ledger import LedgerWriter, SendRef
from activations.run import RunSummary, decide, deliver


class _Decisions(LedgerWriter):
    """Collects what a run would write to the ledger, in memory."""

    def __init__(self) -> None:
        self.run_id = "preview"
        self.rows: list[dict[str, Any]] = []

    def write(self, ref: SendRef, status: str, at: datetime, **fields: Any) -> None:  # type: ignore[override]
        self.rows.append(
            {"send_key": ref.send_key, "step": ref.step, "person_id": ref.person_id,
             "entry_id": ref.entry_id, "decision": status, "at": at.isoformat(), **fields}
        )  # fmt: skip

    def close(self) -> None:
        pass


class _DrySender(Sender):
    """Sends nothing and asks no provider: a due message becomes a `would_send` row."""

    def send(self, ref: SendRef, message: Message, attempt_number: int = 1) -> Outcome:
        self.ledger.write(
            ref, "would_send", self.clock(), attempt=attempt_number,  # type: ignore[arg-type]
            **self.ledger_columns(message),
        )  # fmt: skip
        return Outcome("sent", reason="preview")

    def reconcile(
        self, ref: SendRef, message: Message, since: datetime, attempt_number: int
    ) -> Outcome | None:
        self.ledger.write(ref, "would_look_up", self.clock(), **self.ledger_columns(message))  # type: ignore[arg-type]
        return None


@dataclass
class Preview:
    journey: str
    as_of: datetime
    summary: RunSummary
    rows: list[dict[str, Any]] = field(default_factory=list)


def preview_journey(
    journey: Journey, *, duckdb_path: Path, landing_dir: Path, now: datetime
) -> Preview:
    """One tick and its deliveries, recorded nowhere: the steps entries would take (who enters,
    waits, branches, exits) and, for each due send, what would be sent or skipped and why."""
    summary = RunSummary(journey.name, "preview")
    decision = decide(journey, duckdb_path, landing_dir, now, "preview", record=False)
    summary.note(decision)
    decisions = _Decisions()
    with httpx.Client() as unused:
        sender = _DrySender(unused, {}, decisions, lambda: now)
        deliver(
            journey, decision.due, decision.skips, decision.audience, decision.state, sender,
            summary,
        )  # fmt: skip
    steps = [{"kind": "transition", **row} for row in decision.tick.rows]
    sends = [{"kind": "send", **row} for row in decisions.rows]
    return Preview(journey.name, now, summary, steps + sends)
