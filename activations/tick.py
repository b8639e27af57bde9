"""One engine tick, columnar: every entry of a journey moved as far as it can go now, in SQL.

A tick reads, on one in-memory DuckDB connection, these relations (`inputs.open_inputs` makes
them from the warehouse and the landing files; the benchmark makes its own):

  audience   the journey's audience model (event journeys: one row per entry, with the entry's
             event (entry_event_id) and former_entry_id, what it was named before entry ids
             stopped naming the person; else per person)
  profiles   dim_people: person_id, timezone, usual_active_hour and what conditions name
  events     tracked events: person_id, event_name, occurred_at
  feedback   engagement with sends: send_key, feedback_event, occurred_at
  history    every transition recorded so far (activations/transitions.py)
  decided    this journey's send keys the ledger has a final status for: send_key, status,
             reason, decided_at, carried (those recorded under a replaced person id, carried
             to the id it goes on as); only those of open entries are needed (run_tick's
             read_decided makes it once they are known)
  aliases    dim_person_aliases: alias_person_id, person_id, is_primary (replaced ids, who
             holds them now, a split id that lives on itself; whom its entries follow)

and then, all in set-based statements:
  1. new entries: audience rows not yet entered, within the re-entry policy;
  2. exits and goals: exit events, goal events in their window, the exit criterion;
  3. moves, in rounds: every entry whose node is due goes on (waits that are over or whose event
     came, branches, splits, sends the ledger has decided, exit steps); what moved may move again
     in the next round, up to the graph's depth;
  4. due sends: entries at a send node that is due, whose key the ledger has not decided.
The new transitions are written as one file before anything is sent (decide, then deliver).
Nothing here loops over entries in Python.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import duckdb
import pyarrow as pa
from sqlglot import exp

from activations import transitions
from activations.graph import (
    COMPLETED,
    CONVERTED,
    EXITED,
    FINAL,
    LEFT_AUDIENCE,
    NOT_ENTERED,
    Branch,
    Split,
    Step,
    Wait,
)
from activations.journeys import Journey

log = logging.getLogger(__name__)
_BUCKETS = 10_000  # split and holdout shares in steps of 0.01 %


@dataclass(frozen=True)
class DueSend:
    """An entry at a send node that is due, whose send key the ledger has not decided."""

    entry_id: str
    person_id: str
    step: str
    send_key: str
    due_at: datetime
    entered_at: datetime
    arm: str
    properties: str | None


@dataclass(frozen=True)
class TickResult:
    transitions: int  # rows recorded by this tick
    entered: int
    due_table: pa.Table  # the due sends, columnar (DueSend's fields)
    rounds: int
    rows: list[dict[str, Any]] = field(default_factory=list)  # a preview's transitions

    @property
    def due(self) -> list[DueSend]:
        """The due sends, oldest first (the table is in no order)."""
        sends = [DueSend(**row) for row in self.due_table.to_pylist()]
        return sorted(sends, key=lambda d: (d.due_at, d.send_key))


def lit(value: str) -> str:
    """A string literal, quoted by sqlglot (names come from a validated declaration, but SQL text
    is still never pasted together from them)."""
    return exp.Literal.string(value).sql(dialect="duckdb")


_FINAL = ", ".join(lit(f) for f in sorted(FINAL))  # where an entry has ended, as a SQL list
# The graph's nodes as a table (activations.graph): what the statements join to.
_NODE_SCHEMA = pa.schema(
    [("name", pa.string()), ("kind", pa.string()), ("next", pa.string()),
     ("minutes", pa.float64()), ("until_time_minutes", pa.int32()), ("usual_hour", pa.bool_()),
     ("default_timezone", pa.string()), ("default_hour", pa.int32()),
     ("until_event", pa.string()), ("of_step", pa.string()), ("timeout_minutes", pa.float64()),
     ("on_timeout", pa.string()), ("wait_minutes", pa.int32())]
)  # fmt: skip
NOW_SQL = "getvariable('now')"  # the tick's clock: conditions' current_date reads it too
_ENTRY_PASSES = 50  # candidates of one person beyond this wait for the next tick
# What the engine keeps of an entry's latest row while moving it (the transition's own columns,
# from_node, reason, detail and the rest, are only written).
# send_key: of the entry's send at its node (null elsewhere), hashed once where it arrives.
_POSITION = "entry_id, person_id, seq, node, reached_at, next_at, entered_at, arm, send_key"
_ROWS_PREFIX = "tick_rows_"
_PER_TICK = ("journey", "run_id", "recorded_at", "journey_version")


# Makes `decided` on the connection for the entries a query names (entry_id, entered_at:
# ledger.create_decided).
ReadDecided = Callable[[duckdb.DuckDBPyConnection, str], None]


def send_key_sql(journey: str, step: str, person: str, entry: str) -> str:
    """activations.ledger.keys.send_key, in SQL: the first 32 hex digits of sha256 of the four
    parts joined by the unit separator."""
    joined = " || chr(31) || ".join((journey, step, person, entry))
    return f"left(sha256({joined}), 32)"


def hash_bucket_sql(text: str, buckets: int = _BUCKETS) -> str:
    """macros/hash_bucket.sql (duckdb) in the engine: the first 32 bits of md5, modulo."""
    return f"(cast('0x' || left(md5({text}), 8) as bigint) % {buckets})"


def run_tick(
    con: duckdb.DuckDBPyConnection,
    journey: Journey,
    now: datetime,
    run_id: str,
    landing_dir: Path | None,
    read_decided: ReadDecided | None = None,
) -> TickResult:
    """Move the journey's entries on, record the transitions (unless `landing_dir` is None: a
    preview) and return the sends that are due. `read_decided`: makes `decided` once the open
    entries are known (else `con` has it already)."""
    # The tick's tables live for one tick in memory: an automatic checkpoint (every 16 MiB by
    # default) would compress them all again mid-tick, up to a second each time at 1M entries.
    (previous,) = con.execute("select current_setting('checkpoint_threshold')").fetchone() or ("",)
    con.execute("set checkpoint_threshold = '64 GiB'")
    try:
        return _tick(con, journey, now, run_id, landing_dir, read_decided)
    finally:
        con.execute(f"set checkpoint_threshold = {lit(str(previous))}")


def _tick(
    con: duckdb.DuckDBPyConnection,
    journey: Journey,
    now: datetime,
    run_id: str,
    landing_dir: Path | None,
    read_decided: ReadDecided | None,
) -> TickResult:
    # Nothing here reads rows in the order they were written (engine.classify orders the due
    # sends), and large copies run faster and leaner without keeping it.
    con.execute("set preserve_insertion_order = false")
    _declare_nodes(con, journey)
    con.execute("create or replace temp table zones as select name from pg_timezone_names()")
    # Read once: every round and step below joins them.
    con.execute("create or replace temp table tick_events as select * from events")
    con.execute("create or replace temp table tick_feedback as select * from feedback")
    con.execute("set variable now = ?::timestamp", [now])
    _follow_merges(con)
    _read_positions(con, journey)
    if read_decided is not None:
        # Only open entries move, and a new one has no keys yet (entry ids are never reused:
        # _enter), so the ledger's keys of ended entries are never asked about.
        read_decided(
            con, f"select entry_id, entered_at from positions where node not in ({_FINAL})"
        )
    _former_ids(con, journey)
    _start_new_rows(con, journey)
    _end_merged_duplicates(con, journey)

    # Entries already in the journey end first (exit events, goals), so that whether a new one
    # may enter is judged on when they ended, however late this tick runs.
    _end_by_events(con, journey)
    entered = _enter(con, journey)
    _end_by_events(con, journey, "completed")
    rounds = _move(con, journey)
    due = _due(con, journey)
    con.execute(
        f"""
        create or replace temp view recorded as
        select * exclude (run_id, recorded_at, journey_version), {lit(run_id)} as run_id,
            getvariable('now') as recorded_at, {lit(journey.version)} as journey_version
        from new_rows
        """
    )
    (count,) = con.execute("select count(*) from new_rows").fetchone() or (0,)
    if landing_dir is not None and count:
        transitions.append(con, "recorded", landing_dir, prefix=f"tick-{run_id}")
    rows: list[dict[str, Any]] = []
    if landing_dir is None:  # a preview: the steps it would record, to show
        shown = con.execute(
            "select entry_id, person_id, from_node, node, reached_at, next_at, arm, reason, detail "
            "from recorded order by entry_id, seq"
        )
        names = [d[0] for d in shown.description or []]
        rows = [dict(zip(names, row, strict=True)) for row in shown.fetchall()]
    return TickResult(int(count), entered, due, rounds, rows)


def _declare_nodes(con: duckdb.DuckDBPyConnection, journey: Journey) -> None:
    """The graph as small tables, so the statements join to it instead of spelling it out."""
    rows: list[dict[str, Any]] = []
    for node in journey.nodes:
        row: dict[str, Any] = {"name": node.name, "kind": node.kind}
        if isinstance(node, Step):
            row.update(next=node.next, wait_minutes=node.wait_minutes)
        elif isinstance(node, Wait):
            hh_mm = node.until_time.split(":") if node.until_time else None
            row.update(
                next=node.next,
                minutes=node.minutes,
                until_time_minutes=int(hh_mm[0]) * 60 + int(hh_mm[1]) if hh_mm else None,
                usual_hour=node.until_usual_hour,
                default_timezone=node.default_timezone,
                default_hour=node.default_hour,
                until_event=node.until_event,
                of_step=node.of_step,
                timeout_minutes=node.timeout_minutes,
                on_timeout=node.on_timeout,
            )
        rows.append(row)
    con.register("nodes_in", pa.Table.from_pylist(rows, schema=_NODE_SCHEMA))
    con.execute("create or replace temp table nodes as select * from nodes_in")
    paths = []
    for node in journey.nodes:
        if isinstance(node, Split):
            low = 0
            for path in node.paths:
                high = low + round(path.percent * _BUCKETS / 100)
                paths.append([node.name, path.name, low, high, path.next])
                low = high
            paths[-1][3] = _BUCKETS  # rounding never leaves a bucket without a path
    con.execute(
        "create or replace temp table split_paths "
        "(node varchar, path varchar, low integer, high integer, next varchar)"
    )
    if paths:
        con.executemany("insert into split_paths values (?, ?, ?, ?, ?)", paths)


def _arrival_next_at() -> str:
    """When the node an entry just reached is due (columns of `arrived` joined to `nodes` n and
    `profiles` p): a wait's end, an event wait's deadline, a send's time (not before entry +
    wait_minutes); the arrival itself for the rest."""
    # The usual active hour is learned in UTC (dim_people.usual_active_hour_utc); a clock time,
    # and the default hour for people with no engagement yet, are the person's own.
    tz = (
        "case when n.usual_hour and p.usual_active_hour_utc is not null then 'UTC' "
        "when p.known_zone then p.timezone "
        "else n.default_timezone end"
    )
    local_at = f"timezone({tz}, timezone('UTC', a.reached_at))"
    minute_of_day = (
        "coalesce(n.until_time_minutes, 60 * coalesce("
        "case when n.usual_hour then try_cast(p.usual_active_hour_utc as integer) end, "
        "n.default_hour))"
    )
    candidate = f"date_trunc('day', {local_at}) + to_minutes(cast({minute_of_day} as bigint))"
    next_local = (
        f"case when {candidate} > {local_at} then {candidate} else {candidate} + interval 1 day end"
    )
    return f"""
        case
            when n.kind = 'wait' and n.minutes is not null
                then a.reached_at + to_microseconds(cast(n.minutes * 60000000 as bigint))
            when n.kind = 'wait' and (n.until_time_minutes is not null or n.usual_hour)
                then timezone('UTC', timezone({tz}, {next_local}))
            when n.kind = 'wait' and n.until_event is not null
                then a.reached_at + to_microseconds(cast(n.timeout_minutes * 60000000 as bigint))
            when n.kind = 'send'
                then greatest(
                    a.reached_at, a.entered_at + to_minutes(cast(n.wait_minutes as bigint))
                )
            else a.reached_at
        end
    """


# A batch's table: the transition's columns but those the same on every row of a tick.
_BATCH_COLUMNS = {
    **{n: kind for n, kind in transitions.COLUMNS.items() if n not in _PER_TICK},
    "send_key": "VARCHAR",
}


def _new_rows_view(con: duckdb.DuckDBPyConnection, journey: Journey, tables: list[str]) -> None:
    union = " union all by name ".join(f"select * from {t}" for t in tables)
    con.execute(
        f"create or replace temp view new_rows as select {lit(journey.name)} as journey, *, "
        f"null::varchar as run_id, null::timestamp as recorded_at, "
        f"null::varchar as journey_version from ({union})"
    )


# macros/journey_entry_audience.sql's former entry id (dbt.hash: md5 of the text), with a
# replaced person id of the audience row's person (aliases m) in place of the person.
def _former_id_sql(journey: Journey) -> str:
    return f"md5({lit(journey.name + ':')} || m.alias_person_id || ':' || a.entry_event_id)"


def _follow_merges(con: duckdb.DuckDBPyConnection) -> None:
    """`person_moves` (alias_person_id, person_id): each replaced person id that no longer
    exists, with the one person its entries follow (dim_person_aliases.is_primary: where its
    merges took it; a split leaves several holders, and the entries stay with the old id where
    it still exists).
    `history_now`: the history with each row's person as it is now. An entry recorded under a
    merged id belongs to whoever holds its identifiers now: their events end it, their profile
    branches it, its sends go to them (under the new id's send key, which the ledger's
    `decided` carries over)."""
    con.execute(
        """
        create or replace temp table person_moves as
        select alias_person_id, person_id from aliases
        where is_primary and alias_person_id <> person_id
        """
    )
    con.execute(
        """
        create or replace temp view history_now as
        select history.* replace (coalesce(m.person_id, history.person_id) as person_id)
        from history left join person_moves m on m.alias_person_id = history.person_id
        """
    )


def _former_ids(con: duckdb.DuckDBPyConnection, journey: Journey) -> None:
    """`former_ids` (entry_id, former_entry_id): what an event entry was named before entry ids
    stopped naming the person (macros/journey_entry_audience.sql), where an entry still goes by
    that name: an episode begun under it goes on as that entry. The audience names the former id
    with the person it has now; an entry begun under an id the person had before a merge or a
    split was named with that id, so each replaced id of theirs names a former id too. Only the
    names `positions` holds are kept: the audience names every episode's, and most never were."""
    if journey.entry.kind != "event":  # its audience is people: the tick names their entries
        con.execute(
            "create or replace temp table former_ids as "
            "select null::varchar as entry_id, null::varchar as former_entry_id limit 0"
        )
        return
    con.execute(
        f"""
        create or replace temp table former_ids as
        select entry_id, former_entry_id from (
            select entry_id, former_entry_id from audience where former_entry_id is not null
            union all
            select a.entry_id, {_former_id_sql(journey)}
            from audience a join aliases m on m.person_id = a.person_id
            where m.alias_person_id <> m.person_id
                and a.former_entry_id is not null and a.entry_event_id is not null
        ) named (entry_id, former_entry_id)
        semi join positions p on p.entry_id = named.former_entry_id
        """
    )


