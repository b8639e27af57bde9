"""Readers are never locked out: the published copy of the warehouse answers read-only queries
in a loop while dbt holds the working file, and is swapped for the new one after each run."""

from __future__ import annotations

import threading
import time

import duckdb

from switchyard.publish import publish, published_path
from switchyard.settings import Paths
from tests.dbt_helpers import dbt_build
from tests.scenario import Scenario, at


def count(path: str) -> int:
    with duckdb.connect(path, read_only=True) as con:
        (row,) = con.execute("select count(*) from dim_people").fetchall()
        con.execute("select count(*) from int_user_consents_current").fetchall()  # a view
        return int(row[0])


def test_readers_query_the_published_copy_while_a_run_holds_the_warehouse(paths: Paths) -> None:
    first = Scenario(paths.landing)
    first.person("ann", email="ann@example.com", consent=("email",))
    first.cart(at(0), user_id="ann")
    first.land()
    dbt_build(paths, "+dim_people", "+int_user_consents_current")
    done = publish(paths.duckdb)
    assert done.path == published_path(paths.duckdb) and count(str(done.path)) == 1

    seen: list[int] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:  # a BI tool's queries, each on a fresh read-only connection
        while not stop.is_set():
            try:
                seen.append(count(str(done.path)))
            except BaseException as exc:  # noqa: BLE001 (any failure is the finding)
                errors.append(exc)
            time.sleep(0.01)

    second = Scenario(paths.landing)
    second.person("bo", email="bo@example.com", consent=("email",))
    second.cart(at(0), user_id="bo")
    second.land()
    thread = threading.Thread(target=reader)
    thread.start()
    try:
        # the working file, while dbt writes it, refuses a second process even read-only: the
        # reader above never touches it
        dbt_build(paths, "+dim_people", "+int_user_consents_current")
        publish(paths.duckdb)
        time.sleep(0.3)
    finally:
        stop.set()
        thread.join()
    assert errors == []
    assert len(seen) > 10 and set(seen) == {1, 2} and seen[-1] == 2
    assert seen == sorted(seen)  # never back to the old copy once the new one is in place
    assert not list(done.path.parent.glob("_publishing_*"))
