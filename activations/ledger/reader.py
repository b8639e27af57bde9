"""What the ledger says so far, for the next run's diff, its frequency cap and its reconciliation.

Read with an in-memory DuckDB straight from the landing files: no warehouse lock involved, and
nothing a dbt run has not caught up with yet is missed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path

import duckdb

from activations.channels.message import Message
from activations.ledger.keys import SendRef, send_key
from activations.ledger.vocabulary import COLUMNS, OUTCOME_UNKNOWN, TERMINAL, LedgerStatus
from switchyard import landing


@dataclass(frozen=True)
class PendingAttempt:
    """A send whose outcome is not known: what was attempted, when, and what it must not match."""

    person_id: str
    channel: str
    recipient: str
    subject: str | None
    body: str
    first_attempted_at: datetime  # a provider lookup searches from here
    last_attempted_at: datetime  # it may have gone out then: it counts toward the cap

    def message(self, send_key: str) -> Message:
        """The message as it was attempted: what a provider lookup must find."""
        return Message(send_key, self.channel, self.recipient, self.body, subject=self.subject)


@dataclass
class LedgerState:
    """Each key's last status and attempts, sends per person, and attempts still unsettled."""

    last_status: dict[str, LedgerStatus]
    attempts: dict[str, int]
    sends_by_person: dict[str, list[datetime]]
    refs: dict[str, SendRef] = field(default_factory=dict)
    pending: dict[str, PendingAttempt] = field(default_factory=dict)
    # when each key's latest line was written: a journey goes on from a send from then
    decided_at: dict[str, datetime] = field(default_factory=dict)
    # recipient -> provider message ids recorded recently (since a day before the earliest
    # unsettled attempt or the newest line): a provider lookup must not claim them again.
    provider_ids: dict[str, set[str]] = field(default_factory=dict)

    def is_decided(self, send_key: str) -> bool:
        return self.last_status.get(send_key) in TERMINAL

    def sends_within(
        self, person_id: str, now: datetime, hours: float, excluding: str | None = None
    ) -> int:
        """Messages sent to the person in the window, counting attempts whose outcome is unknown
        (they may have gone out), except the attempt of `excluding`: a send key being settled or
        sent once more does not cap itself."""
        return len(self.send_times_within(person_id, now, hours, excluding))

    def send_times_within(
        self, person_id: str, now: datetime, hours: float, excluding: str | None = None
    ) -> list[datetime]:
        """When each message sends_within counts went out (or may have), oldest first."""
        since = now - timedelta(hours=hours)
        sent = [at for at in self.sends_by_person.get(person_id, ()) if since < at <= now]
        unsettled = [
            p.last_attempted_at
            for key, p in self.pending.items()
            if p.person_id == person_id and key != excluding and since < p.last_attempted_at <= now
        ]
        return sorted(sent + unsettled)

    def note_send(self, person_id: str, at: datetime) -> None:
        self.sends_by_person.setdefault(person_id, []).append(at)

    def forget_send(self, person_id: str, at: datetime) -> None:
        """A send noted at `at` did not go out after all (it failed)."""
        self.sends_by_person[person_id].remove(at)

    def settle(self, send_key: str) -> None:
        """The key's unknown attempt is resolved (found, or sent once more): drop it."""
        self.pending.pop(send_key, None)

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
                    if ref.send_key in self.decided_at:
                        self.decided_at[key] = self.decided_at[ref.send_key]
                    self.attempts[key] = self.attempts[ref.send_key]
                    if ref.send_key in self.pending:
                        self.pending[key] = replace(self.pending[ref.send_key], person_id=person_id)


_UNSETTLED = ("attempted", "unknown")


