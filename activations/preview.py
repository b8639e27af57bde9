"""A dry run: what a journey would do now on the real warehouse data, without sending anything or
writing a ledger line. The same decisions as a run (`run.deliver`), delivered to a list."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq

from activations import transitions
from activations.channels.core import InFlight, Outgoing, Sender
from activations.channels.message import Message, Outcome
from activations.journeys import Journey
from activations.ledger import LedgerWriter, SendRef
from activations.run import RunSummary, decide, deliver
from activations.warehouse import Source

PREVIEWS = ("journeys", "previews")  # under the landing folder: one file per journey
# The preview table's columns: the steps entries would take and the sends they would make.
PREVIEW_SCHEMA = pa.schema(
    [
        ("journey", pa.string()),
        ("as_of", pa.timestamp("us")),
        ("kind", pa.string()),  # transition or send
        ("entry_id", pa.string()),
        ("person_id", pa.string()),
        ("step", pa.string()),  # the node reached, or the send step
        ("outcome", pa.string()),  # entered, waited, ... / would_send, skipped, deferred, ...
        ("detail", pa.string()),  # the branch, path or event / the skip reason
        ("channel", pa.string()),
        ("recipient", pa.string()),
        ("subject", pa.string()),
        ("body", pa.string()),
        ("at", pa.timestamp("us")),
    ]
)


class _Decisions(LedgerWriter):
    """Collects what a run would write to the ledger, in memory."""

    def __init__(self, landing_dir: Path) -> None:
        self.run_id = "preview"
        self.landing_dir = landing_dir  # deletion requests are read from it, as a run does
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

    def submit(self, batch: Sequence[Outgoing]) -> InFlight:
        for o in batch:
            self.ledger.write(
                o.ref, "would_send", self.clock(), attempt=o.attempt_number,  # type: ignore[arg-type]
                **self.ledger_columns(o.message),
            )  # fmt: skip
        return InFlight(list(batch), [], [], self.clock())

    def collect(self, flight: InFlight) -> list[Outcome]:
        return [Outcome("sent", reason="preview") for _ in flight.batch]

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
    journey: Journey,
    *,
    duckdb_path: Path,
    landing_dir: Path,
    now: datetime,
    uncounted_journeys: Collection[str] = (),
    source: Source | None = None,
) -> Preview:
    """One tick and its deliveries, recorded nowhere: the steps entries would take (who enters,
    waits, branches, exits) and, for each due send, what would be sent or skipped and why
    (`uncounted_journeys`: the transactional ones, counted toward no cap, as in a run). Connected
    content is fetched, as a preview in Braze does: a GET, nothing recorded. `source`: the
    warehouse to read when it is not the DuckDB file (activations/arrow_warehouse.py)."""
    summary = RunSummary(journey.name, "preview")
    decision = decide(
        journey, source if source is not None else duckdb_path, landing_dir, now, "preview",
        record=False,
        uncounted_journeys=uncounted_journeys,
    )  # fmt: skip
    summary.note(decision)
    decisions = _Decisions(landing_dir)
    with httpx.Client() as unused:
        sender = _DrySender(unused, {}, decisions, lambda: now)
        deliver(
            journey, decision.due, decision.skips, decision.audience, decision.state, sender,
            summary,
        )  # fmt: skip
    steps = [{"kind": "transition", **row} for row in decision.tick.rows]
    sends = [{"kind": "send", **row} for row in decisions.rows]
    return Preview(journey.name, now, summary, steps + sends)


def preview_folder(landing_dir: Path) -> Path:
    folder = landing_dir.joinpath(*PREVIEWS)
    folder.mkdir(parents=True, exist_ok=True)
    placeholder = folder / transitions.PLACEHOLDER
    if not placeholder.exists():
        pq.write_table(PREVIEW_SCHEMA.empty_table(), placeholder)
    return folder


def write_preview_table(preview: Preview, landing_dir: Path) -> Path:
    """The preview as the journey's file under landing/journeys/previews/, replacing its last
    one: the warehouse view `fct_journey_previews` reads these files when queried."""
    rows = []
    for r in preview.rows:
        transition = r["kind"] == "transition"
        rows.append(
            {
                "journey": preview.journey,
                "as_of": preview.as_of.replace(tzinfo=None),
                "kind": r["kind"],
                "entry_id": r.get("entry_id"),
                "person_id": r.get("person_id"),
                "step": r["node"] if transition else r.get("step"),
                "outcome": r["reason"] if transition else r.get("decision"),
                "detail": r.get("detail") if transition else r.get("reason"),
                "channel": r.get("channel"),
                "recipient": r.get("recipient"),
                "subject": r.get("subject"),
                "body": r.get("body"),
                "at": (r["reached_at"] if transition else datetime.fromisoformat(r["at"])).replace(
                    tzinfo=None
                ),
            }
        )
    target = preview_folder(landing_dir) / f"{preview.journey}.parquet"
    tmp = target.with_name(f".{target.name}.tmp")
    pq.write_table(pa.Table.from_pylist(rows, schema=PREVIEW_SCHEMA), tmp)
    tmp.replace(target)
    return target
