"""A read-only copy of the warehouse for readers: BI tools, notebooks, `duckdb -readonly`.

DuckDB lets one process write a file and no other process open it meanwhile, not even to read,
so a reader pointed at the working file fails while any run holds it. After each run the
pipeline copies the warehouse into a new file beside the published one and renames it over it.
Nothing ever writes to the published file itself, so readers never wait: a connection opened
before a swap keeps the copy it opened (the old file lives on until it closes); a process whose
connections are all closed opens the new one next (DuckDB shares one open database among a
process's connections to a path, so a process keeps the old copy while any stays open).

The copy: the working file is attached read-only, which keeps writers out for the moment; a file
with no write-ahead log pending is complete on its own and is copied byte for byte (fast); one
with a WAL is copied through DuckDB (`COPY FROM DATABASE`, one consistent read, slower: it
rewrites every table).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb

from switchyard.landing import fsync_dir

STAGING_PREFIX = "_publishing_"


@dataclass(frozen=True)
class Published:
    path: Path
    seconds: float
    bytes: int
    method: str  # "file copy" or "database copy"


def published_path(warehouse: Path) -> Path:
    """Beside the warehouse, in `published/`, under the same file name."""
    return warehouse.parent / "published" / warehouse.name


def publish(warehouse: Path) -> Published:
    """Copy `warehouse` into its published place, atomically. Waits for the warehouse to be free
    of writers only as long as DuckDB's lock does: it fails with DuckDB's lock error if a run in
    another process holds it (the pipeline publishes in the warehouse pool, after the metrics)."""
    started = time.monotonic()
    target = published_path(warehouse)
    target.parent.mkdir(parents=True, exist_ok=True)
    with _publishing(target.parent):
        fresh = target.parent / f"{STAGING_PREFIX}{uuid.uuid4().hex[:8]}.duckdb"
        try:
            with duckdb.connect() as con:
                # attached read-only: no writer can open it until the copy is done
                con.execute(f"attach '{_quoted(warehouse)}' as src (read_only)")
                if Path(f"{warehouse}.wal").exists():
                    method = "database copy"
                    con.execute(f"attach '{_quoted(fresh)}' as dst")
                    con.execute("copy from database src to dst")
                    con.execute("detach dst")
                else:
                    method = "file copy"
                    shutil.copyfile(warehouse, fresh)
            with fresh.open("rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(fresh, target)
            fsync_dir(target.parent)
        finally:
            _remove_staging(fresh)
    return Published(target, time.monotonic() - started, target.stat().st_size, method)


@contextlib.contextmanager
def _publishing(folder: Path) -> Iterator[None]:
    """One publish at a time per folder (two overlapping ones could put an older copy back);
    what a killed one left behind is removed first."""
    with (folder / ".publish.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for leftover in folder.glob(f"{STAGING_PREFIX}*"):
            _remove_staging(leftover)
        yield


def _remove_staging(path: Path) -> None:
    for leftover in (path, path.with_name(path.name + ".wal")):
        leftover.unlink(missing_ok=True)


def _quoted(path: Path) -> str:
    return str(path).replace("'", "''")
