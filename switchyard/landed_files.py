"""Which intake files landed since the last look: what wakes the seconds tier.

A landing file becomes visible by a rename into its table's folder (switchyard/landing.py,
intake/durable.py) and never changes after, so "new" is a question of names. The cursor is
bounded: a watermark (the newest inode change time seen; a rename sets it, on ext4, xfs and
btrfs alike) and the names seen within GRACE of it. A file counts as new when it changed after
watermark - GRACE and its name is not among those: one renamed while another folder was being
listed, with an older time than the newest seen, is still caught, and none is counted twice.
"""

from __future__ import annotations

import json
import os
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
    recent: frozenset[str] = frozenset()

    def to_json(self) -> str:
        return json.dumps({"watermark_ns": self.watermark_ns, "recent": sorted(self.recent)})

    @classmethod
    def from_json(cls, text: str | None) -> LandedCursor:
        if not text:
            return cls()
        raw = json.loads(text)
        return cls(int(raw["watermark_ns"]), frozenset(raw["recent"]))


def _changed_ns(path: Path) -> int | None:
    try:
        stat = path.stat()
    except FileNotFoundError:  # compacted or removed between listing and stat
        return None
    return max(stat.st_ctime_ns, stat.st_mtime_ns)


def landed_since(landing_dir: Path, cursor: LandedCursor) -> tuple[list[str], LandedCursor]:
    """The intake files (relative to `landing_dir`) not seen by `cursor`, and the cursor after
    them. Files are listed before any is judged, so the new cursor covers exactly what was seen."""
    seen: dict[str, int] = {}
    for source, table in INTAKE_TABLES:
        folder = landing.table_dir(landing_dir, source, table)
        if not folder.is_dir():
            continue
        for entry in os.scandir(folder):
            if not entry.name.endswith(".jsonl") or entry.name.startswith((".", "_")):
                continue  # open, temporary or placeholder
            changed = _changed_ns(Path(entry.path))
            if changed is not None:
                seen[f"{source}/{table}/{entry.name}"] = changed
    floor = cursor.watermark_ns - GRACE_NS
    new = sorted(n for n, t in seen.items() if t > floor and n not in cursor.recent)
    watermark = max([cursor.watermark_ns, *seen.values()])
    recent = frozenset(n for n, t in seen.items() if t > watermark - GRACE_NS)
    return new, LandedCursor(watermark, recent)
