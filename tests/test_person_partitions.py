"""Activations split by person (activations/partitions.py): each person in exactly one
partition, the same on every engine's SQL as in Python, and partitions of two journeys running
all at once sending every due key once while the global frequency cap holds across them
(real run_journey calls in threads, a real DuckDB file, the sandbox answering slowly)."""

from __future__ import annotations

import fcntl
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import duckdb
import pytest

import activations.run as run_module
from activations.channels import ChannelSettings, Sender
from activations.partitions import (
    PersonPartition,
    all_partitions,
    configured_count,
    lock_suffixes,
)
from activations.run import RunSummary, run_journey
from activations.run_locks import run_locks
from sandbox import Fault, Sandbox
from switchyard import landing
from tests.test_overlapping_runs import T, build_warehouse, journey

PEOPLE = [f"p{i}" for i in range(12)]


@pytest.mark.parametrize("count", [1, 2, 3, 7, 16])
def test_every_person_is_in_exactly_one_partition_in_python_and_in_sql(count: int) -> None:
    ids = [f"p_{i:05d}" for i in range(2000)] + ["", "ünïcode-id"]
    parts = all_partitions(count)
    owners = [[p.index for p in parts if p.holds(i)] for i in ids]
    assert all(len(o) == 1 for o in owners)
    if count > 1:  # the hash spreads people: no partition empty, none holding most
        sizes = Counter(o[0] for o in owners)
        assert len(sizes) == count and max(sizes.values()) < 2 * len(ids) / count
    con = duckdb.connect()
    con.execute("create table people as select unnest(?) as person_id", [ids])
    for p in parts:
        where = p.sql("person_id")
        got = [i for (i,) in con.execute(f"select person_id from people where {where}").fetchall()]
        assert sorted(got) == sorted(i for i, o in zip(ids, owners, strict=True) if o == [p.index])


def test_partition_keys_settings_and_locks() -> None:
    p = PersonPartition(2, 8)
    assert p.key == "persons-3-of-8" and PersonPartition.from_key(p.key) == p
    assert p.bounds == ("40000000", "60000000")  # a quarter to three eighths of the hash
    assert PersonPartition(7, 8).bounds == ("e0000000", None)
    for bad in ["persons-0-of-8", "persons-9-of-8", "p3"]:
        with pytest.raises(ValueError):
            PersonPartition.from_key(bad)
    assert configured_count({}) == 1
    assert configured_count({"SWITCHYARD_PERSON_PARTITIONS": "4"}) == 4
    with pytest.raises(ValueError, match="SWITCHYARD_PERSON_PARTITIONS='four'"):
        configured_count({"SWITCHYARD_PERSON_PARTITIONS": "four"})
    # a partition's run holds its own locks; a run over everyone holds them all
    assert lock_suffixes(p, 8) == [".persons-3-of-8"]
    assert lock_suffixes(None, 3) == [f".persons-{k}-of-3" for k in (1, 2, 3)]
    assert lock_suffixes(None, 1) == [""] == lock_suffixes(PersonPartition(0, 1), 1)
    with pytest.raises(ValueError, match="does not match"):
        lock_suffixes(p, 4)