def _end_merged_duplicates(con: duckdb.DuckDBPyConnection, journey: Journey) -> None:
    """`merged_entries` (entry_id, alias_person_id): entries recorded under a person id since
    merged away, with that id (their sends' feedback carries its keys). Two people each in a
    membership or schedule journey who turn out to be one person would get every later step
    twice: their open entries beyond max_concurrent end here, the earliest begun kept (the one
    furthest along). An event journey's audience does this itself: the merged person's events
    form one episode, and the other entry leaves the audience."""
    j = lit(journey.name)
    con.execute(
        f"""
        create or replace temp table merged_entries as
        select distinct entry_id, person_id as alias_person_id from history
        where journey = {j} and person_id in (select alias_person_id from person_moves)
        """
    )
    if (
        journey.entry.kind == "event"
        or not con.execute("select 1 from merged_entries limit 1").fetchone()
    ):
        return
    con.execute(
        f"""
        create or replace temp table arrived as
        select
            entry_id, person_id, seq + 1 as seq, node as from_node, {lit(EXITED)} as node,
            greatest(getvariable('now'), reached_at) as reached_at, entered_at, arm,
            'exited' as reason, 'merged: the person is in the journey already' as detail,
            null as properties
        from (
            select p.*, row_number() over (
                    partition by p.person_id order by p.entered_at, p.entry_id
                ) as place
            from positions p
            where p.node not in ({_FINAL})
                and p.person_id in (select person_id from positions semi join merged_entries
                                    using (entry_id))
        )
        where place > {journey.reentry.max_concurrent}
        """
    )
    _record_arrivals(con, journey, "arrived")


