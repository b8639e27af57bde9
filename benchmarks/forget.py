"""Forget K people in a home with N landed events.

    python benchmarks/forget.py [--size N] [--people K]
    (N events, default 10,000,000; K people forgotten in one batch, default 100)

In a scratch folder: N Segment events as collector files of 50,000 lines (the sample data's
size), ten events for each of N / 10 users, written in user order as a collector would over
time; then K users picked at random are forgotten in one `forget_many` batch (tombstones, the
landing pass over every table, no warehouse: the part that grows with the events landed).

Baseline, in the same run: `floor_seconds`, every events file read and written back whole
(its bytes, unparsed): the least a rewrite of the landing files can cost.

Prints one `name=value unit` line per figure: forget_seconds, bytes_rewritten (of the files
replaced), files_rewritten, events_removed, people_forgotten, floor_seconds, forget_vs_floor,
seconds_per_person, landing_bytes.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))

from switchyard import landing  # noqa: E402
from switchyard.privacy.forget import forget_many  # noqa: E402
from switchyard.privacy.subject import Request  # noqa: E402
from switchyard.settings import Paths  # noqa: E402

PER_FILE = 50_000
PER_USER = 10


def write_events(folder: Path, size: int) -> None:
    lines: list[str] = []
    n_file = 0

    def flush() -> None:
        nonlocal n_file, lines
        (folder / f"collect-bench-{n_file:05d}.jsonl").write_text("".join(lines))
        n_file += 1
        lines = []

    for i in range(size):
        user = i // PER_USER
        lines.append(
            f'{{"type":"track","messageId":"m{i}","userId":"user-{user:07d}",'
            f'"anonymousId":"anon-{user:07d}","event":"product_viewed",'
            f'"properties":{{"sku":"sku-{i % 997}","price":{i % 50}.5}},'
            f'"context":{{"traits":{{"email":"user-{user:07d}@example.com"}},'
            f'"device":{{"id":"anon-{user:07d}"}}}},"timestamp":"2026-11-02T10:00:00Z",'
            f'"receivedAt":"2026-11-02T10:00:01Z","source":"web"}}\n'
        )
        if len(lines) == PER_FILE:
            flush()
    if lines:
        flush()


def inodes(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_ino, p.stat().st_size) for p in folder.glob("*.jsonl")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10_000_000, help="events landed")
    parser.add_argument("--people", type=int, default=100, help="people forgotten")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="forget-bench-"))
    try:
        paths = Paths(home=scratch, landing=scratch / "landing", duckdb=scratch / "none.duckdb")
        landing.ensure_layout(paths.landing)
        events = landing.table_dir(paths.landing, "segment", "events")
        write_events(events, args.size)
        landing_bytes = sum(p.stat().st_size for p in events.glob("*.jsonl"))

        started = time.perf_counter()  # the floor: every file read and written back, unparsed
        for path in sorted(events.glob("collect-*.jsonl")):
            landing.replace_file(path, path.read_bytes())  # as the forget pass writes a file
        floor = time.perf_counter() - started

        users = random.Random(7).sample(range(args.size // PER_USER), args.people)
        requests = [(Request("user_id", f"user-{u:07d}"), f"bench-{u}") for u in users]
        before = inodes(events)
        started = time.perf_counter()
        done = forget_many(paths, requests)
        seconds = time.perf_counter() - started
        after = inodes(events)
        replaced = [n for n, (ino, _) in after.items() if before.get(n, (None,))[0] != ino]
        removed = done[0].stores["landing:segment/events"]["rows_removed"]
        figures = {
            "forget_seconds": (f"{seconds:.3f}", "s"),
            "bytes_rewritten": (sum(after[n][1] for n in replaced), "bytes"),
            "files_rewritten": (len(replaced), "count"),
            "events_removed": (removed, "count"),
            "people_forgotten": (sum(d.complete for d in done), "count"),
            "floor_seconds": (f"{floor:.3f}", "s"),
            "forget_vs_floor": (f"{seconds / floor:.2f}", "x"),
            "seconds_per_person": (f"{seconds / args.people:.4f}", "s"),
            "landing_bytes": (landing_bytes, "bytes"),
        }
        for name, (value, unit) in figures.items():
            print(f"{name}={value} {unit}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
