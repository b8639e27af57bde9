"""What the ledger says so far, for the next run's diff, its frequency cap and its reconciliation.

Read with an in-memory DuckDB straight from the landing files and their compaction
(activations/ledger/store.py): no warehouse lock involved, nothing a dbt run has not caught up
with yet is missed, and a run reads the keys and people it acts on, not the whole history.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa

from activations.channels.message import Message
from activations.ledger import store
from activations.ledger.keys import SendRef, send_key, send_key_sql
from activations.ledger.vocabulary import TERMINAL, LedgerStatus
from activations.tick import lit


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
    # deferred keys: (reason, detail) of their latest line, so an unchanged one is not rewritten
    deferred: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
    # attempts the provider refused before any work (DeferReason.RETRYING), per key: they went
    # nowhere, so only a key's attempts beyond its refusals may have gone out (`doubtful`)
    refusals: dict[str, int] = field(default_factory=dict)
    # the latest attempt of each open key, in doubt or refused (a dead letter names its message)
    last_attempts: dict[str, PendingAttempt] = field(default_factory=dict)
    # transactional journeys: their sends, and attempts in doubt, count toward no cap
    uncounted_journeys: frozenset[str] = frozenset()
    # keys of person ids replaced and gone (follow_aliases) -> the key their step goes on under
    # (the person they go on as, dim_person_aliases.is_primary, as the journey tick follows)
    successors: dict[str, str] = field(default_factory=dict)
    # of those, the keys whose successor has a final record of its own: the step went on there,
    # so the old key is superseded (never while the successor was not decided: an attempt in
    # doubt under the old key is then still its own to settle)
    superseded: dict[str, str] = field(default_factory=dict)

    def is_decided(self, send_key: str) -> bool:
        return self.last_status.get(send_key) in TERMINAL

    def doubtful(self, send_key: str) -> int:
        """The key's attempts that may have gone out: all but those the provider refused."""
        return max(0, self.attempts.get(send_key, 0) - self.refusals.get(send_key, 0))

    def refused(self, send_key: str) -> bool:
        """Attempted, and every attempt refused before any work: nothing went out."""
        return self.attempts.get(send_key, 0) > 0 and not self.doubtful(send_key)

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
            if p.person_id == person_id
            and key != excluding
            and since < p.last_attempted_at <= now
            and not self._uncounted(key)
        ]
        return sorted(sent + unsettled)

    def _uncounted(self, key: str) -> bool:
        ref = self.refs.get(key)
        return ref is not None and ref.journey in self.uncounted_journeys

    def note_send(self, person_id: str, at: datetime) -> None:
        self.sends_by_person.setdefault(person_id, []).append(at)

    def forget_send(self, person_id: str, at: datetime) -> None:
        """A send noted at `at` did not go out after all (it failed)."""
        self.sends_by_person[person_id].remove(at)

    def supersede(self, decided: Iterable[str]) -> None:
        """`decided`: successor keys found with a final record of their own (here, or in the
        ledger: decided_on_their_own): their old keys are superseded."""
        found = set(decided)
        for old, new in self.successors.items():
            if new in found:
                self.superseded[old] = new

    def settle(self, send_key: str) -> None:
        """The key's unknown attempt is resolved (found, or sent once more): drop it."""
        self.pending.pop(send_key, None)

    def follow_aliases(
        self,
        aliases: Mapping[str, Sequence[str]],
        aliased_at: Mapping[tuple[str, str], datetime] | None = None,
    ) -> None:
        """What was recorded under a person id that was since merged or split (dim_person_aliases:
        warehouse.read_person_aliases, the person each goes on as first) holds for the people
        who hold its identifiers now: a merge neither resets the cap nor sends an entry's step
        again under the new id. Its sends count for each of them, except those made after the
        split (`aliased_at`) under an id that lives on: its own only. Its keys go on under the
        one it goes on as, where that is not itself."""
        since = aliased_at or {}
        # The aliases already lead to today's people (chains followed): fold what was recorded,
        # not what another alias just added.
        recorded = {alias: list(self.sends_by_person.get(alias, ())) for alias in aliases}
        for alias, people in aliases.items():
            lives_on = alias in people
            for person_id in people:
                if person_id == alias:
                    continue
                cut = since.get((alias, person_id)) if lives_on else None
                sends = [at for at in recorded[alias] if cut is None or at < cut]
                self.sends_by_person.setdefault(person_id, []).extend(sends)
        for ref in self.refs.values():
            holders = aliases.get(ref.person_id)
            if holders and holders[0] != ref.person_id:
                self.successors[ref.send_key] = send_key(
                    ref.journey, ref.step, holders[0], ref.entry_id
                )
        # judged on the successors' own records, before the old keys' are carried to them
        self.supersede(k for k in self.successors.values() if self.is_decided(k))
        olds_of: dict[str, list[str]] = {}
        for old, key in self.successors.items():
            olds_of.setdefault(key, []).append(old)
        for key, olds in olds_of.items():
            self._carry(key, olds, aliases[self.refs[olds[0]].person_id][0])

    def _carry(self, key: str, olds: list[str], person_id: str) -> None:
        """The record of `olds` (keys of replaced ids, gone) under `key`, their successor under
        `person_id`. The successor's own final record wins. Otherwise it counts every attempt
        made under either (the retry limit holds across the merge), and an attempt in doubt
        under an old key is still to settle there unless the successor has its own: the latest,
        looked up from the earliest (a deferred successor's is looked up again each run, as an
        unmerged key's is)."""
        own = key in self.last_status
        if own and self.is_decided(key):
            return
        if not own:  # a final old record first: the step was decided (the tick says so too)
            latest = max(
                olds, key=lambda o: (self.is_decided(o), self.decided_at.get(o, datetime.min))
            )
            self.last_status[key] = self.last_status[latest]
            if latest in self.decided_at:
                self.decided_at[key] = self.decided_at[latest]
            if latest in self.deferred:  # a refusal's wait holds under the new key too
                self.deferred[key] = self.deferred[latest]
        for counts in (self.attempts, self.refusals):
            counts[key] = counts.get(key, 0) + sum(counts.get(o, 0) for o in olds)
        tried = [self.last_attempts[o] for o in olds if o in self.last_attempts]
        if tried and key not in self.last_attempts:
            last = max(tried, key=lambda p: p.last_attempted_at)
            self.last_attempts[key] = replace(last, person_id=person_id)
        doubts = [self.pending[o] for o in olds if o in self.pending]
        if not doubts or key in self.pending:
            return
        doubt = max(doubts, key=lambda p: p.last_attempted_at)
        since = min(p.first_attempted_at for p in doubts)
        self.pending[key] = replace(doubt, person_id=person_id, first_attempted_at=since)