def _read_positions(con: duckdb.DuckDBPyConnection, journey: Journey) -> None:
    """`positions`: each entry's latest row, with the key of its send when it is at one."""
    j = lit(journey.name)
    sends = ", ".join(lit(n.name) for n in journey.steps) or "null"
    key = send_key_sql(j, "node", "person_id", "entry_id")
    columns = f"""
        {_POSITION.replace(", send_key", "")},
        case when node in ({sends}) then {key} end as send_key
    """
    # (entry_id, seq) is unique when each file landed once: one tick of a journey at a time
    # (transitions.journey_lock), each taking the entry's next seq. Then the latest seq is found
    # without ordering every entry's rows.
    con.execute(
        f"""
        create or replace temp table positions as
        select {columns} from history_now
        semi join (
            select entry_id, max(seq) as seq from history where journey = {j} group by entry_id
        ) latest using (entry_id, seq)
        where journey = {j}
        """
    )
    (repeated,) = con.execute(
        "select count(*) - count(distinct entry_id) from positions"
    ).fetchone() or (0,)
    # _due reads each entry's own row once without grouping when no file landed twice
    con.execute("set variable tick_history_repeats = ?", [bool(repeated)])
    if repeated:
        # A file landed twice (a restore, a re-sync): each entry's latest row, once.
        log.warning(
            "journey %s: %d transitions are in the history more than once; each counts once",
            journey.name,
            repeated,
        )
        con.execute(
            f"""
            create or replace temp table positions as
            select {columns} from history_now where journey = {j}
            qualify row_number() over (
                partition by entry_id order by seq desc, recorded_at desc
            ) = 1
            """
        )


