"""Syncs to Braze (activations/syncs) against the sandbox's Braze: changed rows only, removals,
the mass-removal guard, per-row rejections kept and retried, rate limits, lost answers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from activations.syncs import MassRemovalError, Sync, SyncDefinitionError, run_sync
from activations.syncs.braze import BrazeDestination
from activations.syncs.destination import DestinationAuthError, RequestWindow
from activations.syncs.declaration import load_syncs
from activations.syncs.results import glob
from sandbox import Sandbox
from sandbox.braze import RateWindow
from sandbox.credentials import SANDBOX_CREDENTIALS
from sandbox.server import Fault
from switchyard.settings import PROJECT_DIR

COLUMNS = {"person_id", "user_id", "email", "first_name", "segment"}
PEOPLE = Sync.from_meta(
    "people",
    {
        "name": "braze_people",
        "destination": "braze",
        "key": "user_id",
        "attributes": {"email": "email", "first_name": "first_name", "segment": "segment"},
    },
    COLUMNS,
)


class Warehouse:
    """A DuckDB file with one `people` table, changed between runs as dbt would."""

    def __init__(self, path: Path, people: int) -> None:
        self.path = path
        self.sql(
            "create table people as select 'p' || i as person_id, 'u' || i as user_id, "
            "'u' || i || '@example.com' as email, 'Name' || i as first_name, "
            f"'new' as segment from range({people}) t(i)"
        )

    def sql(self, statement: str) -> None:
        with duckdb.connect(str(self.path)) as con:
            con.execute(statement)


@pytest.fixture
def warehouse(tmp_path: Path) -> Warehouse:
    return Warehouse(tmp_path / "warehouse.duckdb", 200)


@pytest.fixture
def braze(sandbox: Sandbox) -> Iterator[BrazeDestination]:
    with BrazeDestination(sandbox.base_url, SANDBOX_CREDENTIALS.braze_api_key) as destination:
        yield destination


def landed(landing: Path) -> list[dict[str, object]]:
    with duckdb.connect() as con:
        return (
            con.sql(
                f"select * from read_parquet('{glob(landing)}', union_by_name = true) "
                "order by recorded_at, key"
            )
            .to_arrow_table()
            .to_pylist()
        )


def test_only_changes_are_sent(
    warehouse: Warehouse, braze: BrazeDestination, sandbox: Sandbox, tmp_path: Path
) -> None:
    landing = tmp_path / "landing"
    first = run_sync(PEOPLE, warehouse.path, landing, braze)
    assert (first.added, first.rows_sent, first.requests) == (200, 200, 3)  # 75 + 75 + 50
    assert sandbox.braze.largest_request == 75
    assert sandbox.braze.users["u7"] == {
        "email": "u7@example.com", "first_name": "Name7", "segment": "new",
    }  # fmt: skip

    again = run_sync(PEOPLE, warehouse.path, landing, braze)
    assert (again.rows_sent, again.requests, again.unchanged) == (0, 0, 200)

    warehouse.sql("update people set segment = 'loyal' where user_id = 'u7'")
    one = run_sync(PEOPLE, warehouse.path, landing, braze)
    assert (one.changed, one.added, one.rows_sent, one.requests) == (1, 0, 1, 1)
    assert sandbox.braze.users["u7"]["segment"] == "loyal"
    assert sandbox.braze.requests == 4
    # every row's outcome is landed: 200 first, then the one change
    assert [r["outcome"] for r in landed(landing)].count("synced") == 201


def test_removed_rows_are_unset_or_deleted(
    warehouse: Warehouse, braze: BrazeDestination, sandbox: Sandbox, tmp_path: Path
) -> None:
    landing = tmp_path / "landing"
    run_sync(PEOPLE, warehouse.path, landing, braze)
    warehouse.sql("delete from people where user_id in ('u1', 'u2')")
    removed = run_sync(PEOPLE, warehouse.path, landing, braze)
    assert (removed.removed, removed.rows_sent) == (2, 2)
    assert sandbox.braze.users["u1"] == {}  # attributes set to null: removed from the profile

    deleting = Sync.from_meta(
        "people",
        {"name": "braze_deleting", "destination": "braze", "key": "user_id",
         "attributes": {"email": "email"}, "on_remove": "delete"},
        COLUMNS,
    )  # fmt: skip
    run_sync(deleting, warehouse.path, landing, braze)
    warehouse.sql("delete from people where user_id = 'u3'")
    run_sync(deleting, warehouse.path, landing, braze)
    assert "u3" not in sandbox.braze.users and sandbox.braze.deleted == ["u3"]

    # Back in the model: added again, and sent.
    warehouse.sql("insert into people values ('p3', 'u3', 'u3@example.com', 'Name3', 'new')")
    back = run_sync(deleting, warehouse.path, landing, braze)
    assert (back.added, back.rows_sent) == (1, 1)
    assert sandbox.braze.users["u3"] == {"email": "u3@example.com"}


def test_audience_membership_is_an_attribute(
    warehouse: Warehouse, braze: BrazeDestination, sandbox: Sandbox, tmp_path: Path
) -> None:
    audience = Sync.from_meta(
        "people",
        {"name": "braze_new", "destination": "braze", "key": "user_id",
         "membership_attribute": "in_new_people"},
        COLUMNS,
    )  # fmt: skip
    warehouse.sql("create or replace view new_people as select * from people where segment = 'new'")
    audience = Sync(**{**audience.__dict__, "model": "new_people"})
    landing = tmp_path / "landing"
    assert run_sync(audience, warehouse.path, landing, braze).added == 200
    warehouse.sql("update people set segment = 'loyal' where user_id = 'u5'")
    left = run_sync(audience, warehouse.path, landing, braze)
    assert (left.removed, left.rows_sent) == (1, 1)
    assert sandbox.braze.users["u5"] == {"in_new_people": False}
    assert sandbox.braze.users["u6"] == {"in_new_people": True}


def test_mass_removal_stops_until_confirmed(
    warehouse: Warehouse, braze: BrazeDestination, sandbox: Sandbox, tmp_path: Path
) -> None:
    landing = tmp_path / "landing"
    run_sync(PEOPLE, warehouse.path, landing, braze)
    requests = sandbox.braze.requests
    warehouse.sql("delete from people")  # an upstream model that came back empty
    with pytest.raises(MassRemovalError, match=r"remove 200 of the 200 rows .*--confirm-removals"):
        run_sync(PEOPLE, warehouse.path, landing, braze)
    assert sandbox.braze.requests == requests and len(landed(landing)) == 200  # nothing sent
    # Below the share, removals go through without asking.
    warehouse.sql(
        "insert into people select 'p' || i, 'u' || i, 'u' || i || '@example.com', "
        "'Name' || i, 'new' from range(160) t(i)"
    )
    assert run_sync(PEOPLE, warehouse.path, landing, braze).removed == 40
    warehouse.sql("delete from people")
    confirmed = run_sync(PEOPLE, warehouse.path, landing, braze, confirm_removals=True)
    assert confirmed.removed == 160 and sandbox.braze.users["u0"] == {}


def test_rejected_rows_are_kept_retried_then_held(
    warehouse: Warehouse, braze: BrazeDestination, sandbox: Sandbox, tmp_path: Path
) -> None:
    landing = tmp_path / "landing"
    warehouse.sql("update people set email = 'not-an-address' where user_id = 'u9'")
    first = run_sync(PEOPLE, warehouse.path, landing, braze)
    assert (first.rejected, first.added) == (1, 200)
    assert "u9" not in sandbox.braze.users and "u8" in sandbox.braze.users
    (row,) = [r for r in landed(landing) if r["key"] == "u9"]
    assert row["outcome"] == "rejected" and "Invalid email address" in str(row["reason"])

    # Tried again on the next runs, up to max_attempts (3), then held with the reason.
    second = run_sync(PEOPLE, warehouse.path, landing, braze)
    third = run_sync(PEOPLE, warehouse.path, landing, braze)
    fourth = run_sync(PEOPLE, warehouse.path, landing, braze)
    assert (second.rows_sent, second.rejected) == (1, 1)
    assert (third.rows_sent, third.gave_up) == (1, 1)
    assert (fourth.rows_sent, fourth.held) == (0, 1)
    attempts = [(r["attempt"], r["outcome"]) for r in landed(landing) if r["key"] == "u9"]
    assert attempts == [(1, "rejected"), (2, "rejected"), (3, "gave_up")]

    # Fixed upstream: sent again, and acknowledged.
    warehouse.sql("update people set email = 'u9@example.com' where user_id = 'u9'")
    fixed = run_sync(PEOPLE, warehouse.path, landing, braze)
    assert (fixed.added, fixed.rows_sent, fixed.rejected) == (1, 1, 0)
    assert sandbox.braze.users["u9"]["email"] == "u9@example.com"


def test_duplicate_and_missing_keys_are_not_sent(
    warehouse: Warehouse, braze: BrazeDestination, sandbox: Sandbox, tmp_path: Path
) -> None:
    warehouse.sql("insert into people values ('p1b', 'u1', 'other@example.com', 'Other', 'new')")
    warehouse.sql("insert into people values ('p-anon', null, null, null, 'new')")
    landing = tmp_path / "landing"
    summary = run_sync(PEOPLE, warehouse.path, landing, braze)
    assert (summary.added, summary.duplicates, summary.null_keys) == (199, 1, 1)
    assert "u1" not in sandbox.braze.users
    (row,) = [r for r in landed(landing) if r["key"] == "u1"]
    assert row["outcome"] == "rejected" and "appears 2 times" in str(row["reason"])


def test_rate_limit_is_never_exceeded(
    warehouse: Warehouse, sandbox: Sandbox, tmp_path: Path
) -> None:
    # The sandbox allows 4 requests a second; 200 rows are 3 requests a run, 6 runs' worth of
    # changes are 18 requests: more than four windows' worth, sent without one 429.
    sandbox.braze.window = RateWindow(limit=4, seconds=1.0)
    window = RequestWindow(4, 1.0)
    landing = tmp_path / "landing"
    with BrazeDestination(
        sandbox.base_url, SANDBOX_CREDENTIALS.braze_api_key, window, concurrency=4
    ) as braze:
        for n in range(6):
            warehouse.sql(f"update people set segment = 's{n}'")
            assert run_sync(PEOPLE, warehouse.path, landing, braze).requests == 3
    assert sandbox.braze.requests == 18 and sandbox.braze.rate_limited == 0


def test_a_429_is_retried_and_a_lost_answer_sent_again(
    warehouse: Warehouse, braze: BrazeDestination, sandbox: Sandbox, tmp_path: Path
) -> None:
    landing = tmp_path / "landing"
    sandbox.fail_next(Fault("braze", 429, retry_after=0))
    sandbox.fail_next(Fault("braze", lose_response=True))  # processed, then no answer
    summary = run_sync(PEOPLE, warehouse.path, landing, braze)
    # Setting attributes is idempotent: both were sent again, every row synced once in the end
    assert (summary.added, summary.failed, summary.rejected) == (200, 0, 0)
    assert summary.requests == 4 and len(sandbox.braze.users) == 200

    # A destination down past every retry: rows failed, sent again on the next run.
    warehouse.sql("update people set segment = 'loyal' where user_id = 'u1'")
    sandbox.fail_next(Fault("braze", 503, count=5))
    down = run_sync(PEOPLE, warehouse.path, landing, braze)
    assert (down.failed, sandbox.braze.users["u1"]["segment"]) == (1, "new")
    up = run_sync(PEOPLE, warehouse.path, landing, braze)
    assert (up.changed, up.failed, sandbox.braze.users["u1"]["segment"]) == (1, 0, "loyal")


def test_wrong_credentials_stop_the_run(
    warehouse: Warehouse, sandbox: Sandbox, tmp_path: Path
) -> None:
    with (
        BrazeDestination(sandbox.base_url, "wrong-key") as braze,
        pytest.raises(DestinationAuthError, match="SWITCHYARD_BRAZE_API_KEY"),
    ):
        run_sync(PEOPLE, warehouse.path, tmp_path / "landing", braze)


BRAZE = {"name": "x", "destination": "braze"}
EMAIL = {**BRAZE, "attributes": {"a": "email"}}


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        ({"destination": "braze"}, "needs a `name`"),
        ({**EMAIL, "destination": "hubspot"}, "not one of"),
        ({**BRAZE, "attributes": {"a": "nope"}}, r"\['nope'\]"),
        (BRAZE, "either `attributes`"),
        ({**BRAZE, "membership_attribute": "m", "on_remove": "delete"}, "never deletes"),
        ({**EMAIL, "tier": "weeks"}, "tier"),
        ({**EMAIL, "batch": 5}, "unknown keys"),
        ({**EMAIL, "max_removal_share": 0}, "max_removal_share"),
    ],
)
def test_declarations_are_checked(meta: dict[str, object], message: str) -> None:
    with pytest.raises(SyncDefinitionError, match=message):
        Sync.from_meta("people", meta, COLUMNS)


def test_the_project_declares_its_syncs() -> None:
    syncs = {s.name: s for s in load_syncs(PROJECT_DIR / "target" / "manifest.json")}
    assert syncs["braze_people"].model == "dim_people"
    assert syncs["braze_lapsed_audience"].membership_attribute == "in_lapsed_audience"
    assert json.loads(json.dumps(syncs["braze_people"].attributes))  # plain data