def read_state(
    landing_dir: Path,
    *,
    keys: Collection[str] | None = None,
    people: Collection[str] | None = None,
    sends_since: datetime | None = None,
    moved_people: Collection[str] = (),
    uncounted_journeys: Collection[str] = (),
    journey: str | None = None,
    sends_until: datetime | None = None,
    latest_sends: int | None = None,
    keys_entered_since: datetime | None = None,
) -> LedgerState:
    """What the ledger says so far: every key, or only those a run needs. With `keys`, those
    keys, the keys still open (unsettled, deferred) and every key of `moved_people` (replaced
    person ids: their record moves with them, LedgerState.follow_aliases); with `people`, their
    sends only, from `sends_since` on (the cap's longest window), those of `uncounted_journeys`
    (transactional) left out. With `journey` too, only the open keys a run of it acts on or
    counts: `keys`, those of `people` (an attempt in doubt counts toward their cap) and the
    journey's own (one whose entry has left its step is settled as exited): not every open key
    of every journey. `latest_sends`: only each person's latest that many sends up to
    `sends_until`, and every later one (all a cap of that many messages needs, whenever its clock
    reads: LedgerState.send_times_within). `keys_entered_since`: when the earliest entry of
    `keys` began, if known: only the keys file's rows seen since are looked at for them."""
    with store.bounded_connection(landing_dir) as con:
        view = store.with_newer_materialized(con, store.layout(con, landing_dir))
        state = LedgerState(last_status={}, attempts={}, sends_by_person={})
        state.uncounted_journeys = frozenset(uncounted_journeys)
        if people is not None:
            con.register("wanted_people", _ids("person_id", people))
        if keys is None:
            con.execute(f"create temp table keys as {store.keys_sql(view)}")
        else:
            relevant_to = journey if people is not None else None
            seen = seen_since_sql(keys_entered_since)
            _read_keys(con, view, keys, moved_people, relevant_to, seen)
        statuses = (
            """
            select send_key, last_status, last_at, attempts, refusals from statuses
            where send_key in (select send_key from wanted_keys)
                or send_key in (select send_key from keys)
            """
            if keys is not None
            else "select send_key, last_status, last_at, attempts, refusals from keys"
        )
        for key, last_status, last_at, attempts, refusals in con.execute(statuses).fetchall():
            state.last_status[key] = last_status
            if last_at is not None:
                state.decided_at[key] = last_at
            state.attempts[key] = attempts
            if refusals:
                state.refusals[key] = refusals
        for key, journey, step, person_id, entry_id, status, reason, detail in con.execute(
            """
            select send_key, journey, step, person_id, entry_id, last_status, last_reason,
                last_detail
            from keys
            """
        ).fetchall():
            state.refs[key] = SendRef(key, journey, step, person_id, entry_id)
            if status == "deferred":
                state.deferred[key] = (reason, detail)
        # Sends per person (unsettled attempts count against the cap through `pending`).
        since = f"{lit(sends_since.isoformat())}::timestamp" if sends_since else None
        until = f"{lit(sends_until.isoformat())}::timestamp" if sends_until else None
        who = "select person_id from wanted_people" if people is not None else None
        sends = store.sends_sql(view, since, who, uncounted_journeys, until, latest_sends)
        if sends:
            for person_id, at in con.execute(sends).fetchall():
                state.note_send(person_id, at)
        state.last_attempts = _latest_attempts(con)
        state.pending = {
            key: attempt
            for key, attempt in state.last_attempts.items()
            if state.doubtful(key)  # a refused attempt went nowhere
        }
        state.provider_ids = _recent_provider_ids(con, view, state.pending.values())
        return state


