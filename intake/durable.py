"""Group commit into landing files: many requests' rows written, fsynced once, then every request
in the group acknowledged; the open file closed (renamed into the table's glob) at least every
`rotate_seconds`, so an acknowledged row is readable by the next dbt run within that time.

The open file is `.<name>.jsonl.open`: outside dbt's `*.jsonl` glob until it is closed. A crash
leaves it behind with every acknowledged row in it (each was fsynced before its answer) and
perhaps part of a row after them; `recover` closes such files, cut at their last whole line.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from switchyard.landing import fsync_dir

OPEN_SUFFIX = ".open"
SWEEP_SECONDS = 5.0  # how often a running collector closes files a crashed one left open

log = logging.getLogger(__name__)


def recover(folder: Path) -> list[Path]:
    """Close the files a crashed writer left open: whole lines only, renamed into place. A file
    a live writer holds (its lock) is left alone."""
    closed = []
    for stale in sorted(folder.glob(f".*.jsonl{OPEN_SUFFIX}")):
        try:
            fh = stale.open("r+b")
        except FileNotFoundError:
            continue  # its writer closed it a moment ago
        with fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # another collector is writing it
            if not stale.exists():
                continue  # renamed into place by its writer before we took the lock
            data = fh.read()
            whole = data[: data.rfind(b"\n") + 1]
            if whole != data:
                fh.truncate(len(whole))
                fh.flush()
                os.fsync(fh.fileno())
            final = folder / stale.name[1 : -len(OPEN_SUFFIX)]
            if whole:
                stale.rename(final)
                closed.append(final)
            else:
                stale.unlink()
    fsync_dir(folder)
    return closed


class GroupCommitLog:
    """Append rows to `folder` from many coroutines; `append` returns once they are on disk."""

    def __init__(self, folder: Path, prefix: str, rotate_seconds: float = 0.5) -> None:
        self.folder = folder
        self.prefix = prefix
        self.rotate_seconds = rotate_seconds
        folder.mkdir(parents=True, exist_ok=True)
        self._waiting: list[tuple[list[bytes], asyncio.Future[None]]] = []
        self._wake = asyncio.Event()
        self._fh: Any = None
        self._path: Path | None = None
        self._opened = 0.0
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.rows_written = 0
        self.files_closed = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def append(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Returns once every row is fsynced (raises if the write failed: nothing acknowledged)."""
        if self._closing:
            raise RuntimeError("the collector is shutting down")
        lines = [(json.dumps(r, separators=(",", ":"), default=str) + "\n").encode() for r in rows]
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((lines, done))
        self._wake.set()
        await done

    async def close(self) -> None:
        """Write what waits, close the file, stop."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        swept = time.monotonic()
        while True:
            with contextlib.suppress(TimeoutError):  # a tick: time to close the file?
                await asyncio.wait_for(self._wake.wait(), timeout=self.rotate_seconds / 4)
            self._wake.clear()
            group, self._waiting = self._waiting, []
            if group:
                await self._commit(group)
            try:
                if self._fh is not None and (
                    self._closing or time.monotonic() - self._opened >= self.rotate_seconds
                ):
                    await asyncio.to_thread(self._rotate)
                if time.monotonic() - swept >= SWEEP_SECONDS:
                    swept = time.monotonic()  # what a crashed collector left open, closed
                    await asyncio.to_thread(recover, self.folder)
            except Exception:  # a disk error: the writer goes on; the next write says so
                log.exception("closing a landing file in %s failed", self.folder)
                self._forget_file()
            if self._closing and not self._waiting:
                return

    async def _commit(self, group: list[tuple[list[bytes], asyncio.Future[None]]]) -> None:
        try:
            await asyncio.to_thread(self._write, [line for lines, _ in group for line in lines])
        except BaseException as exc:  # a full disk: nobody in the group is acknowledged
            for _, done in group:
                if not done.done():
                    done.set_exception(OSError(f"could not write the landing file: {exc!r}"))
            self._drop_file()
            if not isinstance(exc, Exception):
                raise
            return
        for _, done in group:
            if not done.done():
                done.set_result(None)

    def _write(self, lines: list[bytes]) -> None:
        if self._fh is None:
            name = f"{self.prefix}-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:12]}.jsonl"
            # Locked before it has the name recover() looks for, and that name made durable
            # before anything in it is acknowledged.
            fresh = self.folder / f".{name}.new"
            fh = fresh.open("ab")
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self._path = self.folder / f".{name}{OPEN_SUFFIX}"
            fresh.rename(self._path)
            fsync_dir(self.folder)
            self._fh = fh
            self._opened = time.monotonic()
        self._fh.write(b"".join(lines))
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self.rows_written += len(lines)

    def _rotate(self) -> None:
        """Close the open file into the table's glob: readers see all of it from now on."""
        assert self._fh is not None and self._path is not None
        self._path.rename(self.folder / self._path.name[1 : -len(OPEN_SUFFIX)])
        self._fh.close()  # renamed first: held until out of recover()'s way
        fsync_dir(self.folder)
        self._fh, self._path = None, None
        self.files_closed += 1

    def _drop_file(self) -> None:
        """After a failed write the file may end in part of a line: close it as recover would."""
        self._forget_file()
        try:
            recover(self.folder)  # now unlocked: cut at its last whole line and closed
        except OSError:
            log.exception("recovering %s failed; the next sweep tries again", self.folder)

    def _forget_file(self) -> None:
        if self._fh is not None:
            with contextlib.suppress(OSError):
                self._fh.close()
        self._fh, self._path = None, None
