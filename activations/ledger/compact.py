"""Ledger compaction: finished run files into Parquet (with their sends, for caps), and each
key's state into one keys file.

Safe beside running runs and readers (layout in activations/ledger/store.py):
- a run file is taken only when its writer has closed it (it holds a lock on it while open, and
  a writer that died holds none);
- each file appears whole under its final name (written aside, fsynced, renamed), lines first,
  then sends, then keys: a compaction stopped between them is finished by the next one;
- the lines it leaves out of a run file (cut short by a kill) are recorded in a rejects file
  before the run file is deleted, so that dbt still lists them (stg_ledger__rejects);
- a run file is deleted only by a compaction after the one that took it, GRACE_SECONDS later;
- one compaction at a time (a lock on the folder): two at once (the CLI beside Dagster's
  upkeep job) would both take the same run files and count their lines twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import duckdb

from activations.ledger import store
from activations.tick import lit
from switchyard import landing

GRACE_SECONDS = 600  # a run file taken by a compaction stays this long before it is deleted


@dataclass(frozen=True)
class Compaction:
    generation: int  # 0: nothing to do
    run_files: int  # run files taken
    lines: int  # their lines
    keys: int  # keys in the new keys file
    deleted: int  # run files taken by an earlier compaction, now deleted


def _write(
    con: duckdb.DuckDBPyConnection, query: str, final: Path, order_by: str, options: str = ""
) -> int:
    landing.write_parquet(
        con,
        f"select * from ({query}) order by {order_by}",
        final,
        "compression zstd" + (f", {options}" if options else ""),
    )
    # from the file's footer: the query is not run twice
    (count,) = con.execute(f"select count(*) from read_parquet({lit(str(final))})").fetchall()[0]
    return int(count)


def _write_sends(con: duckdb.DuckDBPyConnection, landing_dir: Path, folder: Path) -> None:
    """The sends file of each lines file without one: this compaction's, and those written
    before sends files were."""
    sends = store.generations(landing_dir, "sends")
    for gen, path in store.generations(landing_dir, "lines").items():
        if gen not in sends:
            lines = f"select * from read_parquet({lit(str(path))})"
            _write(
                con,
                store.SENDS_FILE_SQL.format(lines=lines),
                folder / store.compacted_name("sends", gen),
                "person_id, line_at",
            )


def _record_rejects(
    con: duckdb.DuckDBPyConnection, landing_dir: Path, folder: Path, doomed: list[Path]
) -> None:
    """The lines without a send key of these run files where cut short (store.left_out_lines_sql:
    cut lines, which the lines files leave out, and whole keyless ones), in a rejects file of
    their own, unless one holds them already (a compaction stopped before deleting them)."""
    cut = store.cut_files(doomed)
    if cut:  # the rejects files are read only when there is something to record
        recorded = store.recorded_rejects(con, landing_dir)
        cut = [p for p in cut if p.name not in recorded]
    if not cut:
        return
    _write(
        con,
        f"select *, timezone('UTC', now()) as compacted_at from ({store.left_out_lines_sql(cut)})",
        folder / f"rejects-{uuid.uuid4().hex}.parquet",
        "source_file",
    )


def _with_seen_at(view: store.Layout, keys: str) -> str:
    """`keys`, with seen_at from every lines file where the keys file before it lacks the column
    (written before it was): once, so that the older keys are bounded too."""
    if view.keys_file is None or "seen_at" in view.keys_columns:
        return keys
    seen = store.SEEN_AT_SQL.format("line_at")
    return f"""
        select k.* replace (coalesce(k.seen_at, s.seen_at) as seen_at)
        from ({keys}) k
        left join (
            select send_key, {seen} as seen_at
            from read_parquet({store.paths_sql(view.lines_files)})
            group by send_key
        ) s using (send_key)
    """


def compact(landing_dir: Path) -> Compaction:
    with compaction_lock(landing_dir) as folder:
        return _compact(landing_dir, folder)


@contextlib.contextmanager
def compaction_lock(landing_dir: Path) -> Iterator[Path]:
    """Held while the compacted folder changes: a second compaction waits, then finds less to
    do; a forget (switchyard/privacy) rewrites run and compacted files under it, so no
    compaction folds a run file's old lines in meanwhile."""
    folder = store.compacted_dir(landing_dir)
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / ".lock").open("ab") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield folder


def _compact(landing_dir: Path, folder: Path) -> Compaction:
    with store.bounded_connection(landing_dir, compacting=True) as con:
        return _compact_on(con, landing_dir, folder)


def _compact_on(con: duckdb.DuckDBPyConnection, landing_dir: Path, folder: Path) -> Compaction:
    con.execute("set preserve_insertion_order = false")
    before = store.layout(con, landing_dir)
    # Run files a finished compaction took: readers listing now no longer read them.
    # ... and only once that compaction is GRACE_SECONDS old: a reader that listed the run
    # files just before it took them (a compaction waiting on the lock runs right after)
    # is done reading them by then.
    settled = time.time() - GRACE_SECONDS
    covered = [
        p
        for g, p in store.generations(landing_dir, "lines").items()
        if g <= before.keys_gen and p.stat().st_mtime < settled
    ]
    # The run files each took, from its footer (a file of only unreadable lines gives no line
    # to name it), and from its lines (a lines file from before the footer named them).
    done = store.layout_taken(con, covered)
    if covered:
        rows = con.execute(
            f"select distinct source_file from read_parquet({store.paths_sql(covered)})"
        ).fetchall()
        done |= {name for (name,) in rows}
    doomed = [store.run_files_dir(landing_dir) / name for name in sorted(done)]
    doomed = [p for p in doomed if p.exists()]
    _record_rejects(con, landing_dir, folder, doomed)
    for path in doomed:
        path.unlink()
    deleted = len(doomed)
    newest = before.keys_file
    if newest is not None and newest.stat().st_mtime < settled:
        for gen, path in store.generations(landing_dir, "keys").items():
            if gen < before.keys_gen:  # superseded long enough: no reader still on it
                path.unlink(missing_ok=True)

    taken = [p for p in before.run_files if landing.closed(p)]
    gen = max([before.keys_gen, *store.generations(landing_dir, "lines")], default=0) + 1
    lines = 0
    if taken:
        names = json.dumps([p.name for p in taken])
        lines = _write(
            con,
            store.run_lines_sql(taken),
            folder / store.compacted_name("lines", gen),
            "line_at, send_key",
            f"kv_metadata {{{store.SOURCE_FILES}: {lit(names)}}}",
        )
    _write_sends(con, landing_dir, folder)
    view = store.layout(con, landing_dir)
    if not view.newer_lines_files:
        return Compaction(0, 0, 0, 0, deleted)
    # Only the lines files the new keys file covers: a run file landed since stays a run file.
    view = replace(view, run_files=[])
    open_ = ", ".join(lit(s) for s in store.OPEN)
    keys = _write(
        con,
        _with_seen_at(view, store.keys_sql(view)),
        folder / store.compacted_name("keys", gen),
        # the open keys together: a run reads them whole, and the closed ones' row groups
        # then hold none of them (their other columns are never read); then each journey's
        # together, oldest first: a tick reads its own journey's decided keys seen since its
        # open entries began (reader.create_decided), and skips the other journeys' row groups
        # and the older ones by their min and max
        f"last_status not in ({open_}), journey, seen_at, send_key",
    )
    return Compaction(gen, len(taken), lines, keys, deleted)