def _start_new_rows(con: duckdb.DuckDBPyConnection, journey: Journey) -> None:
    """`new_rows`: this tick's transitions, a view over one table per batch recorded (appending
    to one table would copy every row once more)."""
    for (name,) in con.execute(
        "select table_name from duckdb_tables() where temporary and starts_with(table_name, ?)",
        [_ROWS_PREFIX],
    ).fetchall():
        con.execute(f"drop table {name}")
    columns = ", ".join(f'"{n}" {kind}' for n, kind in _BATCH_COLUMNS.items())
    con.execute(f"create temp table {_ROWS_PREFIX}0 ({columns})")
    con.execute("set variable tick_folded = 0")  # positions hold the batches up to this one
    _new_rows_view(con, journey, [f"{_ROWS_PREFIX}0"])


def _batches(con: duckdb.DuckDBPyConnection) -> list[str]:
    """This tick's batch tables so far, in the order recorded."""
    names = con.execute(
        "select table_name from duckdb_tables() where temporary and starts_with(table_name, ?)",
        [_ROWS_PREFIX],
    ).fetchall()
    return sorted((name for (name,) in names), key=lambda n: int(n[len(_ROWS_PREFIX) :]))


def _record_arrivals(con: duckdb.DuckDBPyConnection, journey: Journey, arrived: str) -> str:
    """Add `arrived` (a table, or a query: entry columns, from_node, node, reached_at, reason,
    detail, properties, seq) to new_rows with the node's next_at, as a table of its own, whose
    name it returns."""
    clock = [
        lit(n.name)
        for n in journey.nodes
        if isinstance(n, Wait) and (n.until_time or n.until_usual_hour)
    ]
    query = "" if arrived.isidentifier() else arrived
    if query:
        arrived = "arrived_rows"
    columns = f"""
        a.entry_id, a.person_id, a.seq, a.from_node, a.node, a.reached_at,
        {_arrival_next_at()} as next_at, a.entered_at, a.arm, a.reason, a.detail, a.properties,
        case when n.kind = 'send' then {
        send_key_sql(lit(journey.name), "a.node", "a.person_id", "a.entry_id")
    } end as send_key
    """
    # Only arrivals at a clock-time wait need the person's zone and hour: the rest skip the join.
    rows = f"""
        select {columns} from {arrived} a left join nodes n on n.name = a.node
        left join (select null::varchar as timezone, null::boolean as known_zone,
            null::integer as usual_active_hour_utc) p on true
    """
    if clock:
        rows = f"""
            {rows} where a.node not in ({", ".join(clock)})
            union all
            select {columns} from {arrived} a join nodes n on n.name = a.node
            left join (
                select p.person_id, p.timezone, z.name is not null as known_zone,
                    p.usual_active_hour_utc
                from profiles p left join zones z on z.name = p.timezone
            ) p on p.person_id = a.person_id
            where a.node in ({", ".join(clock)})
        """
    if query:  # read by both halves when there are clock waits: computed once
        rows = f"with {arrived} as {'materialized' if clock else ''} ({query}) {rows}"
    tables = _batches(con)
    batch = f"{_ROWS_PREFIX}{len(tables)}"
    con.execute(f"create temp table {batch} as {rows}")
    _new_rows_view(con, journey, [*tables, batch])
    return batch


