"""A read-only copy of the warehouse for readers: BI tools, notebooks, `duckdb -readonly`.

DuckDB lets one process write a file and no other process open it meanwhile, not even to read,
so a reader pointed at the working file fails while any run holds it. After each run the
pipeline copies the warehouse (one consistent read: `COPY FROM DATABASE`) into a new file beside
the published one and renames it over it. A reader opens the published file read-only; one that
has it open keeps the copy it opened (the old file lives on until it closes), the next one gets
the new copy. Nothing ever writes to the published file itself, so readers never wait.

Views keep their definitions: those over the landing files (the consent and suppression views)
read the files as they are when queried.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import duckdb

from switchyard.landing import fsync_dir


@dataclass(frozen=True)
class Published:
    path: Path
    seconds: float
    bytes: int


def published_path(warehouse: Path) -> Path:
    """Beside the warehouse, in `published/`, under the same file name: the same catalog name,
    so dbt's fully qualified view definitions resolve in the copy too."""
    return warehouse.parent / "published" / warehouse.name


def publish(warehouse: Path) -> Published:
    """Copy `warehouse` into its published place, atomically. Needs the warehouse free of
    writers (the pipeline runs it in the warehouse pool, after the metrics)."""
    started = time.monotonic()
    target = published_path(warehouse)
    target.parent.mkdir(parents=True, exist_ok=True)
    fresh = target.parent / f"_publishing_{uuid.uuid4().hex[:8]}.duckdb"
    catalog = warehouse.stem
    try:
        with duckdb.connect(str(fresh)) as con:
            con.execute(f"attach '{_quoted(warehouse)}' as \"{catalog}\" (read_only)")
            con.execute(f'copy from database "{catalog}" to "{fresh.stem}"')
            con.execute(f'detach "{catalog}"')
            con.execute("checkpoint")
        with fresh.open("rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(fresh, target)
        fsync_dir(target.parent)
    finally:
        for leftover in (fresh, fresh.with_name(fresh.name + ".wal")):
            leftover.unlink(missing_ok=True)
    return Published(target, time.monotonic() - started, target.stat().st_size)


def _quoted(path: Path) -> str:
    return str(path).replace("'", "''")
