"""Readers are never locked out: the published copy of the warehouse answers read-only queries
from other processes, in a loop, while dbt holds the working file and while copies are swapped
in one after another; no reader ever sees an error, a torn file or an older copy again."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
import time
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from typing import Any

import duckdb
import pytest

from switchyard.publish import STAGING_PREFIX, publish, published_path
from switchyard.settings import Paths
from tests.dbt_helpers import dbt_build
from tests.scenario import Scenario, at


def read_loop(path: str, stop: EventType, out: Any) -> None:
    """A BI tool's queries in its own process, each on a fresh read-only connection: the people,
    a view over the landing files, and the generation stamp the test writes before a publish."""
    last = -1
    while not stop.is_set():
        try:
            with duckdb.connect(path, read_only=True) as con:
                (people,) = con.execute("select count(*) from dim_people").fetchone() or (0,)
                con.execute("select count(*) from int_user_consents_current").fetchall()
                (generation,) = con.execute("select max(g) from generation").fetchone() or (-1,)
            if generation < last:
                out.put(("error", f"went back from generation {last} to {generation}"))
            last = generation
            out.put(("seen", (people, generation)))
        except Exception as exc:  # any failure is the finding
            out.put(("error", repr(exc)))
        time.sleep(0.005)


def stamp(warehouse: Path, generation: int) -> None:
    """A run's write: the working file changes, then is closed (checkpointed)."""
    with duckdb.connect(str(warehouse)) as con:
        con.execute(f"create or replace table generation as select {generation} as g")


@pytest.mark.slow
def test_readers_in_other_processes_are_never_locked_out_or_torn(paths: Paths) -> None:
    first = Scenario(paths.landing)
    first.person("ann", email="ann@example.com", consent=("email",))
    first.cart(at(0), user_id="ann")
    first.land()
    dbt_build(paths, "+dim_people", "+int_user_consents_current")
    stamp(paths.duckdb, 0)
    done = publish(paths.duckdb)
    assert done.path == published_path(paths.duckdb) and done.method == "file copy"

    spawn = multiprocessing.get_context("spawn")
    stop, out = spawn.Event(), spawn.Queue()
    readers = [spawn.Process(target=read_loop, args=(str(done.path), stop, out)) for _ in range(2)]
    for reader in readers:
        reader.start()
    try:
        time.sleep(1.0)  # the readers are up
        second = Scenario(paths.landing)
        second.person("bo", email="bo@example.com", consent=("email",))
        second.cart(at(0), user_id="bo")
        second.land()
        # dbt holds the working file meanwhile: a reader there would fail to open it at all
        dbt_build(paths, "+dim_people", "+int_user_consents_current")
        for generation in range(1, 31):  # many swaps while the readers open and query
            stamp(paths.duckdb, generation)
            publish(paths.duckdb)
        time.sleep(0.5)
    finally:
        stop.set()
        for reader in readers:
            reader.join(timeout=30)
    found: list[tuple[str, Any]] = []
    while not out.empty():
        found.append(out.get())
    errors = [what for kind, what in found if kind == "error"]
    seen = [what for kind, what in found if kind == "seen"]
    assert errors == []
    assert len(seen) > 50
    assert {people for people, _ in seen} == {1, 2}
    assert (2, 30) in seen and len({g for _, g in seen}) > 3  # they saw copies come and go
    assert not list(done.path.parent.glob(f"{STAGING_PREFIX}*"))


def test_a_publish_killed_midway_leaves_nothing_the_next_does_not_clear(paths: Paths) -> None:
    Scenario(paths.landing).land()
    dbt_build(paths, "+dim_people")
    target = published_path(paths.duckdb)
    target.parent.mkdir(parents=True)
    (target.parent / f"{STAGING_PREFIX}dead.duckdb").write_bytes(b"half a copy")
    (target.parent / f"{STAGING_PREFIX}dead.duckdb.wal").write_bytes(b"")
    publish(paths.duckdb)
    assert sorted(p.name for p in target.parent.iterdir()) == [".publish.lock", target.name]
    # a writer that died with its write-ahead log pending: copied through DuckDB, which
    # replays the log (a byte copy of the file alone would miss the change)
    crash = (
        "import duckdb, os, sys; con = duckdb.connect(sys.argv[1]); "
        "con.execute('pragma disable_checkpoint_on_shutdown'); "
        "con.execute('set checkpoint_threshold = \\'1TB\\''); "
        "con.execute('create table late as select 7 as n'); os._exit(0)"
    )
    subprocess.run([sys.executable, "-c", crash, str(paths.duckdb)], check=True)
    assert Path(f"{paths.duckdb}.wal").exists()
    done = publish(paths.duckdb)
    assert done.method == "database copy"
    with duckdb.connect(str(done.path), read_only=True) as con:
        assert con.execute("select n from late").fetchall() == [(7,)]
