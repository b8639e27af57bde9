"""Which intake files landed since the last look: what wakes the seconds tier.

A landing file becomes visible by a rename into its table's folder (switchyard/landing.py,
intake/durable.py); a few writers (the inbox's read and click events) append to a visible file
instead. Either way the kernel sets the file's inode change time (ctime), which no copy tool can
set (`cp -p` and `rsync -a` set the mtime only). The cursor is bounded: a watermark, the newest
ctime seen but never past the time the listing began, and the (name, size) pairs seen within
GRACE of it. A file counts as new when its ctime is after watermark - GRACE and its (name,
size) is not among those: a file renamed or appended to while the folders were being listed
is caught by the next look, an append counts once more (its new rows), and nothing is counted
twice. GRACE covers coarse file-system timestamps; a clock stepped back by more than it can
hide files until it catches up.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from switchyard import landing

# The sources whose new rows can start or move a journey. The ledger, the inbox and the
# transitions are written by the runs themselves: watching them would wake a run per run.
INTAKE_TABLES: tuple[tuple[str, str], ...] = (
    ("segment", "events"),
    ("shop", "orders"),
    ("preferences", "consents"),
    ("preferences", "suppressions"),
    ("feedback", "events"),
)
GRACE_NS = 60 * 1_000_000_000


@dataclass(frozen=True)
class LandedCursor:
    watermark_ns: int = 0
    recent: frozenset[str] = frozenset()  # "name:size" of files changed within GRACE of it
    requested_at: float = 0.0  # when the last run was asked for (epoch seconds)

    def to_json(self) -> str:
        return json.dumps(
            {
                "watermark_ns": self.watermark_ns,
                "recent": sorted(self.recent),
                "requested_at": self.requested_at,
            }
        )

    @classmethod
    def from_json(cls, text: str | None) -> LandedCursor:
        if not text:
            return cls()
        raw = json.loads(text)
        return cls(
            int(raw["watermark_ns"]), frozenset(raw["recent"]), float(raw.get("requested_at", 0))
        )


def landed_since(landing_dir: Path, cursor: LandedCursor) -> tuple[list[str], LandedCursor]:
    """The intake files (relative to `landing_dir`) with rows not seen by `cursor`, and the
    cursor after them (its requested_at unchanged)."""
    listing_began = time.time_ns()
    seen: dict[str, tuple[int, int]] = {}  # name -> (ctime, size)
    for source, table in INTAKE_TABLES:
        folder = landing.table_dir(landing_dir, source, table)
        if not folder.is_dir():
            continue
        for entry in os.scandir(folder):
            if not entry.name.endswith(".jsonl") or entry.name.startswith((".", "_")):
                continue  # open, temporary or placeholder
            try:
                stat = entry.stat()
            except FileNotFoundError:  # compacted or removed between listing and stat
                continue
            seen[f"{source}/{table}/{entry.name}"] = (stat.st_ctime_ns, stat.st_size)
    floor = cursor.watermark_ns - GRACE_NS
    new = sorted(
        name for name, (changed, size) in seen.items()
        if changed > floor and f"{name}:{size}" not in cursor.recent
    )  # fmt: skip
    watermark = min(max([cursor.watermark_ns, *(c for c, _ in seen.values())]), listing_began)
    recent = frozenset(
        f"{name}:{size}" for name, (changed, size) in seen.items()
        if changed > watermark - GRACE_NS
    )  # fmt: skip
    return new, LandedCursor(watermark, recent, cursor.requested_at)