def _statuses_sql(view: store.Layout, table: str, seen: str = "true") -> str:
    """The status columns of each key in `table` (send_key) and of each key the newer lines
    touch: a narrow read of the keys file, folded with the newer lines. `seen`: a condition that
    holds for every key asked for (seen_since_sql): the keys file's older row groups are skipped."""
    narrow = store.stored_sql(view, [*store.STATUS_COLUMNS, "seen_at"])
    asked = (
        f"select {', '.join(store.STATUS_COLUMNS)} from ({narrow}) "
        f"where send_key in (select send_key from {table}) and {seen}"
    )
    return store.keys_sql(view, wanted=[asked] if narrow else [], columns=store.STATUS_COLUMNS)


def _read_keys(
    con: duckdb.DuckDBPyConnection,
    view: store.Layout,
    keys: Collection[str],
    moved_people: Collection[str],
    journey: str | None,
    seen: str = "true",
) -> None:
    """`statuses`: the status of each key asked for and each the newer lines touch (a narrow
    read); `keys`: the whole rows of the keys still open (with `journey`: the journey's, those
    asked for and the attempts in doubt of `wanted_people`) and of moved people's keys."""
    con.register("wanted_keys", _ids("send_key", keys))
    con.execute(f"create temp table statuses as {_statuses_sql(view, 'wanted_keys', seen)}")
    # The whole rows of few keys: the stored rows by constant filters (pushed into the Parquet
    # scan, one scan each), folded with the newer lines. Stored open rows are found by status; a
    # key open now whose stored row is not was reopened by a newer line (rare): named.
    open_ = ", ".join(lit(s) for s in store.OPEN)
    newer = view.newer_lines()
    reopened: list[str] = []
    if newer is not None:
        (reopened,) = con.execute(
            f"""
            select coalesce(list(send_key), []) from statuses
            where last_status in ({open_})
                and send_key in (select send_key from ({newer}) where status in ({open_}))
            """
        ).fetchall()[0]
    con.register("open_keys", _ids("send_key", reopened))
    con.register("moved_people", _ids("person_id", moved_people))
    parts: list[str] = []
    relevant = "true"
    if journey is not None:
        # another journey's key of a due person counts toward their cap only with an attempt
        # in doubt (a channel): one only ever deferred never went out
        relevant = f"""(journey = {lit(journey)}
            or send_key in (select send_key from wanted_keys)
            or (person_id in (select person_id from wanted_people) and channel is not null))"""
    if stored := store.stored_sql(view):
        parts.append(f"select * from ({stored}) where last_status in ({open_}) and {relevant}")
        if moved_people:
            people = ", ".join(lit(p) for p in moved_people)
            parts.append(f"select * from ({stored}) where person_id in ({people})")
        if len(reopened) > _LISTED:  # a long list reads slower as constants than as a join
            parts.append(f"select * from ({stored}) where send_key in (select * from open_keys)")
        elif reopened:
            listed = ", ".join(lit(k) for k in reopened)
            parts.append(f"select * from ({stored}) where send_key in ({listed})")
    con.execute(
        "create temp table picked as "
        + (" union ".join(f"({q})" for q in parts) or store.keys_sql(view, "false"))
    )
    rows = "select * from picked"
    if newer is not None:
        rows += f" union all by name {store.line_as_key_sql(newer, tuple(store.KEY_COLUMNS))}"
    con.execute(
        f"""
        create temp table keys as
        select * from ({store.fold_sql(rows)})
        where (
            send_key in (select send_key from picked)
            or send_key in (select send_key from open_keys)
            or person_id in (select person_id from moved_people)
        ) and (
            (last_status in ({open_}) and {relevant})
            or person_id in (select person_id from moved_people)
        )
        """
    )
    # Keys of moved people and open keys count in the statuses too.
    con.execute(
        f"""
        insert into statuses by name
        select {", ".join(store.STATUS_COLUMNS)} from keys
        where send_key not in (select send_key from statuses)
        """
    )


