"""Send keys: derived from (journey, step, person, entry), so a decision is keyed before it acts."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


@dataclass(frozen=True)
class SendRef:
    """Who and what a ledger line is about."""

    send_key: str
    journey: str
    step: str
    person_id: str
    entry_id: str


def send_key(journey: str, step: str, person_id: str, entry_id: str) -> str:
    """Deterministic: the same (journey, step, person, entry) always gives the same key."""
    raw = "\x1f".join((journey, step, person_id, entry_id))
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


def send_key_sql(journey: str, step: str, person_id: str, entry_id: str) -> str:
    """`send_key` as a DuckDB expression over the given column expressions (same value)."""
    return f"left(sha256(concat_ws(chr(31), {journey}, {step}, {person_id}, {entry_id})), 32)"
