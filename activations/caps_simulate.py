"""`switchyard caps simulate`: with a cap policy, what would have been held back over a past
window, by journey and channel, replayed from the ledger without sending anything.

The replay goes through each person's messages in the order they went out, judging each with
the send-time guard itself (guards.over_cap: a sliding window, or the person's calendar day in
their time zone). A message counts toward the cap only if it would still have been sent: one the
policy holds back frees its place for the next. Exempt journeys (the policy's, and the
project's transactional ones) neither count nor get held back. What the policy does with a
held-back message (defer, skip, exit) is not replayed: deferred ones would have gone out later,
so the figures are the messages that could not have gone when they did.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import duckdb

from activations import guards
from activations.cap_policy import CapPolicy
from activations.ledger import LedgerState, store
from activations.ledger.vocabulary import OUTCOME_UNKNOWN


@dataclass(frozen=True)
class Simulated:
    journey: str
    channel: str
    sent: int  # messages that went out in the window
    held_back: int  # of those, the ones the policy would have held back


def simulate(
    landing_dir: Path,
    policy: CapPolicy,
    until: datetime,
    days: float = 7,
    exempt: Collection[str] = (),
    timezones: Mapping[str, str | None] | None = None,
    own_caps: Collection[str] = (),
) -> list[Simulated]:
    """Replay the messages sent in the `days` before `until` under `policy` (`exempt`: more
    journeys it does not apply to, such as the transactional ones, which neither count nor are
    held back; `own_caps`: journeys with a cap of their own, which the policy never holds back
    but whose messages count; `timezones`: each person's, for a calendar-day cap). The window
    before them (what the cap looks back over) is replayed too, so the first day starts with
    what it had."""
    since = until - timedelta(days=days)
    cap = policy.cap
    warm_up = since - cap.lookback
    exempt = policy.exempt_journeys | set(exempt)
    zones = timezones or {}
    con = duckdb.connect()
    try:
        lines = store.lines_sql(store.layout(con, landing_dir))
        rows = (
            con.execute(
                f"""
                select person_id, journey, channel, line_at as sent_at
                from ({lines})
                where (status = 'sent' or (status = 'failed' and reason = ?))
                    and line_at > ? and line_at <= ?
                order by person_id, sent_at, send_key
                """,
                [OUTCOME_UNKNOWN, warm_up, until],
            ).fetchall()
            if lines
            else []
        )
    finally:
        con.close()
    sent: Counter[tuple[str, str]] = Counter()
    held: Counter[tuple[str, str]] = Counter()
    allowed = LedgerState({}, {}, {})  # what would have gone out, as the guard reads it
    person = None
    for person_id, journey, channel, at in rows:
        if person_id != person:
            person, allowed = person_id, LedgerState({}, {}, {})
        if journey in exempt:
            continue
        capped = journey not in own_caps and guards.over_cap(
            cap, person_id, allowed, at, None, zones.get(person_id)
        )
        if not capped:
            allowed.note_send(person_id, at)
        if at > since:
            key = (journey, channel or "none")
            sent[key] += 1
            held[key] += capped
    return [Simulated(j, c, n, held[(j, c)]) for (j, c), n in sorted(sent.items())]


def as_table(results: list[Simulated]) -> str:
    lines = [f"{'journey':<28} {'channel':<8} {'sent':>8} {'held back':>10}"]
    for r in results:
        lines.append(f"{r.journey:<28} {r.channel:<8} {r.sent:>8} {r.held_back:>10}")
    total_sent = sum(r.sent for r in results)
    total_held = sum(r.held_back for r in results)
    lines.append(f"{'all':<28} {'':<8} {total_sent:>8} {total_held:>10}")
    return "\n".join(lines)
