"""A time-travel harness for the journey engine: state people, events with times and the runs'
clocks; each run is a real tick (activations/tick.py) on DuckDB, recording its transitions in a
real landing folder, and every due send is delivered as `sent` (or as the scenario says).

The warehouse's part is given as the dbt models would hold it (audience, profiles, events,
feedback), so a scenario reads like the playbook and runs in milliseconds.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from activations import transitions
from activations.journeys import Journey
from activations.ledger import send_key
from activations.tick import DueSend, TickResult, run_tick

PROFILE_COLUMNS = (
    "person_id", "timezone", "usual_active_hour_utc", "churn_risk_score", "revenue",
    "rfm_segment", "email_consent", "profile_completed",
)  # fmt: skip


@dataclass
class Harness:
    journey: Journey
    landing_dir: Path
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    audience: list[dict[str, Any]] = field(default_factory=list)
    events: list[tuple[str, str, datetime]] = field(default_factory=list)
    feedback: list[tuple[str, str, datetime]] = field(default_factory=list)
    decided: dict[str, tuple[str, datetime, str | None]] = field(default_factory=dict)
    sent: list[DueSend] = field(default_factory=list)
    delivered: dict[str, DueSend] = field(default_factory=dict)  # each decided send, by key
    entry_of: dict[str, str] = field(default_factory=dict)  # a decided key's entry, if known
    # send key -> the status delivery gives it (default: sent), with a reason after a colon
    # ('skipped:capped'); None: left undecided
    outcome: dict[str, str | None] = field(default_factory=dict)
    # dim_person_aliases: a replaced person id -> the people who hold its identifiers now (itself
    # among them when it survived a split), the one its entries go on as (is_primary) first
    aliases: dict[str, list[str]] = field(default_factory=dict)

    def person(self, person_id: str, **profile: Any) -> Harness:
        self.profiles[person_id] = (
            {c: None for c in PROFILE_COLUMNS} | profile | {"person_id": person_id}
        )
        return self

    def enters(
        self,
        person_id: str,
        at: datetime,
        entry_id: str | None = None,
        exited_at: datetime | None = None,
        properties: str = '{"sku": "tee"}',
    ) -> Harness:
        """An audience row: an event entry, with the episode's own exit if the audience knows one
        (or, for membership journeys, a member)."""
        self.audience.append(
            {"entry_id": entry_id or f"{person_id}@{at:%m%d%H%M}", "person_id": person_id,
             "enters_at": at, "entry_properties": properties, "exited_at": exited_at}
        )  # fmt: skip
        return self

    def withdraws(self, entry_id: str) -> Harness:
        """The audience no longer has this entry (an `unless` event landed late)."""
        self.audience = [a for a in self.audience if a["entry_id"] != entry_id]
        return self

    def leaves_audience(self, person_id: str) -> Harness:
        self.audience = [a for a in self.audience if a["person_id"] != person_id]
        return self

    def event(self, person_id: str, name: str, at: datetime) -> Harness:
        self.events.append((person_id, name, at))
        return self

    def merged(self, alias: str, *into: str) -> Harness:
        """Identity resolution replaced `alias` by `into` (a merge: one; a split: several, the
        alias itself among them if it lives on). Its entries go on as the alias where it lives
        on, else as the first of `into` (dim_person_aliases.is_primary). As the ledger's reader
        does, what was decided under the old id holds under the new ones."""
        self.aliases[alias] = sorted(into, key=lambda p: p != alias)  # the primary first
        # The audience is rebuilt over the restitched events: the entry's row names the holder
        # (an event entry's id does not depend on the person, macros/journey_entry_audience.sql).
        for row in self.audience:
            if row["person_id"] == alias and alias not in into:
                row["person_id"] = into[0]
        for due in list(self.delivered.values()):
            if due.person_id == alias:
                for person_id in into:
                    key = send_key(self.journey.name, due.step, person_id, due.entry_id)
                    self.decided.setdefault(key, self.decided[due.send_key])
                    self.entry_of.setdefault(key, due.entry_id)
        return self

    def engages(self, send_key: str, event: str, at: datetime) -> Harness:
        self.feedback.append((send_key, event, at))
        return self

    def tick(self, now: datetime, deliver: bool = True, record: bool = True) -> TickResult:
        con = duckdb.connect()
        try:
            self._load(con)
            result = run_tick(
                con, self.journey, now, uuid.uuid4().hex[:8],
                self.landing_dir if record else None, _read_decided,
            )  # fmt: skip
        finally:
            con.close()
        if deliver:
            for due in result.due:
                status = self.outcome.get(due.send_key, "sent")
                if status is not None:
                    status, _, reason = status.partition(":")
                    self.decided[due.send_key] = (status, now, reason or None)
                    self.delivered[due.send_key] = due
                    self.entry_of[due.send_key] = due.entry_id
                    self.sent.append(due) if status == "sent" else None
        return result

    def run(self, now: datetime) -> TickResult:
        """A run: tick, deliver, and tick again until nothing more is due (as run_journey)."""
        first = self.tick(now)
        for _ in range(len(self.journey.steps)):
            if not self.tick(now).due:
                break
        return first

    def _load(self, con: duckdb.DuckDBPyConnection) -> None:
        profiles = list(self.profiles.values()) or [dict.fromkeys(PROFILE_COLUMNS)]
        con.register("profiles_in", pa.Table.from_pylist(profiles))
        con.execute(
            "create temp table profiles as select * replace ("
            "cast(person_id as varchar) as person_id, cast(timezone as varchar) as timezone, "
            "cast(usual_active_hour_utc as integer) as usual_active_hour_utc, "
            "cast(churn_risk_score as integer) as churn_risk_score, "
            "cast(revenue as double) as revenue, cast(rfm_segment as varchar) as rfm_segment, "
            "cast(email_consent as varchar) as email_consent, "
            "cast(profile_completed as boolean) as profile_completed) from profiles_in"
        )
        text, time = pa.string(), pa.timestamp("us")
        audience = [
            (a["entry_id"], a["person_id"], a["enters_at"], a["entry_properties"], a["exited_at"],
             a.get("former_entry_id"), a.get("entry_event_id"))
            for a in self.audience
        ]  # fmt: skip
        _load_rows(con, "audience", audience, entry_id=text, person_id=text, enters_at=time,
                   entry_properties=text, exited_at=time, former_entry_id=text,
                   entry_event_id=text)  # fmt: skip
        if self.journey.entry.kind != "event":
            # A membership or schedule audience is people, not entries, as dbt builds it (with
            # the null former_entry_id and entry_event_id that activations/inputs.py adds).
            con.execute(
                "create or replace temp table audience as select * exclude (entry_id, enters_at, "
                "entry_properties, exited_at) from audience"
            )
        _load_rows(con, "events", self.events, person_id=text, event_name=text, occurred_at=time)
        _load_rows(
            con, "feedback", self.feedback, send_key=text, feedback_event=text, occurred_at=time
        )
        # the ledger's keys with the entry each was sent for (None: set by a test, always read)
        decided = [(key, *outcome, self.entry_of.get(key)) for key, outcome in self.decided.items()]
        _load_rows(con, "ledger_decided", decided, send_key=text, status=text, decided_at=time,
                   reason=text, entry_id=text)  # fmt: skip
        rows = [
            (alias, p, n == 0)
            for alias, people in self.aliases.items()
            for n, p in enumerate(people)
        ]
        _load_rows(
            con, "aliases", rows, alias_person_id=text, person_id=text, is_primary=pa.bool_()
        )
        transitions.create_history_view(con, self.landing_dir)

    def reasons_of(self, person_id: str) -> list[tuple[str, str, str | None]]:
        """(from_node, reason, detail) of every recorded transition of the person, in order."""
        con = duckdb.connect()
        try:
            rows = con.execute(
                f"select from_node, reason, detail from read_parquet("
                f"'{transitions.glob(self.landing_dir)}') where person_id = ? "
                f"order by entered_at, entry_id, seq",
                [person_id],
            ).fetchall()
        finally:
            con.close()
        return [tuple(r) for r in rows]  # type: ignore[misc]

    def steps_of(self, person_id: str) -> list[tuple[str, str, str | None, datetime]]:
        """(node, reason, detail, at) of every recorded transition of the person, in order."""
        con = duckdb.connect()
        try:
            rows = con.execute(
                f"select node, reason, detail, reached_at from read_parquet("
                f"'{transitions.glob(self.landing_dir)}') where person_id = ? "
                f"order by entered_at, entry_id, seq",
                [person_id],
            ).fetchall()
        finally:
            con.close()
        return [tuple(r) for r in rows]  # type: ignore[misc]

    def path_of(self, person_id: str) -> list[str]:
        return [node for node, *_ in self.steps_of(person_id)]

    def sends_to(self, person_id: str) -> list[tuple[str, datetime]]:
        return [(d.step, d.due_at) for d in self.sent if d.person_id == person_id]


def _read_decided(con: duckdb.DuckDBPyConnection, entries: str) -> None:
    """As the ledger does for a run (ledger.create_decided): only the keys of the entries the
    tick names, so that every scenario checks it names each one that needs them."""
    con.execute(
        f"""
        create temp table decided as
        select send_key, status, decided_at, reason from ledger_decided
        where entry_id is null or entry_id in (select entry_id from ({entries}))
        """
    )


def _load_rows(
    con: duckdb.DuckDBPyConnection, name: str, rows: list[Any], **columns: pa.DataType
) -> None:
    """`rows` (tuples in the order of `columns`) as the temp table `name`, typed even when empty."""
    table = pa.table(
        {
            column: pa.array([row[n] for row in rows], kind)
            for n, (column, kind) in enumerate(columns.items())
        }
    )
    con.register(f"{name}_in", table)
    con.execute(f"create temp table {name} as select * from {name}_in")