def _enter(con: duckdb.DuckDBPyConnection, journey: Journey) -> int:
    """New entries at the first node. Event journeys: each audience row is one entry, refused
    (recorded as not entered, with why) when the re-entry policy says no. Membership and schedule
    journeys: a person in the audience enters when the policy allows (no record otherwise)."""
    j = lit(journey.name)
    rule = journey.entry
    if rule.kind == "event":
        # exited_at: the audience's own end of the episode (its first exit event after it)
        candidates = """
            select entry_id, person_id, enters_at as entered_at,
                cast(entry_properties as varchar) as properties, exited_at
            from audience
            where enters_at <= getvariable('now')
        """
        if rule.where is not None:
            candidates += f" and ({rule.where.json_sql('entry_properties', now=NOW_SQL)})"
    else:
        if rule.kind == "schedule":
            hh, mm = (rule.daily_at or "00:00").split(":")
            # the latest occurrence of the daily time at or before now
            occurrence = (
                f"(date_trunc('day', getvariable('now')) + interval {int(hh)} hour "
                f"+ interval {int(mm)} minute)"
            )
            occurrence = (
                f"case when {occurrence} <= getvariable('now') then {occurrence} "
                f"else {occurrence} - interval 1 day end"
            )
        else:
            occurrence = "getvariable('now')"
        candidates = f"""
            select md5({j} || ':' || person_id || ':' || strftime(occurrence, '%Y-%m-%dT%H:%M:%S'))
                    as entry_id,
                person_id, occurrence as entered_at, null::varchar as properties,
                null::timestamp as exited_at
            from (select distinct person_id, {occurrence} as occurrence from audience
                  where person_id is not null)
        """
    appearing = ""
    if rule.kind == "membership":
        _note_left_audience(con, journey)
        # Only a new appearance enters: someone never entered, or who left the audience since.
        appearing = f"""
            where c.person_id not in (
                select person_id from positions
                where node not in ({lit(LEFT_AUDIENCE)}, {lit(NOT_ENTERED)})
            )
        """
    con.execute(
        f"""
        create or replace temp table fresh as
        select c.* from ({candidates}) c anti join positions using (entry_id)
        -- an episode begun under a former id goes on as that entry
        anti join (
            select f.entry_id from former_ids f semi join positions p
                on p.entry_id = f.former_entry_id
        ) begun using (entry_id)
        {appearing}
        """
    )
    first = lit(journey.nodes[0].name)
    arm = (
        f"case when {hash_bucket_sql(f'{j} || chr(58) || person_id')} "
        f"< {round(journey.holdout_percent * 100)} then 'holdout' else 'treatment' end"
    )
    keep_refusals = "true" if rule.kind == "event" else "refused is null"
    entered = 0
    # A person's candidates are judged one at a time, earliest first: each against the entries
    # they had, including those admitted in an earlier pass and how those ended.
    for _ in range(_ENTRY_PASSES):
        (left,) = con.execute("select count(*) from fresh").fetchone() or (0,)
        if not left:
            break
        con.execute(f"create or replace temp table candidates as {_judged_sql(journey)}")
        con.execute(
            f"""
            create or replace temp table arrived as
            select
                entry_id, person_id, 0 as seq, null::varchar as from_node,
                coalesce(case when refused is not null then {lit(NOT_ENTERED)} end, {first})
                    as node,
                entered_at as reached_at, entered_at, {arm} as arm,
                case when refused is null then 'entered' else 'not entered' end as reason,
                refused as detail, properties
            from candidates
            where {keep_refusals}
            """
        )
        _record_arrivals(con, journey, "arrived")
        (n,) = con.execute("select count(*) from arrived where detail is null").fetchone() or (0,)
        entered += int(n)
        con.execute("delete from fresh where entry_id in (select entry_id from candidates)")
        _end_by_events(con, journey, "new")  # the next pass sees when these ended
    return entered


def _judged_sql(journey: Journey) -> str:
    """Each person's earliest `fresh` candidate, with why the re-entry policy refuses it (null:
    it enters). Judged against every entry the person had, whenever it began: an entry open at
    any time of the candidate's own span counts toward max_concurrent."""
    r = journey.reentry
    cooldown = f"{float(r.cooldown_hours) * 3600}" if r.allow == "after_cooldown" else "0"
    return f"""
        with
        turn as (
            select * from fresh
            qualify row_number() over (
                partition by person_id order by entered_at, entry_id
            ) = 1
        ),
        prior as (
            -- each entry the person had, and when it first ended
            select
                entry_id,
                any_value(person_id) as person_id,
                any_value(entered_at) as entered_at,
                min(reached_at) filter (where node in ({_FINAL})) as ended_at
            from (
                select entry_id, person_id, entered_at, node, reached_at from history_now
                where journey = {lit(journey.name)}
                union all
                select entry_id, person_id, entered_at, node, reached_at from new_rows
            ) rows
            where person_id in (select person_id from turn)
            group by entry_id
            having not bool_or(node = {lit(NOT_ENTERED)})
        ),
        judged as (
            select
                t.entry_id,
                count(p.entry_id) as entries,
                count(p.entry_id) filter (
                    where p.entered_at < coalesce(t.exited_at, 'infinity'::timestamp)
                        and (p.ended_at is null or p.ended_at > t.entered_at)
                ) as open_then,
                count(p.entry_id) filter (
                    where abs(epoch(p.entered_at) - epoch(t.entered_at)) < {cooldown}
                ) as in_cooldown
            from turn t
            left join prior p on p.person_id = t.person_id
            group by t.entry_id
        )
        select
            turn.*,
            case
                when {lit(r.allow)} = 'never' and entries > 0
                    then 'entered before (reentry: never)'
                when open_then >= {r.max_concurrent}
                    then 'already in the journey (max_concurrent {r.max_concurrent})'
                when in_cooldown > 0
                    then 'within the cool-down ({r.cooldown_hours:g} h)'
            end as refused
        from turn join judged using (entry_id)
    """


def _current(con: duckdb.DuckDBPyConnection) -> None:
    """`current`: every open entry's latest row, this tick's rows included."""
    _refresh_positions(con)
    con.execute(
        f"create or replace temp view current as "
        f"select {_POSITION} from positions where node not in ({_FINAL})"
    )


