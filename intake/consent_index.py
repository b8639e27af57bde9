"""Current consent per user, channel and topic, read from the closed files of
`preferences/consents`: what the preference center shows a person, without the warehouse.

Under the rules of stg_preferences__consents and int_user_consents_current (codes trimmed and
lower-cased, topic marketing when blank, unusable rows left out, the latest change wins, ties
to the greater consent_id), so the page shows what the send-time guard will read. A closed
landing file never changes, so each is read once; memory grows with users x choices (about
100 bytes each)."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

MARKETING = "marketing"
CHANNELS = ("email", "sms", "push", "in_app", "webhook")
STATUSES = ("subscribed", "unsubscribed")
Choice = tuple[str, str]  # (channel, topic)


class ConsentIndex:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._read: set[str] = set()
        # user -> (channel, topic) -> (recorded_at, consent_id, status)
        self._latest: dict[str, dict[Choice, tuple[datetime, str, str]]] = {}
        self._lock = threading.Lock()  # refreshed in a worker thread, read by the event loop

    def refresh(self) -> None:
        """Fold in every closed file not read yet (hidden `.new`/`.open` files are in writing)."""
        for path in sorted(self.folder.glob("*.jsonl")):
            if path.name in self._read:
                continue
            with path.open(encoding="utf-8", errors="replace") as lines:
                for line in lines:
                    try:
                        row = json.loads(line)
                    except ValueError:
                        continue  # staging rejects it too
                    if isinstance(row, dict):
                        self.fold(row)
            self._read.add(path.name)

    def fold(self, row: dict[str, Any]) -> None:
        user, consent_id = _text(row.get("user_id")), _text(row.get("consent_id"))
        channel, status = _code(row.get("channel")), _code(row.get("status"))
        topic = _code(row.get("topic")) or MARKETING
        at = _timestamp(row.get("recorded_at"))
        if not user or not consent_id or channel not in CHANNELS or status not in STATUSES:
            return
        if at is None:
            return
        with self._lock:
            choices = self._latest.setdefault(user, {})
            current = choices.get((channel, topic))
            if current is None or (at, consent_id) > current[:2]:
                choices[(channel, topic)] = (at, consent_id, status)

    def of(self, user_id: str) -> dict[Choice, str]:
        """The user's latest status per (channel, topic) they ever said something about."""
        with self._lock:
            return {choice: s for choice, (_, _, s) in self._latest.get(user_id, {}).items()}


def _text(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _code(value: Any) -> str | None:
    text = _text(value)
    return text.lower() if text else None


def _timestamp(value: Any) -> datetime | None:
    """As a cast to timestamp reads it: an offset is turned into UTC."""
    text = _text(value)
    if text is None:
        return None
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        return None
    return at.astimezone(UTC).replace(tzinfo=None) if at.tzinfo else at