_LISTED = 1000  # keys named as constants in a query, at most


def _ids(column: str, values: Iterable[str]) -> pa.Table:
    return pa.table({column: pa.array(list(values), pa.string())})


def _latest_attempts(con: duckdb.DuckDBPyConnection) -> dict[str, PendingAttempt]:
    """The message each open key attempted (its latest attempt), and when: until a final line,
    an attempt may have gone out, whatever deferred the key since, unless the provider refused
    it (LedgerState.doubtful)."""
    open_ = ", ".join(lit(s) for s in store.OPEN)
    rows = con.execute(
        f"""
        select send_key, person_id, channel, recipient, subject, body,
            first_attempted_at, last_attempted_at
        from keys
        where last_status in ({open_}) and channel is not null
        """
    ).fetchall()
    return {
        key: PendingAttempt(person_id, channel, recipient, subject, body or "", first_at, last_at)
        for key, person_id, channel, recipient, subject, body, first_at, last_at in rows
    }


def _recent_provider_ids(
    con: duckdb.DuckDBPyConnection, view: store.Layout, pending: Iterable[PendingAttempt]
) -> dict[str, set[str]]:
    """Provider ids recorded since a day before the earliest unsettled attempt (or the newest
    line): every message a lookup this run could come across, and no older ones (memory)."""
    lines = store.all_lines_sql(view)
    if lines is None:
        return {}
    starts = [p.first_attempted_at for p in pending]
    newest = con.execute(store.newest_line_sql(view)).fetchall()[0][0]
    if newest is None:
        return {}
    since = min([*starts, newest]) - timedelta(days=1)
    rows = con.execute(
        f"""
        select distinct recipient, provider_message_id
        from ({lines})
        where provider_message_id is not null and recipient is not null and line_at >= ?
        """,
        [since],
    ).fetchall()
    known: dict[str, set[str]] = {}
    for recipient, provider_id in rows:
        known.setdefault(recipient, set()).add(provider_id)
    return known


def create_decided(
    con: duckdb.DuckDBPyConnection,
    landing_dir: Path,
    journey: str,
    aliases: Mapping[str, Sequence[str]],
    entries: str | None = None,
) -> None:
    """`decided` (send_key, status, reason, decided_at, carried) on `con`: the journey's keys
    with a final status, and (carried) those of replaced person ids under the id each goes on
    as (the first of its people, where not itself; unless that id has its own record), in
    SQL: a run never holds every key in memory. `entries` (a query of entry_id, entered_at):
    only the keys of these entries (a tick's open ones), so that what a tick holds does not grow
    with the journey's history; nor, mostly, does what it reads: only keys with a line since the
    earliest of these entries began are read (store.KEY_COLUMNS, seen_at; the keys file keeps
    each journey's closed keys in that order, and skips the older row groups). One long-lived
    open entry takes the bound back to its start."""
    view = store.layout(con, landing_dir)
    pairs = [(a, people[0]) for a, people in aliases.items() if people and people[0] != a]
    con.register(
        "alias_pairs",
        pa.table(
            {
                "alias": pa.array([a for a, _ in pairs], pa.string()),
                "person_id": pa.array([p for _, p in pairs], pa.string()),
            }
        ),
    )
    try:
        terminal = ", ".join(lit(s) for s in TERMINAL)
        carried = send_key_sql("k.journey", "k.step", "m.person_id", "k.entry_id")
        scope = f"journey = {lit(journey)}"
        if entries is not None:
            con.execute(
                f"create temp table asked_entries as select entry_id, entered_at from ({entries})"
            )
            scope += " and entry_id in (select entry_id from asked_entries)"
            earliest, undated = con.execute(
                "select min(entered_at), count(*) - count(entered_at) from asked_entries"
            ).fetchone() or (None, 0)
            scope += f" and {seen_since_sql(None if undated else earliest)}"
        # what deciding needs, and what folding a key's newer lines picks the last one by
        columns = ["send_key", "journey", "step", "person_id", "entry_id", "last_status", "last_at"]
        columns += ["last_rank", "last_reason", "last_detail", "seen_at"]
        keys = store.keys_sql(view, scope, columns=columns)
        con.execute(f"create temp table ledger_keys as {keys}")
        con.execute(
            f"""
            create temp table decided as
            select send_key, last_status as status, last_reason as reason, last_at as decided_at,
                false as carried
            from ledger_keys where last_status in ({terminal})
            union all
            select send_key, any_value(status), any_value(reason), any_value(decided_at), true
            from (
                select {carried} as send_key, k.last_status as status, k.last_reason as reason,
                    k.last_at as decided_at
                from ledger_keys k join alias_pairs m on k.person_id = m.alias
                where k.last_status in ({terminal})
            )
            where send_key not in (select send_key from ledger_keys)
            group by send_key
            """
        )
    finally:
        for table in ("ledger_keys", "asked_entries"):
            con.execute(f"drop table if exists {table}")
        con.unregister("alias_pairs")