def _note_left_audience(con: duckdb.DuckDBPyConnection, journey: Journey) -> None:
    """Ended entries of people no longer in the audience: recorded, so a return is a new
    appearance (a membership journey enters people when they appear)."""
    ended = ", ".join(lit(n) for n in (COMPLETED, EXITED, CONVERTED))
    _refresh_positions(con)  # entries that ended a moment ago, this tick, count as ended
    con.execute(
        f"""
        create or replace temp table arrived as
        select
            p.entry_id, p.person_id, p.seq + 1 as seq, p.node as from_node,
            {lit(LEFT_AUDIENCE)} as node, getvariable('now') as reached_at, p.entered_at, p.arm,
            'left the audience' as reason, null as detail, null as properties
        from positions p
        where p.node in ({ended})
            and p.person_id not in (select person_id from audience where person_id is not null)
        """
    )
    _record_arrivals(con, journey, "arrived")
    _refresh_positions(con)


def _refresh_positions(con: duckdb.DuckDBPyConnection) -> None:
    """`positions` with this tick's rows so far: the batches recorded since the last refresh
    folded in, in place (copying a million positions for a few new rows cost more)."""
    batches = _batches(con)
    (folded,) = con.execute("select getvariable('tick_folded')").fetchone() or (None,)
    fresh = batches[int(folded or 0) + 1 :]
    if not fresh:
        return
    union = " union all ".join(f"select {_POSITION} from {t}" for t in fresh)
    con.execute(
        f"""
        create or replace temp table folding as
        select * from ({union})
        qualify row_number() over (partition by entry_id order by seq desc) = 1
        """
    )
    con.execute("delete from positions where entry_id in (select entry_id from folding)")
    con.execute("insert into positions select * from folding")
    con.execute("set variable tick_folded = ?", [len(batches) - 1])


def _end_by_events(
    con: duckdb.DuckDBPyConnection,
    journey: Journey,
    scope: Literal["open", "new", "completed"] = "open",
) -> None:
    """Entries end on an exit event or a goal since entering (the earliest wins; a goal that is
    also an exit event converts), or when their audience row is gone (an `unless` event that
    landed late). `scope`: the open entries (before new ones enter), the entries just made, or
    the entries that went past their last step (after new ones entered), which still convert on
    a goal in their window. A goal event converts one entry: the latest begun before it, and
    only once. Then the exit criterion on the profile."""
    _current(con)
    longest_goal = max((float(g.within_hours) for g in journey.goals), default=0.0)
    if scope == "new":
        con.execute(
            "create or replace temp view ending as select *, true as open from current "
            "where seq = 0 and entry_id in (select entry_id from new_rows where seq = 0)"
        )
    elif scope == "open":
        con.execute("create or replace temp view ending as select *, true as open from current")
    else:
        if not journey.goals:
            return
        con.execute(
            f"""
            create or replace temp view ending as
            select *, false as open from positions
            where node = {lit(COMPLETED)} and entered_at >= getvariable('now')
                - to_microseconds(cast({longest_goal} * 3600000000 as bigint))
                and entry_id not in (select entry_id from new_rows)
            """
        )
    # Every entry a goal event could be credited to: the latest begun before it wins.
    con.execute(
        """
        create or replace temp view goal_claims as
        select entry_id, person_id, entered_at from ending
        union all
        select entry_id, person_id, entered_at from current
        """
    )
    selects = []
    for event in journey.exit_on:
        selects.append(
            f"""
            select c.entry_id, e.occurred_at, 'exited' as outcome, e.event_name as detail
            from ending c join tick_events e
                on e.person_id = c.person_id and e.event_name = {lit(event)}
                and e.occurred_at >= c.entered_at and e.occurred_at <= getvariable('now')
            where c.open
            """
        )
    for goal in journey.goals:
        within = f"to_microseconds(cast({float(goal.within_hours)} * 3600000000 as bigint))"
        selects.append(
            f"""
            select c.entry_id, e.occurred_at, 'converted' as outcome, e.event_name as detail
            from ending c join tick_events e
                on e.person_id = c.person_id and e.event_name = {lit(goal.event)}
                and e.occurred_at >= c.entered_at and e.occurred_at <= getvariable('now')
                and e.occurred_at <= c.entered_at + {within}
            where not exists (
                select 1 from goal_claims g
                where g.person_id = c.person_id and g.entry_id <> c.entry_id
                    and g.entered_at > c.entered_at and g.entered_at <= e.occurred_at
            )
            and not exists (
                select 1 from (
                    select person_id, node, reached_at from positions
                    union all
                    select person_id, node, reached_at from new_rows
                ) used
                where used.person_id = c.person_id and used.node = {lit(CONVERTED)}
                    and used.reached_at = e.occurred_at
            )
            """
        )
    if journey.entry.kind == "event" and scope != "completed":
        selects.append(
            """
            select c.entry_id, getvariable('now') as occurred_at, 'exited' as outcome,
                'no longer in the audience' as detail
            from ending c anti join audience a using (entry_id)
            anti join former_ids f on f.former_entry_id = c.entry_id
            where c.open
            """
        )
    if selects:
        con.execute(
            f"""
            create or replace temp table arrived as
            select
                c.entry_id, c.person_id, c.seq + 1 as seq, c.node as from_node,
                case when first.outcome = 'converted' then {lit(CONVERTED)}
                    else {lit(EXITED)} end as node,
                greatest(first.occurred_at, c.reached_at) as reached_at, c.entered_at, c.arm,
                first.outcome as reason, first.detail, null as properties
            from ending c
            join (
                select * from ({" union all ".join(selects)})
                qualify row_number() over (
                    partition by entry_id order by occurred_at, outcome = 'exited', detail
                ) = 1
            ) first using (entry_id)
            """
        )
        _record_arrivals(con, journey, "arrived")
    if scope == "completed":
        return
    if journey.exit_when is not None:
        _current(con)
        con.execute(
            f"""
            create or replace temp table arrived as
            select
                c.entry_id, c.person_id, c.seq + 1 as seq, c.node as from_node,
                {lit(EXITED)} as node, greatest(getvariable('now'), c.reached_at) as reached_at,
                c.entered_at, c.arm, 'exited' as reason,
                {lit("exit_when: " + journey.exit_when.text)} as detail, null as properties
            from current c join profiles p using (person_id)
            where {journey.exit_when.sql(table="p", now=NOW_SQL)}
                {"and c.entry_id in (select entry_id from ending)" if scope == "new" else ""}
            """
        )
        _record_arrivals(con, journey, "arrived")


