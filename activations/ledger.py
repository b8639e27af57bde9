"""The delivery ledger: append-only landing files, read back by dbt and by the next run's diff.

Every provider call is bracketed: an `attempted` line is fsynced before the call and a `sent` or
`failed` line after it. A key whose last line is `attempted` had its outcome lost (a crash mid-call)
and is sent at most once more, visibly (its attempt number goes up).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

from switchyard import landing

# Mirrors the `ledger.deliveries` dbt source; tests/test_ledger_schema.py keeps the two in step.
COLUMNS: dict[str, str] = {
    "send_key": "VARCHAR",
    "run_id": "VARCHAR",
    "journey": "VARCHAR",
    "step": "VARCHAR",
    "person_id": "VARCHAR",
    "entry_id": "VARCHAR",
    "channel": "VARCHAR",
    "recipient": "VARCHAR",
    "status": "VARCHAR",
    "reason": "VARCHAR",
    "attempt": "INTEGER",
    "http_status": "INTEGER",
    "provider_message_id": "VARCHAR",
    "subject": "VARCHAR",
    "body": "VARCHAR",
    "recorded_at": "VARCHAR",
}
TERMINAL = ("sent", "failed", "skipped")


@dataclass(frozen=True)
class SendRef:
    """Who and what a ledger line is about."""

    send_key: str
    journey: str
    step: str
    person_id: str
    entry_id: str


def send_key(journey: str, step: str, person_id: str, entry_id: str) -> str:
    """Deterministic: the same (journey, step, person, entry) always gives the same key."""
    raw = "\x1f".join((journey, step, person_id, entry_id))
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


@dataclass
class LedgerState:
    """What the ledger says so far: each key's last status and attempts, and recent sends."""

    last_status: dict[str, str]
    attempts: dict[str, int]
    sends_by_person: dict[str, list[datetime]]
    refs: dict[str, SendRef] = field(default_factory=dict)

    def is_decided(self, send_key: str) -> bool:
        return self.last_status.get(send_key) in TERMINAL

    def sends_within(self, person_id: str, now: datetime, hours: float) -> int:
        since = now - timedelta(hours=hours)
        return sum(1 for at in self.sends_by_person.get(person_id, ()) if since < at <= now)

    def note_send(self, person_id: str, at: datetime) -> None:
        self.sends_by_person.setdefault(person_id, []).append(at)

    def follow_aliases(self, aliases: Mapping[str, Iterable[str]]) -> None:
        """What was recorded under a person id that was since merged or split (dim_person_aliases)
        holds for every person who now holds its identifiers: a merge neither resets the cap nor
        sends an entry's step again under the new id."""
        # The aliases already lead to today's people (chains followed): fold what was recorded,
        # not what another alias just added.
        recorded = {alias: list(self.sends_by_person.get(alias, ())) for alias in aliases}
        moved = [ref for ref in self.refs.values() if ref.person_id in aliases]
        for alias, people in aliases.items():
            for person_id in people:
                if person_id != alias:
                    self.sends_by_person.setdefault(person_id, []).extend(recorded[alias])
        for ref in moved:
            for person_id in aliases[ref.person_id]:
                key = send_key(ref.journey, ref.step, person_id, ref.entry_id)
                if key not in self.last_status:  # the new id's own record wins
                    self.last_status[key] = self.last_status[ref.send_key]
                    self.attempts[key] = self.attempts[ref.send_key]


def read_state(landing_dir: Path) -> LedgerState:
    """Read every ledger line landed so far (an in-memory DuckDB: no warehouse lock involved)."""
    folder = landing.table_dir(landing_dir, "ledger", "deliveries")
    columns = ", ".join(f"'{name}': '{kind}'" for name, kind in COLUMNS.items())
    con = duckdb.connect()
    rows = con.execute(
        f"""
        with lines as (
            select *, try_cast(recorded_at as timestamp) as line_at
            from read_json('{folder}/*.jsonl', format='newline_delimited', columns={{{columns}}})
        ),
        ranked as (
            select *, row_number() over (
                partition by send_key
                order by line_at desc, case status when 'attempted' then 0 else 1 end desc
            ) as recency
            from lines
        )
        select
            send_key,
            max(case when recency = 1 then status end) as last_status,
            count(case when status = 'attempted' then 1 end) as attempts,
            any_value(journey) as journey,
            any_value(step) as step,
            any_value(person_id) as person_id,
            any_value(entry_id) as entry_id,
            -- An attempt without an outcome may have gone out: count it against the cap.
            list(line_at) filter (
                where status = 'sent' or (status = 'attempted' and recency = 1)
            ) as sent_at
        from ranked
        group by send_key
        """
    ).fetchall()
    con.close()
    state = LedgerState(last_status={}, attempts={}, sends_by_person={})
    for key, last_status, attempts, journey, step, person_id, entry_id, sent_at in rows:
        state.last_status[key] = last_status
        state.attempts[key] = attempts
        state.refs[key] = SendRef(key, journey, step, person_id, entry_id)
        for at in sent_at or ():
            state.note_send(person_id, at)
    return state


class LedgerWriter:
    """Appends ledger lines for one run to its own file, fsynced line by line."""

    def __init__(self, landing_dir: Path, run_id: str) -> None:
        self.run_id = run_id
        self._log = landing.AppendLog(landing_dir, "ledger", "deliveries", prefix=f"run-{run_id}")

    def write(self, ref: SendRef, status: str, at: datetime, **fields: Any) -> None:
        row: dict[str, Any] = dict.fromkeys(COLUMNS)
        row.update(
            send_key=ref.send_key,
            run_id=self.run_id,
            journey=ref.journey,
            step=ref.step,
            person_id=ref.person_id,
            entry_id=ref.entry_id,
            status=status,
            recorded_at=at.isoformat(timespec="microseconds"),
        )
        unknown = set(fields) - set(COLUMNS)
        if unknown:
            raise ValueError(f"not ledger columns: {sorted(unknown)}")
        row.update(fields)
        self._log.append(row)

    def close(self) -> None:
        self._log.close()
