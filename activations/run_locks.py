"""The locks a journey run holds, and the warehouse snapshot a partition's run reads.

A run holds its journey's lock (a second run of it waits, then starts from what this one did)
and, for a marketing journey, the lock all counted sends share (caps count across journeys).
With person partitions each lock is per partition, so runs of other partitions go on beside
it, and a run over everyone holds them all. Locks are always taken in one order (the journey's,
then the shared one; each by partition index), so no two runs wait on each other.

A merge can move a person's entries into another partition: they follow the id that holds the
merged identifiers now (dim_person_aliases). A partition's run therefore also holds the
partitions of every replaced id whose entries now follow one of its people, and reads one
snapshot of the warehouse throughout, pinned after its locks are held: a run still acting on the
old id, on an older snapshot, ends before this one starts, and its sends are in the ledger this
one reads (carried to the new id); a run that starts later pins a snapshot at least as new.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

from activations import transitions, warehouse
from activations.journeys import Journey
from activations.partitions import PersonPartition, lock_suffixes


@contextlib.contextmanager
def run_locks(
    landing_dir: Path,
    journey: Journey,
    partition: PersonPartition | None,
    count: int,
    source: warehouse.Source,
) -> Iterator[warehouse.Source]:
    """Hold the run's locks; yields the warehouse to read while they are held."""
    suffixes = lock_suffixes(partition, count)  # (a partition of another count is refused)
    if partition is None or count == 1:
        with _holding(landing_dir, journey, suffixes):
            yield source
        return
    held = {partition}
    while True:
        with contextlib.ExitStack() as stack:
            suffixes = [f".{p.key}" for p in sorted(held, key=lambda p: p.index)]
            stack.enter_context(_holding(landing_dir, journey, suffixes))
            pinned = stack.enter_context(_pinned(source))
            with warehouse.attached(pinned, [warehouse.ALIASES_MODEL]) as con:
                aliases, _ = warehouse.read_person_aliases(con)
            moved_in = {
                PersonPartition.of(alias, count)
                for alias, people in aliases.items()
                if people and partition.holds(people[0])
            }
            if moved_in <= held:
                yield pinned
                return
        held |= moved_in  # released above: taken again, all of them, in order


@contextlib.contextmanager
def _holding(landing_dir: Path, journey: Journey, suffixes: Sequence[str]) -> Iterator[None]:
    with contextlib.ExitStack() as locks:  # each handle closed, its lock released, at the end
        for suffix in suffixes:
            locks.enter_context(transitions.journey_lock(landing_dir, journey.name + suffix))
        if not journey.transactional:
            for suffix in suffixes:
                counted = transitions.COUNTED_SENDS_LOCK + suffix
                locks.enter_context(transitions.journey_lock(landing_dir, counted))
        yield


@contextlib.contextmanager
def _pinned(source: warehouse.Source) -> Iterator[warehouse.Source]:
    """The DuckDB file as it is now, for as long as the run reads it: a hard link, which keeps
    this version when publish renames a newer copy over the file. (Another engine's reads are
    not pinned: its tables are read as they are at each read.)"""
    if not isinstance(source, Path) or not source.exists():
        yield source
        return
    link = source.with_name(f".{source.stem}-run-{uuid.uuid4().hex[:12]}{source.suffix}")
    os.link(source, link)
    try:
        yield link
    finally:
        link.unlink(missing_ok=True)
