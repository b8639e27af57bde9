"""Current consent per user, channel and topic, read from the closed files of
`preferences/consents`: what the preference center shows a person, without the warehouse.

The files are read by DuckDB in memory under the very expressions of stg_preferences__consents
(codes trimmed and lower-cased, topic marketing when blank, recorded_at read as UTC as
`utc_timestamp` reads it, unusable rows left out) and folded as int_user_consents_current ranks
them (the latest change wins, ties to the greater consent_id), so the page shows what the
send-time guard will read. A closed landing file never changes, so each is read once; memory
grows with users x choices (about 500 bytes each, measured: 10M users' few choices want GBs,
past which the page should read a published copy of the warehouse instead)."""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb

from activations.journeys import CHANNELS

STATUSES = ("subscribed", "unsubscribed")
Choice = tuple[str, str]  # (channel, topic)

log = logging.getLogger(__name__)

# a time followed by an offset (Z, +02, -0530, +05:30): as macros/safe_cast.sql has it
OFFSET = r"\d{2}:\d{2}(:\d{2}(\.\d+)?)?\s*(z|[+-]\d{2}(:?\d{2})?)$"
# stg_preferences__consents' typing, on the same columns (all read as text)
_TYPED = """
select
    nullif(trim(consent_id), '') as consent_id,
    nullif(trim(user_id), '') as user_id,
    nullif(lower(trim(channel)), '') as channel,
    coalesce(nullif(lower(trim(topic)), ''), 'marketing') as topic,
    nullif(lower(trim(status)), '') as status,
    -- macros/safe_cast.sql duckdb__utc_timestamp: an offset is converted to UTC
    case
        when regexp_matches(lower(trim(recorded_at)), '{OFFSET}')
            then try_cast(timezone('UTC', try_cast(recorded_at as timestamptz)) as timestamp)
        else try_cast(recorded_at as timestamp)
    end as recorded_at
from read_json(?, format = 'newline_delimited', ignore_errors = true, columns = {
    consent_id: 'VARCHAR', user_id: 'VARCHAR', channel: 'VARCHAR', topic: 'VARCHAR',
    status: 'VARCHAR', recorded_at: 'VARCHAR'})
""".replace("{OFFSET}", OFFSET)


class ConsentIndex:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._read: dict[str, tuple[int, int]] = {}  # file name -> (size, mtime) when read
        # user -> (channel, topic) -> (recorded_at, consent_id, status)
        self._latest: dict[str, dict[Choice, tuple[datetime, str, str]]] = {}
        self._lock = threading.Lock()  # refreshed in a worker thread, read by the event loop
        self._loading = threading.Lock()  # one load at a time: others wait for it, not redo it

    def refresh(self) -> None:
        """Fold in every closed file not read yet, or changed since (a file copied in place
        rather than renamed: folding is idempotent, so it is read again whole). Hidden
        `.new`/`.open` files are in writing. On an error the index keeps what it had."""
        with self._loading:
            try:
                self._refresh()
            except (OSError, duckdb.Error):
                log.exception("reading %s failed; the page shows what was read before", self.folder)

    def _refresh(self) -> None:
        fresh: dict[str, tuple[int, int]] = {}
        for path in sorted(self.folder.glob("*.jsonl")):
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            seen = (stat.st_size, stat.st_mtime_ns)
            if self._read.get(path.name) != seen:
                fresh[path.name] = seen
        if not fresh:
            return
        with duckdb.connect() as con:
            files = [str(self.folder / name) for name in fresh]
            rows = con.execute(_TYPED, [files]).fetchall()
        for consent_id, user, channel, topic, status, at in rows:
            self._fold(consent_id, user, channel, topic, status, at)
        self._read.update(fresh)

    def fold(self, row: dict[str, Any]) -> None:
        """A row this process just landed (well-formed, stamped in UTC with a Z)."""
        at = datetime.fromisoformat(row["recorded_at"]).replace(tzinfo=None)
        self._fold(row["consent_id"], row["user_id"], row["channel"], row["topic"],
                   row["status"], at)  # fmt: skip

    def _fold(self, consent_id: Any, user: Any, channel: Any, topic: Any, status: Any,
              at: Any) -> None:  # fmt: skip
        if not user or not consent_id or at is None:
            return
        if channel not in CHANNELS or status not in STATUSES:
            return  # staging rejects it: the guard never reads it
        with self._lock:
            choices = self._latest.setdefault(user, {})
            current = choices.get((channel, topic))
            if current is None or (at, consent_id) > current[:2]:
                choices[(channel, topic)] = (at, consent_id, status)

    def of(self, user_id: str) -> dict[Choice, str]:
        """The user's latest status per (channel, topic) they ever said something about."""
        with self._lock:
            return {choice: s for choice, (_, _, s) in self._latest.get(user_id, {}).items()}