# An entry begins at or before the clock of the tick that enters it, and each of its keys has a
# line stamped by a run that found the key's step due, whose clock had reached the entry's start
# (lines stamped later still, by a run whose clock is behind, only add to what seen_at spans).
# Runs on hosts whose clocks disagree by less than this still find them.
CLOCK_SKEW_MARGIN = timedelta(days=1)


def seen_since_sql(earliest: datetime | None) -> str:
    """A condition on key rows (store.KEY_COLUMNS) that holds for every key of entries begun at
    `earliest` or later: their keys were seen since (less the margin). A key seen at no readable
    time passes; so does every key when nothing bounds them (`earliest` None, or so long ago that
    the margin runs off the calendar). A filter on the keys file's row groups, skipped by their
    min and max where it keeps a journey's keys in seen_at order (compact.py)."""
    if earliest is None or earliest < datetime.min + CLOCK_SKEW_MARGIN:
        return "true"
    since = lit((earliest - CLOCK_SKEW_MARGIN).isoformat())
    return f"(seen_at >= cast({since} as timestamp) or seen_at is null)"


def open_keys(landing_dir: Path) -> set[str]:
    """Every send key without a final outcome yet (store.OPEN), folded in SQL: read_state
    would bring every key of the ledger into memory to find them."""
    with store.bounded_connection(landing_dir) as con:
        view = store.layout(con, landing_dir)
        open_ = ", ".join(lit(s) for s in store.OPEN)
        # the reason and detail too: folding breaks ties on the clock by them, as read_state
        columns = [*store.STATUS_COLUMNS, "last_reason", "last_detail"]
        keys = store.keys_sql(view, f"last_status in ({open_})", columns=columns)
        return {key for (key,) in con.execute(f"select send_key from ({keys})").fetchall()}


def decided_on_their_own(landing_dir: Path, keys: Collection[str]) -> list[str]:
    """Of `keys`, those the ledger has a final line for under the key itself (not carried from
    a replaced person id). Read from the ledger, not a tick's `decided`: a successor key's
    entry may have ended since (a run stopped after its tick moved the entry on)."""
    if not keys:
        return []
    with store.bounded_connection(landing_dir) as con:
        view = store.layout(con, landing_dir)
        con.register("asked_keys", _ids("send_key", keys))
        terminal = ", ".join(lit(s) for s in TERMINAL)
        found = con.execute(
            f"""
            select send_key from ({_statuses_sql(view, "asked_keys")})
            where send_key in (select send_key from asked_keys) and last_status in ({terminal})
            """
        ).fetchall()
    return [key for (key,) in found]


# No person id: Dagster keeps run metadata for good, and a forget cannot reach it.
PREVIEW_COLUMNS = ("step", "channel", "status", "reason", "recorded_at")


def run_preview(landing_dir: Path, run_id: str, limit: int = 10) -> list[dict[str, object]]:
    """The first `limit` final lines (sent, failed, skipped, deferred) a run wrote, for an
    operator's glance: no recipient, subject or body. Read from the run's own files, which a
    compaction may already have taken (then none)."""
    rows: list[dict[str, object]] = []
    for path in sorted(store.run_files_dir(landing_dir).glob(f"run-{run_id}-*.jsonl")):
        with path.open(encoding="utf-8") as lines:
            for line in lines:
                if len(rows) >= limit:
                    return rows
                try:
                    row = json.loads(line)
                except ValueError:
                    continue  # a torn last line of a crashed run
                if row.get("status") in (*TERMINAL, "deferred"):
                    rows.append({c: row.get(c) for c in PREVIEW_COLUMNS})
    return rows
