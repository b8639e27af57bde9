"""`switchyard caps simulate`: with a cap policy, what would have been held back over a past
window, by journey and channel, replayed from the ledger without sending anything.

The replay goes through each person's messages in the order they went out. A message counts
toward the cap only if it would still have been sent: one the policy holds back frees its place
for the next. Exempt journeys (transactional ones) neither count nor get held back. What the
policy does with a held-back message (defer or skip) is not replayed: deferred ones would have
gone out later, so the figures are the messages that could not have gone when they did.
"""

from __future__ import annotations

import json
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import duckdb

from activations.ledger import store
from activations.ledger.vocabulary import OUTCOME_UNKNOWN


@dataclass(frozen=True)
class CapPolicy:
    messages: int
    per_hours: float
    exempt_journeys: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def from_file(cls, path: Path) -> CapPolicy:
        """A JSON file: {"messages": 1, "per_hours": 24, "exempt_journeys": ["receipts"]}."""
        try:
            raw = json.loads(path.read_text())
            policy = cls(
                int(raw["messages"]),
                float(raw["per_hours"]),
                frozenset(raw.get("exempt_journeys", [])),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(
                f"{path}: a cap policy is JSON like "
                '{"messages": 1, "per_hours": 24, "exempt_journeys": []} '
                f"({exc.__class__.__name__}: {exc})"
            ) from exc
        if policy.messages < 1 or policy.per_hours <= 0:
            raise ValueError(f"{path}: messages must be at least 1 and per_hours above 0")
        return policy


@dataclass(frozen=True)
class Simulated:
    journey: str
    channel: str
    sent: int  # messages that went out in the window
    held_back: int  # of those, the ones the policy would have held back


def simulate(
    landing_dir: Path, policy: CapPolicy, until: datetime, days: float = 7
) -> list[Simulated]:
    """Replay the messages sent in the `days` before `until` under `policy`. The window before
    them (one cap period) is replayed too, so the first day starts with what it had."""
    since = until - timedelta(days=days)
    warm_up = since - timedelta(hours=policy.per_hours)
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
    window = timedelta(hours=policy.per_hours)
    sent: Counter[tuple[str, str]] = Counter()
    held: Counter[tuple[str, str]] = Counter()
    allowed: deque[datetime] = deque()
    person = None
    for person_id, journey, channel, at in rows:
        if person_id != person:
            person, allowed = person_id, deque()
        if journey in policy.exempt_journeys:
            continue
        while allowed and allowed[0] <= at - window:
            allowed.popleft()
        capped = len(allowed) >= policy.messages
        if not capped:
            allowed.append(at)
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
