"""The inbox's landing files: messages (`landing/inbox/messages`, one line per message the
in_app channel delivered) and the reads and clicks of them, landed as feedback events
(`landing/feedback/events`, provider `inbox`, channel `in_app`, events `open` and `click`) so that
engagement branches, profiles and metrics read them as they read the providers'.

Both are append-only, as the landing contract wants. A message written twice under one send key
(sent once more after a lost outcome) is one message; a read or click recorded twice is one event
(its id is derived from the message and the event)."""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

import duckdb
import sqlglot
from sqlglot import exp

from switchyard import landing

PROVIDER = "inbox"
EVENTS_PREFIX = "inbox"  # the endpoint's event files: feedback/events/inbox-*.jsonl
CHANNEL = "in_app"
Engagement = Literal["open", "click"]


@dataclass(frozen=True)
class InboxMessage:
    send_key: str
    title: str | None
    body: str
    journey: str | None
    step: str | None
    created_at: datetime
    read_at: datetime | None
    clicked_at: datetime | None


class InboxWriter:
    """Appends lines to one landing file, each fsynced before the call returns: a message the
    channel reports delivered, or an event the endpoint acknowledges, is on disk. Thread-safe."""

    def __init__(self, landing_dir: Path, source: str, table: str, prefix: str) -> None:
        self._log = landing.AppendLog(landing_dir, source, table, prefix)
        self._lock = threading.Lock()

    def append(self, row: dict[str, object]) -> None:
        with self._lock:
            self._log.append(row)

    def close(self) -> None:
        with self._lock:
            self._log.close()


def message_row(
    send_key: str,
    user_id: str,
    title: str | None,
    body: str,
    journey: str | None,
    step: str | None,
    at: datetime,
) -> dict[str, object]:
    return {
        "send_key": send_key,
        "user_id": user_id,
        "title": title,
        "body": body,
        "journey": journey,
        "step": step,
        "created_at": at.isoformat(),
    }


def event_row(send_key: str, event: Engagement, at: datetime) -> dict[str, object]:
    digest = hashlib.sha256(f"{PROVIDER}|{send_key}|{event}".encode()).hexdigest()[:32]
    return {
        "event_id": f"{PROVIDER}-{digest}",
        "send_key": send_key,
        "provider": PROVIDER,
        "channel": CHANNEL,
        "event": event,
        "occurred_at": at.isoformat(),
    }


def _glob(landing_dir: Path, source: str, table: str) -> exp.Expression:
    return exp.Literal.string(str(landing.table_dir(landing_dir, source, table) / "*.jsonl"))


def read_inbox(landing_dir: Path, user_id: str, unread_only: bool = False) -> list[InboxMessage]:
    """The user's messages, newest first, each with its first read and click (a click counts
    as a read). Read straight from the landing files: no warehouse, no lock. A line cut short
    (its writer killed midway) reads as a row of nulls, which the filters leave out."""
    messages = _glob(landing_dir, "inbox", "messages")
    # only the endpoint's own event files, not every provider's feedback
    folder = landing.table_dir(landing_dir, "feedback", "events")
    files = sorted(str(f) for f in folder.glob(f"{EVENTS_PREFIX}-*.jsonl"))
    events = exp.Array(
        expressions=[exp.Literal.string(f) for f in files or [str(folder / landing.PLACEHOLDER)]]
    )
    query = sqlglot.parse_one(
        """
        with messages as (
            select send_key, any_value(title) as title, any_value(body) as body,
                any_value(journey) as journey, any_value(step) as step,
                min(try_cast(created_at as timestamp)) as created_at
            from read_json(MESSAGES, format = 'newline_delimited', ignore_errors = true, columns = {
                send_key: 'VARCHAR', user_id: 'VARCHAR', title: 'VARCHAR', body: 'VARCHAR',
                journey: 'VARCHAR', step: 'VARCHAR', created_at: 'VARCHAR'})
            where user_id = $user_id
            group by send_key
        ),
        engagement as (
            select send_key,
                min(case when event in ('open', 'click') then occurred_at end) as read_at,
                min(case when event = 'click' then occurred_at end) as clicked_at
            from (
                select send_key, event, try_cast(occurred_at as timestamp) as occurred_at
                from read_json(EVENTS, format = 'newline_delimited', ignore_errors = true,
                    columns = {event_id: 'VARCHAR', send_key: 'VARCHAR', provider: 'VARCHAR',
                    channel: 'VARCHAR', event: 'VARCHAR', occurred_at: 'VARCHAR'})
                where provider = 'inbox'
                    and send_key in (select send_key from messages)
            )
            group by send_key
        )
        select m.send_key, m.title, m.body, m.journey, m.step, m.created_at, e.read_at,
            e.clicked_at
        from messages m left join engagement e using (send_key)
        where not $unread_only or e.read_at is null
        order by m.created_at desc, m.send_key
        """,
        dialect="duckdb",
    )
    query = query.transform(
        lambda node: (
            (messages if node.name == "MESSAGES" else events)
            if isinstance(node, exp.Column) and node.name in ("MESSAGES", "EVENTS")
            else node
        )
    )
    con = duckdb.connect()
    try:
        rows = con.execute(
            query.sql(dialect="duckdb"), {"user_id": user_id, "unread_only": unread_only}
        ).fetchall()
    finally:
        con.close()
    return [InboxMessage(*row) for row in rows]