# What a move carries from its frontier row to the arrival.
_CARRIED = "entry_id, person_id, seq, from_node, entered_at, arm"
_CARRY = "f.entry_id, f.person_id, f.seq, f.node, f.entered_at, f.arm"


def _move_sql(journey: Journey) -> str:
    """The next node of every `frontier` entry that can go on now, in one statement."""
    j = lit(journey.name)
    parts = [
        # waits for a time: over
        f"""
        select {_CARRY}, n.next as to_node, f.next_at as to_at, 'waited' as reason,
            null as detail
        from frontier f join nodes n on n.name = f.node
        where n.kind = 'wait' and n.until_event is null and f.next_at <= getvariable('now')
        """,
        # an exit step: the journey ends here
        f"""
        select {_CARRY}, {lit(EXITED)}, f.reached_at, 'exited', 'exit step ' || f.node
        from frontier f join nodes n on n.name = f.node
        where n.kind = 'exit'
        """,
        # a send step the ledger has decided: on from when it was (a wait after a message
        # counts from the message; this run's own sends, stamped after its clock, from the
        # clock), never before the step's own time; out of the journey where the cap held it
        # back and the journey's policy says so (on_cap: exit)
        f"""
        select {_CARRY},
            case when {_capped_out(journey)} then {lit(EXITED)} else n.next end,
            greatest(f.next_at, least(coalesce(d.decided_at, f.next_at), getvariable('now'))),
            -- decided before the entry got here: a loop back to a step sent already
            case when d.decided_at < f.reached_at then 'passed'
                when {_capped_out(journey)} then 'exited' else d.status end,
            case when {_capped_out(journey)} then 'capped: ' else '' end || d.send_key
        from frontier f join nodes n on n.name = f.node
        join decided d on d.send_key = f.send_key
        where n.kind = 'send'
        """,
    ]
    if any(isinstance(n, Wait) and n.until_event for n in journey.nodes):
        of_step_key = send_key_sql(j, "n.of_step", "f.person_id", "f.entry_id")
        alias_key = send_key_sql(j, "n.of_step", "a.alias_person_id", "f.entry_id")
        parts.append(
            f"""
            select {_CARRY},
                case when hit.first_at is not null then n.next else n.on_timeout end,
                case when hit.first_at is not null then greatest(hit.first_at, f.reached_at)
                    else f.next_at end,
                case when hit.first_at is not null then 'event' else 'timed out' end,
                n.until_event || coalesce(' on ' || n.of_step, '')
            from frontier f join nodes n on n.name = f.node
            left join (
                select f.entry_id, min(e.occurred_at) as first_at
                from frontier f join nodes n on n.name = f.node
                join tick_events e on e.person_id = f.person_id and e.event_name = n.until_event
                where n.until_event is not null and n.of_step is null
                    and e.occurred_at > f.reached_at
                    and e.occurred_at <= least(f.next_at, getvariable('now'))
                group by f.entry_id
                union all
                select entry_id, min(occurred_at) from (
                    select f.entry_id, e.occurred_at
                    from frontier f join nodes n on n.name = f.node
                    join tick_feedback e on e.send_key = {of_step_key}
                        and e.feedback_event = n.until_event
                    where n.until_event is not null and n.of_step is not null
                        -- any engagement with this entry's send counts (its outcome may have
                        -- been settled after it was opened), taken as of reaching the wait
                        and e.occurred_at <= least(f.next_at, getvariable('now'))
                    union all
                    -- the send may have gone out under an id the person had before a merge
                    select f.entry_id, e.occurred_at
                    from frontier f join nodes n on n.name = f.node
                    join merged_entries a on a.entry_id = f.entry_id
                    join tick_feedback e on e.send_key = {alias_key}
                        and e.feedback_event = n.until_event
                    where n.until_event is not null and n.of_step is not null
                        and e.occurred_at <= least(f.next_at, getvariable('now'))
                ) engaged
                group by entry_id
            ) hit on hit.entry_id = f.entry_id
            where n.kind = 'wait' and n.until_event is not null
                and (hit.first_at is not null or f.next_at <= getvariable('now'))
            """
        )
    branches = [n for n in journey.nodes if isinstance(n, Branch)]
    if branches:
        whens_target, whens_detail = [], []
        for node in branches:
            for condition, target in node.branches:
                test = f"f.node = {lit(node.name)} and ({condition.sql(table='p', now=NOW_SQL)})"
                whens_target.append(f"when {test} then {lit(target)}")
                whens_detail.append(f"when {test} then {lit(condition.text)}")
            whens_target.append(f"when f.node = {lit(node.name)} then {lit(node.otherwise)}")
            whens_detail.append(f"when f.node = {lit(node.name)} then 'otherwise'")
        parts.append(
            f"""
            select {_CARRY}, case {" ".join(whens_target)} end, f.reached_at, 'branched',
                case {" ".join(whens_detail)} end
            from frontier f join nodes n on n.name = f.node
            left join profiles p on p.person_id = f.person_id
            where n.kind = 'branch'
            """
        )
    if any(isinstance(n, Split) for n in journey.nodes):
        bucket = hash_bucket_sql(f"{j} || ':' || f.node || ':' || f.person_id")
        parts.append(
            f"""
            select {_CARRY}, s.next, f.reached_at, 'split', s.path
            from frontier f join split_paths s
                on s.node = f.node and {bucket} >= s.low and {bucket} < s.high
            """
        )
    return " union all ".join(parts)


