"""Every row a sync tried, with its outcome, landed as Parquet beside the ledger.

A run writes what it sent (and what it chose not to send) as new files, never rewriting one; dbt
stages the folder into `dim_sync_state` (what each destination holds, as far as it acknowledged)
and `fct_sync_rows`. The next run diffs against the same files, so it never depends on dbt
having run in between.

outcome:
  synced    the destination took it (a removal: `op` says how it was removed)
  rejected  the destination refused this row, with its reason; tried again next run
  gave_up   refused `max_attempts` times: kept with the reason, not sent again until it changes
  failed    the request never got an answer the run could use (5xx, network) after its
            retries: nothing is known to have changed, and the next run sends it again
  unknown   an event to a platform that does not de-duplicate events (Braze) got no answer: it
            may have been recorded, so it is not sent again (at most once, never twice)
  attempted landed before such events are sent; a run that stops before landing their answers
            leaves only this row, which reads as `unknown` (RESOLVED_SQL), so no later run sends
            the event again
"""

from __future__ import annotations

import uuid
from pathlib import Path

import duckdb
from sqlglot import exp

from switchyard import landing

FOLDER = ("syncs", "results")
COLUMNS: dict[str, str] = {
    "sync": "VARCHAR",
    "destination": "VARCHAR",
    "key": "VARCHAR",  # the model's key (Braze: the external_id)
    "change": "VARCHAR",  # added | changed | removed
    # upsert | unset | delete | join | leave (audiences) | keep (removed, nothing sent)
    "op": "VARCHAR",
    "row_hash": "VARCHAR",  # md5 of the row's attributes as the model had them; null if removed
    "payload": "VARCHAR",  # the object sent (JSON); null when nothing was
    "outcome": "VARCHAR",  # synced | rejected | gave_up | failed | unknown | attempted
    "reason": "VARCHAR",
    "attempt": "INTEGER",  # 1 for a first try; refusals of this row version since its last ack + 1
    "run_id": "VARCHAR",
    "recorded_at": "TIMESTAMP",
}
OUTCOMES = ("synced", "rejected", "gave_up", "failed", "unknown", "attempted")
UNANSWERED = "sent, and the run stopped before its answer was landed: not sent again"
# `landed` as the outcomes the runs reached: an `attempted` row is dropped when its run landed an
# answer for the key, and is read as `unknown` when it did not.
RESOLVED_SQL = f"""
    select * from landed where outcome <> 'attempted'
    union all by name
    select * replace ('unknown' as outcome, '{UNANSWERED}' as reason)
    from landed as a
    where outcome = 'attempted' and not exists (
        select 1 from landed as o
        where o.outcome <> 'attempted' and o.run_id = a.run_id and o.key = a.key
    )
"""
PLACEHOLDER = "schema-placeholder.parquet"  # keeps the glob readable before the first run


def folder(landing_dir: Path) -> Path:
    return landing_dir.joinpath(*FOLDER)


def glob(landing_dir: Path) -> str:
    return str(folder(landing_dir) / "*.parquet")


def ensure_folder(landing_dir: Path) -> Path:
    where = folder(landing_dir)
    placeholder = where / PLACEHOLDER
    if placeholder.exists():
        return where
    where.mkdir(parents=True, exist_ok=True)
    with duckdb.connect() as con:
        typed = ", ".join(f'cast(null as {kind}) as "{n}"' for n, kind in COLUMNS.items())
        landing.write_parquet(con, f"select {typed} limit 0", placeholder)
    return where


def append(con: duckdb.DuckDBPyConnection, relation: str, landing_dir: Path, run_id: str) -> Path:
    """`relation` (a table on `con` with COLUMNS) as one new file, atomically."""
    where = ensure_folder(landing_dir)
    columns = ", ".join(f'cast("{n}" as {kind}) as "{n}"' for n, kind in COLUMNS.items())
    target = where / f"run-{run_id}-{uuid.uuid4().hex[:8]}.parquet"
    landing.write_parquet(con, f"select {columns} from {relation}", target)
    return target


def results_view(con: duckdb.DuckDBPyConnection, landing_dir: Path, sync: str) -> None:
    """`results` on `con`: every row landed for `sync` so far."""
    ensure_folder(landing_dir)
    path = exp.Literal.string(glob(landing_dir)).sql(dialect="duckdb")
    name = exp.Literal.string(sync).sql(dialect="duckdb")
    con.execute(
        f"create or replace temp view results as with landed as (select * from "
        f"read_parquet({path}, union_by_name = true) where sync = {name}) {RESOLVED_SQL}"
    )
