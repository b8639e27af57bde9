"""What changed since the destination last acknowledged: the model's rows against the landed
results (activations/syncs/results.py), in one columnar pass on an in-memory DuckDB.

A row is `added` when the destination holds nothing live for its key, `changed` when its hash
(md5 of the attributes it would send) differs from the last one acknowledged, `removed` when
its key was acknowledged live and is no longer in the model. A key whose last tries were all
refused `max_attempts` times, with the same row, is held: it waits for the row to change.
Keys that appear more than once in the model are not sent (which row would win is undefined)
and not removed either (the destination keeps what it last acknowledged): each is reported as
rejected with the count, which does not count as a try of the row.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
from sqlglot import exp

from activations.syncs.declaration import Sync
from activations.syncs.results import results_view


@dataclass(frozen=True)
class Diff:
    # key, change, row_hash, payload (JSON object, key excluded), attempt; an event sync's
    # user_key, event_name, event_time
    changes: pa.Table
    duplicates: pa.Table  # key, rows: keys the model holds more than once
    unchanged: int
    held: int  # given up on earlier and unchanged since
    null_keys: int  # model rows without a key (or an event's id): never sent
    live: int  # keys the destination holds live, as last acknowledged

    def count(self, change: str) -> int:
        return sum(1 for c in self.changes.column("change").to_pylist() if c == change)


def _ident(name: str) -> str:
    return exp.to_identifier(name, quoted=True).sql(dialect="duckdb")


def _payload_sql(sync: Sync) -> str:
    """The row's attributes as a JSON object, in declared order (so its text, and hash, are
    stable): what /users/track receives beside the external_id."""
    if sync.membership is not None:
        return f"to_json(struct_pack({_ident(sync.membership)} := true))"
    pairs = sync.event.properties if sync.event is not None else sync.attributes
    fields = ", ".join(f"{_ident(attr)} := {_ident(column)}" for attr, column in pairs)
    packed = f"struct_pack({fields})" if fields else "map()"
    if sync.event is not None and sync.event.purchase:
        bought = ", ".join(f"{_ident(f)} := {_ident(c)}" for f, c in sync.event.purchase)
        return f"to_json(struct_pack(properties := {packed}, purchase := struct_pack({bought})))"
    return f"to_json({packed})"


def _event_sql(sync: Sync) -> str:
    """An event sync's user, name and time (ISO 8601, UTC) per row; nulls for the others."""
    event = sync.event
    if event is None:
        return "null as user_key, null as event_name, null as event_time"
    name = (
        f"cast({_ident(event.name_column)} as varchar)"
        if event.name_column
        else exp.Literal.string(event.name or "").sql(dialect="duckdb")
    )
    time = f"strftime(cast({_ident(event.time)} as timestamp), '%Y-%m-%dT%H:%M:%S.%fZ')"
    user = f"cast({_ident(sync.key)} as varchar)"
    return f"{user} as user_key, {name} as event_name, {time} as event_time"


def compute_diff(
    con: duckdb.DuckDBPyConnection, sync: Sync, model: pa.Table, landing_dir: Path
) -> Diff:
    """`model`: the key and the declared columns, as read from the warehouse."""
    con.register("model_in", model)
    key, user = _ident(sync.row_key), _ident(sync.key)
    con.execute(
        f"""
        create or replace temp table model_rows as
        select cast({key} as varchar) as key, cast({_payload_sql(sync)} as varchar) as payload,
            count(*) over by_key as copies, row_number() over by_key as copy_no,
            {_event_sql(sync)}
        from model_in where {key} is not null and {user} is not null
        window by_key as (partition by {key})
        """
    )
    ((null_keys,),) = con.execute(
        f"select count(*) from model_in where {key} is null or {user} is null"
    ).fetchall()
    con.unregister("model_in")
    results_view(con, landing_dir, sync.name)
    con.execute(
        """
        create or replace temp table acked as
        select key, change <> 'removed' as live, row_hash, recorded_at
        from results where outcome in ('synced', 'unknown')
        qualify row_number() over (partition by key order by recorded_at desc) = 1
        """
    )
    # Refusals of each row (by hash) since the last acknowledgement, and whether the last try was
    # the final one. A model duplicate (no op: nothing was sent) is not a try.
    con.execute(
        """
        create or replace temp table since_ack as
        select r.key, r.row_hash, r.outcome, r.recorded_at
        from results r left join acked a using (key)
        where r.outcome not in ('synced', 'unknown') and r.op is not null
            and (a.recorded_at is null or r.recorded_at > a.recorded_at)
        """
    )
    con.execute(
        """
        create or replace temp table tries as
        select key, row_hash, count(*) as rejections
        from since_ack where outcome in ('rejected', 'gave_up') group by key, row_hash
        """
    )
    con.execute(
        """
        create or replace temp table last_try as
        select key, arg_max(outcome, recorded_at) as last_outcome,
            arg_max(row_hash, recorded_at) as last_hash
        from since_ack group by key
        """
    )
    # An event is sent once: a row changed or gone since is not the destination's business.
    once = "true" if sync.event is not None else "false"
    con.execute(
        f"""
        create or replace temp table compared as
        select coalesce(m.key, a.key) as key,
            case
                when m.copies > 1 then null
                when m.key is not null and not coalesce(a.live, false) then 'added'
                when {once} then null
                when m.key is not null and a.row_hash is distinct from md5(m.payload)
                    then 'changed'
                when m.key is null and a.live then 'removed'
            end as change,
            md5(m.payload) as row_hash, m.payload, m.key is not null and m.copies = 1 as in_model,
            m.user_key, m.event_name, m.event_time,
            coalesce(t.rejections, 0) as rejections,
            l.last_outcome = 'gave_up' and l.last_hash is not distinct from md5(m.payload) as held
        from (select * from model_rows where copy_no = 1) m
        full join acked a using (key)
        left join last_try l on l.key = coalesce(m.key, a.key)
        left join tries t on t.key = coalesce(m.key, a.key)
            and t.row_hash is not distinct from md5(m.payload)
        """
    )
    changes = con.sql(
        """
        select key, change, row_hash, payload, rejections + 1 as attempt, user_key, event_name,
            event_time
        from compared where change is not null and not coalesce(held, false)
        """
    ).to_arrow_table()
    ((unchanged, held, live),) = con.execute(
        """
        select count(*) filter (where change is null and in_model),
            count(*) filter (where change is not null and coalesce(held, false)),
            (select count(*) from acked where live)
        from compared
        """
    ).fetchall()
    duplicates = con.sql(
        "select key, any_value(copies) as rows from model_rows where copies > 1 group by key"
    ).to_arrow_table()
    return Diff(changes, duplicates, int(unchanged), int(held), int(null_keys), int(live))