def _capped_out(journey: Journey) -> str:
    """SQL over `d` and `f`: the decided send step leaves the journey (the cap held it back, and
    the journey's policy is on_cap: exit). Not a step decided before the entry got here."""
    from activations.ledger import SkipReason  # the ledger package imports this module

    cap = journey.frequency_cap
    if cap is None or cap.on_cap != "exit" or journey.transactional:
        return "false"
    return (
        f"(d.status = 'skipped' and d.reason = {lit(SkipReason.CAPPED)} "
        "and d.decided_at >= f.reached_at)"
    )


def _move(con: duckdb.DuckDBPyConnection, journey: Journey) -> int:
    """Rounds of moves until nothing moves; a round moves every entry at most one node. Each
    round's arrivals are the next round's frontier, read where they were recorded: nothing is
    copied but the arrivals themselves. `waiting_sends`: every round's frontier at a send step,
    which an entry leaves only once the ledger has decided its send. Its first frontier is a
    view of `positions` as the rounds began: folding the rounds' arrivals into them before
    reading it would count each arrival at a send step twice (_due checks that none were)."""
    _refresh_positions(con)
    frontier = f"select {_POSITION} from positions where node not in ({_FINAL})"
    frontiers: list[str] = []
    # A round's moves and arrivals are one statement: the moves carry what the arrivals need
    # from the frontier (joined back to it, the planner read the frontier again).
    arrivals = f"""
        select
            entry_id, person_id, seq + 1 as seq, from_node,
            coalesce(to_node, {lit(COMPLETED)}) as node, to_at as reached_at, entered_at, arm,
            reason, detail, null as properties
        from ({_move_sql(journey)}) moves ({_CARRIED}, to_node, to_at, reason, detail)
    """
    limit = 2 * len(journey.nodes) + 2  # a cycle always has a wait (checked at validation)
    rounds = 0
    moved = 0
    while rounds < limit:
        rounds += 1
        con.execute(f"create or replace temp view frontier as {frontier}")
        frontiers.append(frontier)
        batch = _record_arrivals(con, journey, arrivals)
        (moved,) = con.execute(f"select count(*) from {batch}").fetchone() or (0,)
        if not moved:
            break
        frontier = f"select {_POSITION} from {batch} where node not in ({_FINAL})"
    if moved:  # the last round's arrivals, when the rounds ran out: not moved on yet
        frontiers.append(frontier)
    # An entry stays at a send step while the ledger has not decided its send (a decided one
    # moves on): so each frontier at a send step, less the decided keys, is where it rests.
    waiting = " union all ".join(
        f"select f.* from ({f}) f join nodes n on n.name = f.node where n.kind = 'send'"
        for f in frontiers
    )
    con.execute(
        f"create or replace temp view waiting_sends as "
        f"select * from ({waiting}) anti join decided using (send_key)"
    )
    con.execute("set variable waiting_folded = getvariable('tick_folded')")
    if moved and rounds == limit:
        # Entries still moving: they go on next tick. Say so, a journey should not need this.
        log.warning(
            "journey %s: entries still moving after %d rounds; they go on next tick",
            journey.name,
            limit,
        )
    return rounds


def _due(con: duckdb.DuckDBPyConnection, journey: Journey) -> pa.Table:
    """Entries at a send step that is due and that the ledger has not decided, as a table (one
    row per DueSend field, in no order: engine.classify orders them): delivery turns them into
    messages one by one, the tick does not."""
    j = lit(journey.name)
    ((folded, waiting),) = con.execute(
        "select getvariable('tick_folded'), getvariable('waiting_folded')"
    ).fetchall()
    if folded != waiting:
        raise RuntimeError(
            "journey tick: positions were refreshed after the moves; waiting_sends would "
            "count this tick's arrivals twice (read the due sends before any refresh)"
        )
    ((repeats,),) = con.execute("select getvariable('tick_history_repeats')").fetchall()
    own_rows = f"""
        select entry_id, properties from history
        where journey = {j} and seq = 0 and properties is not null
        union all
        select entry_id, properties from new_rows
        where seq = 0 and properties is not null
    """
    if repeats:  # a file landed twice: its entry rows are there twice
        own_rows = f"""
            select entry_id, any_value(properties) as properties from ({own_rows})
            semi join undecided using (entry_id)
            group by entry_id
        """
    rows = con.sql(
        f"""
        with undecided as (
            select entry_id, person_id, node, send_key, next_at, entered_at, arm
            from waiting_sends where next_at <= getvariable('now')
        ),
        entry_rows as ({own_rows})
        select u.entry_id, u.person_id, u.node as step, u.send_key, u.next_at as due_at,
            u.entered_at, u.arm, e.properties
        from undecided u left join entry_rows e using (entry_id)
        """
    ).to_arrow_table()
    return rows
