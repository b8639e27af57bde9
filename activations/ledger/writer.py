"""Appending ledger lines: one file per run, fsynced line by line or a batch at a time."""

from __future__ import annotations

import threading
from datetime import datetime
from pathlib import Path
from typing import Any

from activations.ledger.keys import SendRef
from activations.ledger.vocabulary import COLUMNS, LedgerStatus
from switchyard import landing

_COLUMN_NAMES = frozenset(COLUMNS)


class LedgerWriter:
    def __init__(self, landing_dir: Path, run_id: str) -> None:
        self.run_id = run_id
        self.landing_dir = landing_dir
        self._log = landing.AppendLog(landing_dir, "ledger", "deliveries", prefix=f"run-{run_id}")
        self._lock = threading.Lock()  # a sender's workers write hand-offs' attempted lines

    def write(
        self, ref: SendRef, status: LedgerStatus, at: datetime, sync: bool = True, **fields: Any
    ) -> None:
        """One line, on disk when this returns unless `sync` is false (then at `sync()`)."""
        row: dict[str, Any] = dict.fromkeys(COLUMNS)
        row.update(
            send_key=ref.send_key,
            run_id=self.run_id,
            journey=ref.journey,
            step=ref.step,
            person_id=ref.person_id,
            entry_id=ref.entry_id,
            status=status,
            recorded_at=at.isoformat(timespec="microseconds"),
        )
        if not _COLUMN_NAMES.issuperset(fields):
            raise ValueError(f"not ledger columns: {sorted(set(fields) - _COLUMN_NAMES)}")
        row.update(fields)
        with self._lock:
            self._log.append(row, sync)

    def sync(self) -> None:
        with self._lock:
            self._log.sync()

    def close(self) -> None:
        self._log.close()
