"""The privacy audit as rows the warehouse reads (`landing/privacy/audit/`, staged into
fct_privacy_requests): one line per request accepted, per store a stage emptied, per request
completed or refused, and per store a retention run trimmed. No personal data: request ids,
store names, counts and times."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from switchyard import landing

Kind = Literal["forget", "retention"]
Event = Literal["accepted", "stage", "completed", "refused"]


class AuditLog:
    """Lines appended, and fsynced together as each stage ends (`sync`) and at `close`, so a
    crash loses no stage that ran, without a disk flush a line."""

    def __init__(self, landing_dir: Path, prefix: str) -> None:
        self._log = landing.AppendLog(landing_dir, "privacy", "audit", prefix)

    def record(
        self,
        request_id: str,
        kind: Kind,
        event: Event,
        store: str | None = None,
        counts: Mapping[str, int] | None = None,
    ) -> None:
        counts = counts or {}
        self._log.append(
            {
                "request_id": request_id,
                "kind": kind,
                "event": event,
                "store": store,
                "files": counts.get("files", 0),
                "rows_removed": counts.get("rows_removed", 0) + counts.get("deleted", 0),
                "rows_redacted": counts.get("rows_redacted", 0),
                "recorded_at": datetime.now(UTC).isoformat(timespec="microseconds"),
            },
            sync=False,
        )

    def sync(self) -> None:
        self._log.sync()

    def close(self) -> None:
        self._log.sync()
        self._log.close()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
