"""Append-only landing files: the one place every producer writes without the warehouse lock.

Each source table is a folder of JSON-lines files. dbt reads the folder through a glob; writers only
ever add new files or append whole lines, so a reader never sees a row change.
"""

from __future__ import annotations

import fcntl
import json
import os
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import duckdb
from sqlglot import exp

# source folder -> table folders; dbt's sources name the same paths.
LAYOUT: dict[str, tuple[str, ...]] = {
    "segment": ("events", "rejects"),
    "shop": ("orders",),
    "preferences": ("consents", "suppressions"),
    "ledger": ("deliveries",),
    "feedback": ("events",),
    "inbox": ("messages",),
    "privacy": ("audit",),  # what forgets and retention did, without personal data
}

# An empty file keeps each glob non-empty, so dbt can read a folder nothing has landed in yet.
PLACEHOLDER = "_empty.jsonl"


def table_dir(landing: Path, source: str, table: str) -> Path:
    if table not in LAYOUT.get(source, ()):
        raise ValueError(f"unknown landing table {source}.{table}; known: {sorted(LAYOUT)}")
    return landing / source / table


def ensure_layout(landing: Path) -> None:
    for source, tables in LAYOUT.items():
        for table in tables:
            folder = landing / source / table
            folder.mkdir(parents=True, exist_ok=True)
            (folder / PLACEHOLDER).touch()
    # The journey engine's transitions and previews are Parquet, with typed empty files.
    from activations import preview, transitions
    from activations.ledger import store as ledger_store
    from activations.syncs import results as sync_results

    transitions.ensure_folder(landing)
    preview.preview_folder(landing)
    ledger_store.ensure_folder(landing)
    sync_results.ensure_folder(landing)


def write_batch(
    landing: Path, source: str, table: str, rows: Iterable[Mapping[str, Any]], prefix: str = "batch"
) -> Path:
    """Write rows as a new file, atomically: readers see all of it or none of it."""
    folder = table_dir(landing, source, table)
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"{prefix}-{uuid.uuid4().hex}.jsonl"
    tmp = folder / f".{final.name}.tmp"
    with tmp.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, default=str, separators=(",", ":")) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    tmp.rename(final)
    fsync_dir(folder)  # the rename itself survives a crash (a Kafka offset is committed next)
    return final


def replace_file(
    path: Path, data: bytes, mode: int = 0o666, exclusive: bool = False, suffix: str = ".tmp"
) -> None:
    """`data` as `path`, atomically and durably: written aside (`.<name>.<random><suffix>`,
    created with `mode` less the umask), fsynced, renamed into place, the folder fsynced.
    `exclusive`: only if `path` does not exist yet (FileExistsError otherwise): the first
    writer wins."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}{suffix}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if exclusive:
            os.link(tmp, path)
        else:
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_parquet(
    con: duckdb.DuckDBPyConnection, query: str, target: Path, options: str = ""
) -> None:
    """`query` as one Parquet file, atomically: written aside, fsynced, renamed into place."""
    tmp = target.with_name(f".{target.name}.tmp")
    path = exp.Literal.string(str(tmp)).sql(dialect="duckdb")
    con.execute(f"copy ({query}) to {path} (format parquet{', ' + options if options else ''})")
    with tmp.open("rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, target)
    folder = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(folder)  # the rename itself
    finally:
        os.close(folder)


def closed(path: Path) -> bool:
    """True when no writer holds the file (AppendLog locks its file while it appends)."""
    with path.open("rb") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(handle, fcntl.LOCK_UN)
        return True


class AppendLog:
    """One file appended line by line, for records that must survive a crash: each line fsynced,
    or (`sync=False`) a group of lines fsynced together by `sync()`."""

    def __init__(self, landing: Path, source: str, table: str, prefix: str) -> None:
        folder = table_dir(landing, source, table)
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{prefix}-{uuid.uuid4().hex}.jsonl"
        self._fh = self.path.open("a", encoding="utf-8")
        # Held while the file is open (and dropped with the process): the ledger's compaction
        # takes only files no writer holds.
        fcntl.flock(self._fh, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def append(self, row: Mapping[str, Any], sync: bool = True) -> None:
        self._fh.write(json.dumps(row, default=str, separators=(",", ":")) + "\n")
        if sync:
            self.sync()

    def sync(self) -> None:
        """Every line appended so far is on disk when this returns."""
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> AppendLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
