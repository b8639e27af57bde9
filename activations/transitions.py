"""Journey state: an append-only log of transitions, landed beside the ledger as Parquet files.

One row per step an entry takes: it reached `node` at `reached_at` (the journey's own clock: a
wait of a day ends a day after it began, whenever the run that notices it happens), coming from
`from_node` because of `reason` (`detail` says which branch, path, event or send key). `next_at`
is when the node is due. A tick writes its rows as one new file, atomically, before anything is
sent; the engine never rewrites a file. dbt stages the folder into `fct_journey_transitions`.
"""

from __future__ import annotations

import fcntl
import uuid
from pathlib import Path
from typing import IO

import duckdb
from sqlglot import exp

from switchyard import landing

FOLDER = ("journeys", "transitions")
# name -> DuckDB type: the columns of every transitions file, in order.
COLUMNS: dict[str, str] = {
    "journey": "VARCHAR",
    "entry_id": "VARCHAR",
    "person_id": "VARCHAR",
    "seq": "INTEGER",  # 0 for the entry, then one more per step taken
    "from_node": "VARCHAR",
    "node": "VARCHAR",
    "reached_at": "TIMESTAMP",
    "next_at": "TIMESTAMP",
    "entered_at": "TIMESTAMP",
    "arm": "VARCHAR",  # treatment / holdout, fixed at entry
    "reason": "VARCHAR",
    "detail": "VARCHAR",
    "properties": "VARCHAR",  # the entry event's properties (JSON), on the entry row only
    "run_id": "VARCHAR",
    "recorded_at": "TIMESTAMP",
    # Journey.version at the tick (files from before it was recorded read null)
    "journey_version": "VARCHAR",
}
# Keeps the glob readable before the first tick. Not "_"-prefixed: Spark (Hadoop) skips such
# files as hidden and could not read the folder's schema from it.
PLACEHOLDER = "schema-placeholder.parquet"


def folder(landing_dir: Path) -> Path:
    return landing_dir.joinpath(*FOLDER)


# The placeholders this process has found complete, by their stat then: a tick calls
# ensure_folder twice, and a file replaced since is checked again.
_checked: dict[Path, tuple[int, int]] = {}


def ensure_folder(landing_dir: Path) -> Path:
    where = folder(landing_dir)
    placeholder = where / PLACEHOLDER
    if placeholder.exists() and _checked.get(placeholder) == _stat(placeholder):
        return where
    where.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    try:
        # A placeholder an earlier version wrote lacks the columns added since: rewritten, so
        # the folder's union always has every column, even before a tick writes one.
        if not (placeholder.exists() and set(COLUMNS) <= _columns(con, placeholder)):
            typed = ", ".join(f'cast(null as {kind}) as "{n}"' for n, kind in COLUMNS.items())
            landing.write_parquet(con, f"select {typed} limit 0", placeholder)
    finally:
        con.close()
    _checked[placeholder] = _stat(placeholder)
    return where


def _stat(path: Path) -> tuple[int, int]:
    status = path.stat()
    return status.st_mtime_ns, status.st_ino


def _columns(con: duckdb.DuckDBPyConnection, path: Path) -> set[str]:
    rows = con.execute(f"select name from parquet_schema({_path_sql(str(path))})").fetchall()
    return {name for (name,) in rows}


# Held by every run whose sends a cap counts (activations/run.py); no journey's name starts
# with "_".
COUNTED_SENDS_LOCK = "_counted_sends"


def journey_lock(landing_dir: Path, journey: str) -> IO[bytes]:
    """Held while a run of `journey` decides and delivers: a second run of the same journey (an
    overlapping schedule, the CLI beside Dagster) waits for it, then sees what it decided, so
    nothing is decided twice. Released by closing the file (or by the process ending)."""
    locks = landing_dir / "journeys" / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    handle = (locks / f"{journey}.lock").open("ab")
    fcntl.flock(handle, fcntl.LOCK_EX)
    return handle


def glob(landing_dir: Path) -> str:
    return str(folder(landing_dir) / "*.parquet")


def create_history_view(
    con: duckdb.DuckDBPyConnection, landing_dir: Path, name: str = "history"
) -> None:
    """`name` (history) on `con`: every transition landed so far (what a tick reads)."""
    ensure_folder(landing_dir)
    con.execute(
        f"create or replace temp view {name} as select * from read_parquet("
        f"{_path_sql(glob(landing_dir))}, union_by_name = true)"
    )


def append(con: duckdb.DuckDBPyConnection, relation: str, landing_dir: Path, prefix: str) -> Path:
    """Write `relation` (a table or view on `con` with COLUMNS) as one new file."""
    where = ensure_folder(landing_dir)
    columns = ", ".join(f'cast("{n}" as {kind}) as "{n}"' for n, kind in COLUMNS.items())
    target = where / f"{prefix}-{uuid.uuid4().hex}.parquet"
    landing.write_parquet(con, f"select {columns} from {relation}", target)
    return target


def _path_sql(path: str) -> str:
    return exp.Literal.string(path).sql(dialect="duckdb")