def test_partitions_of_two_journeys_at_once_send_each_key_once_and_keep_the_cap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tests.test_overlapping_runs as overlapping

    monkeypatch.setattr(overlapping, "PEOPLE", len(PEOPLE))
    landing.ensure_layout(tmp_path / "landing")
    journeys = [journey("cart"), journey("welcome")]
    duckdb_path = tmp_path / "warehouse.duckdb"
    build_warehouse(duckdb_path, journeys)
    count = 3
    runs: list[tuple[str, PersonPartition, RunSummary]] = []
    errors: list[BaseException] = []
    with Sandbox() as sandbox:
        # every text answered late: the partitions' runs are all in flight together
        sandbox.fail_next(Fault("twilio", count=2 * len(PEOPLE), delay_seconds=0.5))

        def one(name: str, partition: PersonPartition) -> None:
            j = next(j for j in journeys if j.name == name)
            try:
                clients = ChannelSettings.for_sandbox(sandbox.base_url).clients()
                summary = run_journey(
                    j, duckdb_path=duckdb_path, landing_dir=tmp_path / "landing",
                    clients=clients, now=T, partition=partition, partition_count=count,
                )  # fmt: skip
                runs.append((name, partition, summary))
            except BaseException as exc:  # reported below, not lost in the thread
                errors.append(exc)

        threads = [
            threading.Thread(target=one, args=(j.name, p))
            for p in all_partitions(count)
            for j in journeys
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not errors, errors
        texts = Counter(r.recipient for r in sandbox.received)
        keys = Counter(r.send_key for r in sandbox.received)
    assert len(runs) == 2 * count
    # every person texted once: one journey's step sent, the other's capped (1 per 24 h)
    assert texts == Counter({f"+1415555{i:04d}": 1 for i in range(len(PEOPLE))})
    assert all(n == 1 for n in keys.values())
    sent = sum(sum(s.sent.values()) for _, _, s in runs)
    capped = sum(s.deferred["capped"] for _, _, s in runs)
    assert (sent, capped) == (len(PEOPLE), len(PEOPLE))
    # each run decided for its own partition's people only (another partition's keys in flight
    # are not its to settle: it neither looks them up nor records them)
    for _, partition, summary in runs:
        mine = [p for p in PEOPLE if partition.holds(p)]
        assert sum(summary.sent.values()) + summary.deferred["capped"] == len(mine)


def test_a_partitions_run_also_holds_the_partitions_its_merged_ids_came_from(
    tmp_path: Path,
) -> None:
    """Entries recorded under an id since merged away follow the id that holds its identifiers
    now, into that id's partition: its run holds the old id's partition too (a run acting on
    the old id, on an older snapshot, is over first), and reads one pinned snapshot."""
    count = 4
    new = "p1"
    old = next(f"old{i}" for i in range(100) if not PersonPartition.of(f"old{i}", count).holds(new))
    mine, theirs = PersonPartition.of(new, count), PersonPartition.of(old, count)
    landing_dir = tmp_path / "landing"
    landing.ensure_layout(landing_dir)
    j = journey("cart")
    path = tmp_path / "warehouse.duckdb"
    build_warehouse(path, [j])
    con = duckdb.connect(str(path))
    con.execute("insert into dim_person_aliases values (?, ?, now(), true)", [old, new])
    con.close()
    locks = landing_dir / "journeys" / "locks"

    def held(name: str) -> bool:
        with (locks / f"{name}.lock").open("ab") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
            return False

    with run_locks(landing_dir, j, mine, count, path) as pinned:
        assert held(f"cart.{mine.key}") and held(f"cart.{theirs.key}")
        assert held(f"_counted_sends.{theirs.key}")
        others = [p for p in all_partitions(count) if p not in (mine, theirs)]
        assert not any(held(f"cart.{p.key}") for p in others)
        # a newer copy published over the file: the run still reads the one it pinned
        assert isinstance(pinned, Path) and pinned != path
        newer = tmp_path / "newer.duckdb"
        duckdb.connect(str(newer)).close()
        newer.replace(path)
        (aliases,) = duckdb.connect(str(pinned), read_only=True).execute(
            "select count(*) from dim_person_aliases"
        ).fetchone() or (0,)
        assert aliases == 1
    assert not pinned.exists() and not held(f"cart.{theirs.key}")
    # without the merge, only its own partition
    plain = tmp_path / "plain.duckdb"
    build_warehouse(plain, [j])
    with run_locks(landing_dir, j, theirs, count, plain):
        assert held(f"cart.{theirs.key}") and not held(f"cart.{mine.key}")


def test_a_partitions_run_goes_on_while_another_partition_is_running(tmp_path: Path) -> None:
    """Runs of different partitions never wait on each other: with partition 1's locks held (as
    by its run, mid-send), partitions 2 and 3 run to the end and send to their people."""
    landing_dir = tmp_path / "landing"
    landing.ensure_layout(landing_dir)
    j = journey("cart")
    path = tmp_path / "warehouse.duckdb"
    build_warehouse(path, [j])
    first, *others = all_partitions(3)
    finished: list[RunSummary] = []
    with Sandbox() as sandbox, run_locks(landing_dir, j, first, 3, path):
        clients = ChannelSettings.for_sandbox(sandbox.base_url).clients()

        def rest() -> None:
            for p in others:
                finished.append(
                    run_journey(j, duckdb_path=path, landing_dir=landing_dir, clients=clients,
                                now=T, partition=p, partition_count=3)
                )  # fmt: skip

        worker = threading.Thread(target=rest, daemon=True)
        worker.start()
        worker.join(timeout=60)  # a hang guard: they wait on nothing partition 1 holds
        assert not worker.is_alive(), "partitions 2 and 3 waited on partition 1's locks"
        texted = {r.recipient for r in sandbox.received}
    theirs = [i for i, p in enumerate(PEOPLE[:3]) if not first.holds(p)]
    assert theirs  # someone outside partition 1 to send to
    assert texted == {f"+1415555{i:04d}" for i in theirs}
    assert len(finished) == 2


def test_a_partitions_run_takes_its_share_of_each_rate_limit_and_of_concurrency_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every partition's run sends at once: together they keep to a provider's rate limit and to
    # the requests in flight set for it; the sender's own default is each partition's.
    made: list[Sender] = []

    class Recorded(Sender):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(run_module, "Sender", Recorded)
    landing.ensure_layout(tmp_path / "landing")
    j = journey("cart")
    path = tmp_path / "warehouse.duckdb"
    build_warehouse(path, [j])
    with Sandbox() as sandbox:
        clients = ChannelSettings.for_sandbox(sandbox.base_url).clients()
        for partition in (None, *all_partitions(4)):
            run_journey(j, duckdb_path=path, landing_dir=tmp_path / "landing", clients=clients,
                        now=T, partition=partition, partition_count=4,
                        rate_limits={"sms": 100.0},
                        concurrency={"sms": 10, "email": 3})  # fmt: skip
    whole, *parts = made
    assert whole.limits["sms"].per_second == 100.0
    assert whole.concurrency == {"sms": 10, "email": 3}
    assert [p.limits["sms"].per_second for p in parts] == [25.0] * 4
    assert [p.concurrency["sms"] for p in parts] == [3, 3, 2, 2]  # ten in flight in all
    assert [p.concurrency["email"] for p in parts] == [1, 1, 1, 1]  # at least one each
    assert all("push" not in p.concurrency for p in parts)  # the default: each its own