def read_state(landing_dir: Path) -> LedgerState:
    """Read every ledger line landed so far."""
    folder = landing.table_dir(landing_dir, "ledger", "deliveries")
    columns = ", ".join(f"'{name}': '{kind}'" for name, kind in COLUMNS.items())
    con = duckdb.connect()
    try:
        con.execute(
            f"""
            create temp table lines as
            select *, try_cast(recorded_at as timestamp) as line_at
            from read_json('{folder}/*.jsonl', format='newline_delimited', columns={{{columns}}})
            """
        )
        rows = con.execute(
            f"""
            with ranked as (
                select *, row_number() over (
                    partition by send_key
                    -- same time (a fixed clock): deferred, attempted, unknown, then the outcome
                    order by line_at desc,
                        case status
                            when 'deferred' then -1 when 'attempted' then 0 when 'unknown' then 1
                            else 2
                        end desc
                ) as recency
                from lines
            )
            select
                send_key,
                max(case when recency = 1 then status end) as last_status,
                max(case when recency = 1 then line_at end) as last_line_at,
                count(case when status = 'attempted' then 1 end) as attempts,
                any_value(journey) as journey,
                any_value(step) as step,
                any_value(person_id) as person_id,
                any_value(entry_id) as entry_id,
                -- (unsettled attempts count against the cap through `pending`; one given up on
                -- may have gone out, so it counts too)
                list(line_at) filter (
                    where status = 'sent' or (status = 'failed' and reason = '{OUTCOME_UNKNOWN}')
                ) as sent_at
            from ranked
            group by send_key
            """
        ).fetchall()
        state = LedgerState(last_status={}, attempts={}, sends_by_person={})
        for (
            key,
            last_status,
            last_at,
            attempts,
            journey,
            step,
            person_id,
            entry_id,
            sent_at,
        ) in rows:
            state.last_status[key] = last_status
            if last_at is not None:
                state.decided_at[key] = last_at
            state.attempts[key] = attempts
            state.refs[key] = SendRef(key, journey, step, person_id, entry_id)
            for at in sent_at or ():
                state.note_send(person_id, at)
        unsettled = [k for k, status in state.last_status.items() if status in _UNSETTLED]
        if unsettled:
            state.pending = _pending_attempts(con, unsettled)
        state.provider_ids = _recent_provider_ids(con, state.pending.values())
        return state
    finally:
        con.close()


def _pending_attempts(con: duckdb.DuckDBPyConnection, keys: list[str]) -> dict[str, PendingAttempt]:
    """The message each unsettled key attempted (its latest attempt), and when."""
    attempts = con.execute(
        """
        select
            send_key,
            arg_max(person_id, line_at) as person_id,
            arg_max(channel, line_at) as channel,
            arg_max(recipient, line_at) as recipient,
            arg_max(subject, line_at) as subject,
            arg_max(body, line_at) as body,
            min(line_at) as first_attempted_at,
            max(line_at) as last_attempted_at
        from lines
        where status = 'attempted' and list_contains(?, send_key)
        group by send_key
        """,
        [keys],
    ).fetchall()
    return {
        key: PendingAttempt(person_id, channel, recipient, subject, body or "", first_at, last_at)
        for key, person_id, channel, recipient, subject, body, first_at, last_at in attempts
    }


def _recent_provider_ids(
    con: duckdb.DuckDBPyConnection, pending: Iterable[PendingAttempt]
) -> dict[str, set[str]]:
    """Provider ids recorded since a day before the earliest unsettled attempt (or the newest
    line): every message a lookup this run could come across, and no older ones (memory)."""
    starts = [p.first_attempted_at for p in pending]
    (newest,) = con.execute("select max(line_at) from lines").fetchone() or (None,)
    if newest is None:
        return {}
    since = min([*starts, newest]) - timedelta(days=1)
    rows = con.execute(
        """
        select distinct recipient, provider_message_id
        from lines
        where provider_message_id is not null and recipient is not null and line_at >= ?
        """,
        [since],
    ).fetchall()
    known: dict[str, set[str]] = {}
    for recipient, provider_id in rows:
        known.setdefault(recipient, set()).add(provider_id)
    return known
