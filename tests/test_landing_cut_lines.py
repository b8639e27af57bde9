"""Append-only landing files written line by line while readers may read them (ledger run files,
the inbox's messages and events, the privacy audit) and a writer killed midway through a write:
the kernel stops a write between pages, and the file ends in part of a line (seen in CI, the
SIGKILL test on push).
That line is a reject with its reason; dbt and the inbox endpoint go on reading the whole lines,
instead of failing every run after the kill."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from activations import ledger
from activations.inbox import store as inbox
from activations.ledger.keys import SendRef
from switchyard import landing
from switchyard.privacy.audit import AuditLog
from switchyard.settings import Paths
from tests.dbt_helpers import dbt_build, query

T = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def ref(n: int) -> SendRef:
    return SendRef(send_key=f"key-{n}", journey="cart", step="remind", person_id=f"p{n}",
                   entry_id=f"e{n}")  # fmt: skip


def cut(paths: Paths, source: str, table: str, prefix: str, partial: str) -> Path:
    """What a writer killed midway through a line leaves at the end of its file."""
    (path,) = landing.table_dir(paths.landing, source, table).glob(f"{prefix}-*.jsonl")
    with path.open("a", encoding="utf-8") as fh:
        fh.write(partial)
    return path


def test_a_cut_line_is_a_reject_and_the_whole_lines_are_read(paths: Paths) -> None:
    writer = ledger.LedgerWriter(paths.landing, "run1")
    writer.write(ref(1), "attempted", T, channel="email", recipient="a@example.com")
    writer.write(ref(1), "sent", T + timedelta(seconds=1), channel="email")
    writer.write(ref(2), "attempted", T + timedelta(seconds=2), channel="email")
    writer.close()
    run_file = cut(
        paths, "ledger", "deliveries", "run-run1", '{"send_key":"key-2","run_id":"run1","sta'
    )

    messages = inbox.InboxWriter(paths.landing, "inbox", "messages", "inapp")
    messages.append(inbox.message_row("key-1", "u1", "Hi", "Welcome", "welcome", "hello", T))
    messages.close()
    inbox_file = cut(
        paths, "inbox", "messages", "inapp", '{"send_key":"key-3","user_id":"u1","title":"Yo'
    )

    events = inbox.InboxWriter(paths.landing, "feedback", "events", inbox.EVENTS_PREFIX)
    events.append(inbox.event_row("key-1", "open", T + timedelta(minutes=5)))
    events.close()
    events_file = cut(
        paths, "feedback", "events", "inbox", '{"event_id":"inbox-0f3a","send_key":"key-1"'
    )

    with AuditLog(paths.landing, "forget") as audit:
        audit.record("req-1", "forget", "accepted")
    audit_file = cut(paths, "privacy", "audit", "forget", '{"request_id":"req-1","kind":"forg')
    # whole audit lines that cannot be used either: rejects too, with what is wrong
    at = T.isoformat()
    bad = [
        {"kind": "forget", "event": "accepted", "recorded_at": at},
        {"request_id": "req-2", "kind": "erase", "event": "accepted", "recorded_at": at},
        {"request_id": "req-3", "kind": "forget", "event": "started", "recorded_at": at},
        {"request_id": "req-4", "kind": "forget", "event": "completed", "recorded_at": "soon"},
    ]
    bad_file = landing.write_batch(paths.landing, "privacy", "audit", bad)

    # the inbox endpoint reads the landing files: the whole message, read
    (shown,) = inbox.read_inbox(paths.landing, "u1")
    assert (shown.send_key, shown.read_at) == ("key-1", datetime(2026, 11, 2, 9, 5))

    dbt_build(paths, "+fct_rejected_rows", "stg_ledger__deliveries", "fct_privacy_requests")
    rejected = query(
        paths,
        "select source_table, row_key, reject_reason, source_file from fct_rejected_rows "
        "order by source_table, row_key nulls first",
    )
    assert [(r["row_key"], r["reject_reason"]) for r in rejected if r["source_file"].endswith(
        bad_file.name)] == [
        (None, "missing request_id"), ("req-2", "unknown kind: erase"),
        ("req-3", "unknown event: started"), ("req-4", "unparseable recorded_at: soon"),
    ]  # fmt: skip
    rejected = [r for r in rejected if not r["source_file"].endswith(bad_file.name)]
    assert [(r["source_table"], r["row_key"]) for r in rejected] == [
        ("feedback.events", None), ("inbox.messages", None), ("ledger.deliveries", None),
        ("privacy.audit", None),
    ]  # fmt: skip
    assert all(r["reject_reason"].startswith("unreadable line") for r in rejected)
    files = {Path(r["source_file"]).name for r in rejected}
    assert files == {p.name for p in (run_file, inbox_file, events_file, audit_file)}

    lines = query(
        paths, "select send_key, delivery_status from stg_ledger__deliveries order by 1, 2"
    )
    assert [tuple(r.values()) for r in lines] == [
        ("key-1", "attempted"), ("key-1", "sent"), ("key-2", "attempted"),
    ]  # fmt: skip
    kept = query(paths, "select send_key from stg_inbox__messages where reject_reason is null")
    assert kept == [{"send_key": "key-1"}]
    opened = query(
        paths,
        "select send_key, feedback_event from stg_feedback__events where reject_reason is null",
    )
    assert opened == [{"send_key": "key-1", "feedback_event": "open"}]
    # the whole line still makes its request; the unusable ones make none
    requests = query(paths, "select request_id, status from fct_privacy_requests")
    assert requests == [{"request_id": "req-1", "status": "queued"}]


def test_a_forget_keeps_a_cut_line_cut(paths: Paths) -> None:
    # Rewriting a file without the person's lines must not end a cut line with a newline: it
    # would read as a whole line, and readers would fail on it instead of listing a reject.
    from switchyard.privacy.landed import Target, rewrite_jsonl

    writer = ledger.LedgerWriter(paths.landing, "run1")
    writer.write(ref(1), "attempted", T, channel="email", recipient="a@example.com")
    writer.write(ref(2), "attempted", T, channel="email", recipient="b@example.com")
    writer.close()
    run_file = cut(paths, "ledger", "deliveries", "run-run1", '{"send_key":"key-3","run_i')
    gone = Target(keys=set(), person_ids={"p1"}, pseudonyms={}, spellings=set())
    done = rewrite_jsonl(run_file, lambda row: None if row.get("person_id") == "p1" else True,
                         gone)  # fmt: skip
    assert done.rows_removed == 1
    text = run_file.read_text()
    assert text.endswith('{"send_key":"key-3","run_i') and '"p1"' not in text
    assert ledger.read_state(paths.landing).last_status == {"key-2": "attempted"}
