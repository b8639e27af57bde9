"""Syncs to Braze (activations/syncs) against the sandbox's Braze: changed rows only, removals,
the mass-removal guard, per-row rejections kept and retried, rate limits, lost answers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import duckdb
import httpx
import pytest

from activations.syncs import (
    MassRemovalError,
    Sync,
    SyncDefinitionError,
    SyncLockedError,
    results,
    run_sync,
)
from activations.syncs import iterable as iterable_sync
from activations.syncs import run as sync_run
from activations.syncs.airship import ACCEPT, TAG_GROUP, TAGS_PATH, AirshipDestination
from activations.syncs.braze import DELETE_PATH, SUBSCRIPTION_PATH, BrazeDestination
from activations.syncs.customerio import (
    MAX_BATCH_BYTES,
    CustomerIoDestination,
    event_ulid,
    pack,
)
from activations.syncs.declaration import load_syncs, model_tier
from activations.syncs.destination import DestinationAuthError, HttpDestination, RequestWindow
from activations.syncs.iterable import IterableDestination
from activations.syncs.results import glob
from sandbox import Sandbox
from sandbox.credentials import SANDBOX_CREDENTIALS
from sandbox.platforms import RateWindow
from sandbox.server import Fault
from switchyard.settings import PROJECT_DIR, Paths
from tests.dbt_helpers import dbt_build, query

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


def test_a_braze_audience_can_be_a_subscription_group(
    warehouse: Warehouse, braze: BrazeDestination, sandbox: Sandbox, tmp_path: Path
) -> None:
    def group_sync(group: str) -> Sync:
        meta = {"name": "braze_sg", "destination": "braze", "key": "user_id",
                "subscription_group": group}  # fmt: skip
        return Sync.from_meta("people", meta, COLUMNS)

    landing = tmp_path / "landing"
    joined = run_sync(group_sync("sg-lapsed"), warehouse.path, landing, braze)
    assert (joined.added, joined.requests) == (200, 4)  # 50 external ids a request
    assert len(sandbox.braze.subscriptions["sg-lapsed"]) == 200
    warehouse.sql("delete from people where user_id = 'u5'")
    left = run_sync(group_sync("sg-lapsed"), warehouse.path, landing, braze)
    assert (left.removed, left.rows_sent) == (1, 1)
    assert "u5" not in sandbox.braze.subscriptions["sg-lapsed"]
    unknown = run_sync(group_sync("sg-nope"), warehouse.path, tmp_path / "other", braze)
    assert unknown.rejected == 199
    (reason,) = {r["reason"] for r in landed(tmp_path / "other")}
    assert "Invalid subscription group id" in str(reason)
    with pytest.raises(SyncDefinitionError, match="subscription_group"):
        Sync.from_meta("people", {**EMAIL, "attributes": {}, "destination": "iterable",
                                  "subscription_group": "sg"}, COLUMNS)  # fmt: skip


def test_an_audience_that_keeps_its_members_sends_no_removals(
    warehouse: Warehouse, braze: BrazeDestination, sandbox: Sandbox, tmp_path: Path
) -> None:
    keeping = Sync.from_meta(
        "people",
        {"name": "braze_ever", "destination": "braze", "key": "user_id",
         "membership_attribute": "was_new", "on_remove": "keep"},
        COLUMNS,
    )  # fmt: skip
    landing = tmp_path / "landing"
    run_sync(keeping, warehouse.path, landing, braze)
    warehouse.sql("delete from people")  # nothing leaves the destination: no guard to pass
    kept = run_sync(keeping, warehouse.path, landing, braze)
    assert (kept.removed, kept.rows_sent) == (200, 0)
    assert sandbox.braze.users["u5"] == {"was_new": True}


def test_a_second_run_of_a_sync_waits_for_the_first(
    warehouse: Warehouse, braze: BrazeDestination, tmp_path: Path
) -> None:
    landing = tmp_path / "landing"
    with (
        sync_run._lock(landing, PEOPLE.name),
        pytest.raises(SyncLockedError, match="another run of sync 'braze_people'"),
        sync_run._lock(landing, PEOPLE.name, wait_seconds=0.3),
    ):
        pass
    with sync_run._lock(landing, PEOPLE.name, wait_seconds=0.3):
        pass  # free once the first is done


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


def test_landed_chunks_hold_whole_requests(
    warehouse: Warehouse, braze: BrazeDestination, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sync_run, "CHUNK", 100)  # rounded up to 150: two full requests of 75
    summary = run_sync(PEOPLE, warehouse.path, tmp_path / "landing", braze)
    assert (summary.rows_sent, summary.requests) == (200, 3)  # 75 + 75 | 50
    files = list((tmp_path / "landing" / "syncs" / "results").glob("run-*.parquet"))
    assert len(files) == 2


def test_a_live_key_that_becomes_duplicated_is_kept_not_removed(
    warehouse: Warehouse, braze: BrazeDestination, sandbox: Sandbox, tmp_path: Path
) -> None:
    landing = tmp_path / "landing"
    run_sync(PEOPLE, warehouse.path, landing, braze)
    warehouse.sql("insert into people values ('p1b', 'u1', 'other@example.com', 'Other', 'new')")
    warehouse.sql("update people set segment = 'loyal' where person_id = 'p1'")  # both differ
    for _ in range(4):  # more runs than max_attempts: a duplicate is not a try of the row
        summary = run_sync(PEOPLE, warehouse.path, landing, braze)
        assert (summary.removed, summary.rows_sent, summary.duplicates) == (0, 0, 1)
    assert sandbox.braze.users["u1"]["email"] == "u1@example.com"  # as last acknowledged
    # Once the model is fixed, the row is sent as a first try.
    warehouse.sql("delete from people where person_id = 'p1b'")
    warehouse.sql("update people set first_name = 'Renamed' where user_id = 'u1'")
    fixed = run_sync(PEOPLE, warehouse.path, landing, braze)
    assert (fixed.changed, fixed.rows_sent) == (1, 1)
    (last,) = [r for r in landed(landing) if r["key"] == "u1" and r["run_id"] == fixed.run_id]
    assert (last["outcome"], last["attempt"]) == ("synced", 1)


def test_a_held_row_stays_held_through_a_spell_as_a_duplicate(
    warehouse: Warehouse, braze: BrazeDestination, sandbox: Sandbox, tmp_path: Path
) -> None:
    landing = tmp_path / "landing"
    warehouse.sql("update people set email = 'not-an-address' where user_id = 'u9'")
    for _ in range(3):  # refused max_attempts times: held
        run_sync(PEOPLE, warehouse.path, landing, braze)
    warehouse.sql("insert into people values ('p9b', 'u9', 'x@example.com', 'Other', 'new')")
    spell = run_sync(PEOPLE, warehouse.path, landing, braze)
    assert (spell.duplicates, spell.rows_sent) == (1, 0)
    # The copy goes; the row is the version that was given up on, and a duplicate's rejection
    # (nothing sent) is no try of it: still held, not sent.
    warehouse.sql("delete from people where person_id = 'p9b'")
    requests = sandbox.braze.requests
    after = run_sync(PEOPLE, warehouse.path, landing, braze)
    assert (after.held, after.rows_sent, sandbox.braze.requests) == (1, 0, requests)


def test_a_rejected_row_that_changes_starts_its_count_again(
    warehouse: Warehouse, braze: BrazeDestination, tmp_path: Path
) -> None:
    landing = tmp_path / "landing"
    warehouse.sql("update people set email = 'not-an-address' where user_id = 'u9'")
    run_sync(PEOPLE, warehouse.path, landing, braze)
    run_sync(PEOPLE, warehouse.path, landing, braze)
    warehouse.sql("update people set email = 'still-not-an-address' where user_id = 'u9'")
    changed = run_sync(PEOPLE, warehouse.path, landing, braze)
    assert (changed.rejected, changed.gave_up) == (1, 0)
    attempts = [r["attempt"] for r in landed(landing) if r["key"] == "u9"]
    assert attempts == [1, 2, 1]


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


def test_braze_deletes_and_subscriptions_keep_windows_of_their_own(
    warehouse: Warehouse, sandbox: Sandbox, tmp_path: Path
) -> None:
    # Two a second on each of those endpoints, at the sandbox and here; /users/track's window
    # is wide. 200 ids are 4 requests of 50 on each: several windows, not one 429.
    for path in (DELETE_PATH, SUBSCRIPTION_PATH):
        sandbox.braze.endpoint_windows[path] = RateWindow(limit=2, seconds=1.0)
    narrow = {"delete_window": RequestWindow(2, 1.0), "subscription_window": RequestWindow(2, 1.0)}
    deleting = Sync.from_meta(
        "people",
        {"name": "braze_deleting", "destination": "braze", "key": "user_id",
         "attributes": {"email": "email"}, "on_remove": "delete", "max_removal_share": 1.0},
        COLUMNS,
    )  # fmt: skip
    group = Sync.from_meta(
        "people",
        {"name": "braze_sg", "destination": "braze", "key": "user_id",
         "subscription_group": "sg-lapsed"},
        COLUMNS,
    )  # fmt: skip
    landing = tmp_path / "landing"
    with BrazeDestination(sandbox.base_url, SANDBOX_CREDENTIALS.braze_api_key, **narrow) as braze:
        assert run_sync(group, warehouse.path, landing, braze).requests == 4
        run_sync(deleting, warehouse.path, landing, braze)
        warehouse.sql("delete from people")
        assert run_sync(deleting, warehouse.path, landing, braze).requests == 4
    assert len(sandbox.braze.deleted) == 200 and sandbox.braze.rate_limited == 0


@pytest.mark.parametrize("name", ["customerio", "airship"])  # Iterable's: below
def test_every_platforms_rate_limit_is_kept(
    name: str, warehouse: Warehouse, sandbox: Sandbox, tmp_path: Path
) -> None:
    # 12 people, attributes: Airship takes one named user a request (12 a run), the others
    # one request a run; three runs cross several of the sandbox's 3-a-second windows.
    getattr(sandbox, name).window = RateWindow(limit=3, seconds=1.0)
    warehouse.sql("delete from people where cast(substr(user_id, 2) as int) >= 12")
    meta = {**BRAZE, "destination": name, "key": "user_id", "attributes": {"seg": "segment"}}
    sync, landing = Sync.from_meta("people", meta, COLUMNS), tmp_path / "landing"
    with platform(sandbox, name, RequestWindow(3, 1.0)) as destination:
        for n in range(3 if name == "airship" else 7):
            warehouse.sql(f"update people set segment = 's{n}'")
            assert run_sync(sync, warehouse.path, landing, destination).rejected == 0
    store = getattr(sandbox, name)
    assert store.requests > 6 and store.rate_limited == 0


def test_airship_asks_to_wait_when_its_window_is_full(sandbox: Sandbox) -> None:
    sandbox.airship.window = RateWindow(limit=1, seconds=60.0)
    headers = {"Authorization": f"Bearer {SANDBOX_CREDENTIALS.airship_token}", "Accept": ACCEPT}
    body = {"audience": {"named_user_id": ["u1"]}, "add": {TAG_GROUP: ["x"]}}
    first = httpx.post(f"{sandbox.base_url}{TAGS_PATH}", json=body, headers=headers)
    second = httpx.post(f"{sandbox.base_url}{TAGS_PATH}", json=body, headers=headers)
    assert (first.status_code, second.status_code) == (200, 429)
    assert 1 <= int(second.headers["retry-after"]) <= 60


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


def test_a_sync_runs_on_the_tier_its_model_updates_on_unless_it_names_one() -> None:
    def model(name: str, tier: str | None = None) -> dict[str, object]:
        meta = {"journey": {"tier": tier}} if tier else {}
        return {"unique_id": f"model.p.{name}", "config": {"meta": meta}}

    manifest = {
        "nodes": {n["unique_id"]: n for n in (
            model("people"), model("audience_cart", "seconds"), model("audience_lapsed", "days"),
            model("orders"), model("lonely"),
        )},
        "child_map": {
            "model.p.people": ["model.p.audience_cart", "model.p.audience_lapsed"],
            "model.p.orders": ["model.p.audience_lapsed"],
        },
    }  # fmt: skip
    assert model_tier(manifest, "model.p.people") == "seconds"  # the fastest reader
    assert model_tier(manifest, "model.p.orders") == "days"
    assert model_tier(manifest, "model.p.lonely") == "hours"
    named = Sync.from_meta("people", {**EMAIL, "tier": "days"}, COLUMNS, "seconds")
    derived = Sync.from_meta("people", EMAIL, COLUMNS, "seconds")
    assert (named.tier, derived.tier) == ("days", "seconds")


def test_the_project_declares_its_syncs() -> None:
    syncs = {s.name: s for s in load_syncs(PROJECT_DIR / "target" / "manifest.json")}
    assert syncs["braze_people"].model == "dim_people"
    assert syncs["braze_lapsed_audience"].membership_attribute == "in_lapsed_audience"
    assert json.loads(json.dumps(syncs["braze_people"].attributes))  # plain data


# -- Customer.io and Iterable ---------------------------------------------------------------


def platform(sandbox: Sandbox, name: str, window: RequestWindow | None = None) -> HttpDestination:
    c, url = SANDBOX_CREDENTIALS, sandbox.base_url
    if name == "customerio":
        return CustomerIoDestination(url, c.customerio_site_id, c.customerio_api_key, window)
    if name == "iterable":
        return IterableDestination(url, c.iterable_api_key, window)
    if name == "airship":
        return AirshipDestination(url, c.airship_token, window)
    return BrazeDestination(url, c.braze_api_key, window)


def profiles(sandbox: Sandbox, name: str) -> dict[str, dict[str, object]]:
    return {
        "braze": sandbox.braze.users, "customerio": sandbox.customerio.people,
        "iterable": sandbox.iterable.users, "airship": sandbox.airship.users,
    }[name]  # fmt: skip


@pytest.mark.parametrize("name", ["braze", "customerio", "iterable", "airship"])
def test_every_platform_gets_changes_and_removals(
    name: str, warehouse: Warehouse, sandbox: Sandbox, tmp_path: Path
) -> None:
    # Airship's API cannot delete a named user: its removals clear the synced attributes
    removal = "unset" if name == "airship" else "delete"
    sync = Sync(**{**PEOPLE.__dict__, "destination": name, "on_remove": removal})
    landing = tmp_path / "landing"
    with platform(sandbox, name) as destination:
        assert run_sync(sync, warehouse.path, landing, destination).added == 200
        assert profiles(sandbox, name)["u4"] == {
            "email": "u4@example.com", "first_name": "Name4", "segment": "new",
        }  # fmt: skip
        assert run_sync(sync, warehouse.path, landing, destination).rows_sent == 0
        warehouse.sql("update people set segment = 'loyal' where user_id = 'u4'")
        warehouse.sql("delete from people where user_id = 'u5'")
        summary = run_sync(sync, warehouse.path, landing, destination)
    assert (summary.changed, summary.removed, summary.rows_sent) == (1, 1, 2)
    assert profiles(sandbox, name)["u4"]["segment"] == "loyal"
    assert profiles(sandbox, name).get("u5", {}) == {}


def test_customerio_batches_by_size_and_rejects_per_entry(
    warehouse: Warehouse, sandbox: Sandbox, tmp_path: Path
) -> None:
    # One row's value is over Customer.io's 1,000-byte limit on an attribute: that entry alone
    # is refused (a 207 naming its batch_index), the rest of the batch is applied.
    warehouse.sql("update people set first_name = repeat('x', 900)")
    warehouse.sql("update people set segment = repeat('y', 3000) where user_id = 'u3'")
    sync = Sync(**{**PEOPLE.__dict__, "destination": "customerio"})
    with platform(sandbox, "customerio") as destination:
        summary = run_sync(sync, warehouse.path, tmp_path / "landing", destination)
    assert (summary.added, summary.rejected) == (200, 1)
    assert summary.requests >= 1 and "u3" not in sandbox.customerio.people
    (row,) = [r for r in landed(tmp_path / "landing") if r["key"] == "u3"]
    assert "at most 1000 bytes" in str(row["reason"]) and "attributes.segment" in str(row["reason"])


def test_customerio_packs_requests_under_500_kb() -> None:
    entries = [{"type": "person", "identifiers": {"id": f"u{i}"}, "attributes": {"a": "z" * 900}}
               for i in range(2000)]  # fmt: skip
    batches = pack(entries)
    assert len(batches) > 1 and sum(len(b) for b in batches) == 2000
    for batch in batches:
        assert len(json.dumps({"batch": batch}, separators=(",", ":")).encode()) <= MAX_BATCH_BYTES


def test_iterable_audience_is_a_static_list(
    warehouse: Warehouse, sandbox: Sandbox, tmp_path: Path
) -> None:
    warehouse.sql("insert into people values ('p-long', '" + "l" * 60 + "', null, null, 'new')")
    audience = Sync.from_meta(
        "people", {"name": "it_new", "destination": "iterable", "key": "user_id", "list_id": 42},
        COLUMNS,
    )  # fmt: skip
    landing = tmp_path / "landing"
    with platform(sandbox, "iterable") as destination:
        first = run_sync(audience, warehouse.path, landing, destination)
        assert (first.added, first.rejected) == (201, 1)  # a userId over 52 characters
        assert (
            sandbox.iterable.lists[42] >= {"u0", "u199"} and len(sandbox.iterable.lists[42]) == 200
        )
        warehouse.sql("delete from people where user_id = 'u0'")
        left = run_sync(audience, warehouse.path, landing, destination)
    assert (left.removed, left.rows_sent) == (1, 2)  # the leaver, and the long id tried again
    assert "u0" not in sandbox.iterable.lists[42]
    with pytest.raises(SyncDefinitionError, match="static list"):
        Sync.from_meta(
            "people", {**BRAZE, "destination": "iterable", "membership_attribute": "m"}, COLUMNS
        )


def test_iterable_paces_each_endpoint_in_its_own_window(
    warehouse: Warehouse, sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # bulkUpdate and trackBulk at two requests a second each, the list calls at three; 50 users
    # a request, so that each run of each kind takes more than one window, without a 429.
    monkeypatch.setattr(iterable_sync, "MAX_USERS", 50)
    store = sandbox.iterable
    store.window = RateWindow(limit=3, seconds=1.0)
    for path in (iterable_sync.BULK_UPDATE_PATH, iterable_sync.TRACK_BULK_PATH):
        store.endpoint_windows[path] = RateWindow(limit=2, seconds=1.0)
    warehouse.sql(
        "create table orders as select 'o' || i as order_id, 'u' || i as user_id, "
        "1.0 as order_total, timestamp '2026-12-01 10:00' as ordered_at from range(100) t(i)"
    )
    attributes = Sync.from_meta(
        "people", {**EMAIL, "destination": "iterable", "key": "user_id"}, COLUMNS
    )
    audience = Sync.from_meta(
        "people", {"name": "it_new", "destination": "iterable", "key": "user_id", "list_id": 42},
        COLUMNS,
    )  # fmt: skip
    landing = tmp_path / "landing"
    with IterableDestination(
        sandbox.base_url,
        SANDBOX_CREDENTIALS.iterable_api_key,
        RequestWindow(3, 1.0),
        bulk_update_window=RequestWindow(2, 1.0),
        track_bulk_window=RequestWindow(2, 1.0),
    ) as iterable:
        for sync in (attributes, orders_sync("iterable"), audience):
            assert run_sync(sync, warehouse.path, landing, iterable).rejected == 0
    # 4 bulkUpdate, 2 trackBulk, 4 list subscribe requests
    assert (store.requests, store.rate_limited) == (4 + 2 + 4, 0)
    assert len(store.users) == 200 and len(store.events) == 100 and len(store.lists[42]) == 200


def test_a_slower_iterable_setting_paces_every_endpoint() -> None:
    shared = IterableDestination("http://127.0.0.1:9", "k", RequestWindow(2, 1.0))
    paced = {p: (w.limit, w.seconds) for p, w in shared.endpoint_windows.items()}
    assert paced == {iterable_sync.BULK_UPDATE_PATH: (2, 1.0),
                     iterable_sync.TRACK_BULK_PATH: (2, 1.0)}  # fmt: skip
    fast = IterableDestination("http://127.0.0.1:9", "k", RequestWindow(50, 1.0))
    assert {w.limit for w in fast.endpoint_windows.values()} == {5, 10}  # the defaults stand
    shared.close()
    fast.close()


# -- event syncs -----------------------------------------------------------------------------

ORDERS = {"order_id", "user_id", "order_total", "ordered_at"}


def orders_sync(destination: str) -> Sync:
    return Sync.from_meta(
        "orders",
        {"name": f"{destination}_orders", "destination": destination, "key": "user_id",
         "event": {"id": "order_id", "name": "purchase_completed", "time": "ordered_at",
                   "properties": {"total": "order_total"}}},
        ORDERS,
    )  # fmt: skip


def events_at(sandbox: Sandbox, name: str) -> list[dict[str, object]]:
    if name == "braze":
        return [e for e in sandbox.braze.events if e["kind"] == "events"]
    if name == "customerio":
        return sandbox.customerio.events
    if name == "airship":
        return sandbox.airship.events
    return list(sandbox.iterable.events.values())


@pytest.mark.parametrize("name", ["braze", "customerio", "iterable", "airship"])
def test_new_rows_are_sent_once_as_events(
    name: str, warehouse: Warehouse, sandbox: Sandbox, tmp_path: Path
) -> None:
    warehouse.sql(
        "create table orders as select 'o' || i as order_id, 'u' || (i % 7) as user_id, "
        "10.0 + i as order_total, timestamp '2026-12-01 10:00' + to_minutes(i) as ordered_at "
        "from range(50) t(i)"
    )
    sync, landing = orders_sync(name), tmp_path / "landing"
    with platform(sandbox, name) as destination:
        assert run_sync(sync, warehouse.path, landing, destination).added == 50
        assert run_sync(sync, warehouse.path, landing, destination).rows_sent == 0
        # a new order is sent; a changed or deleted one is not the destination's business
        warehouse.sql("insert into orders values ('o50', 'u1', 99.0, timestamp '2026-12-02 09:00')")
        warehouse.sql("update orders set order_total = 0 where order_id = 'o3'")
        warehouse.sql("delete from orders where order_id = 'o4'")
        summary = run_sync(sync, warehouse.path, landing, destination)
    assert (summary.added, summary.changed, summary.removed, summary.rows_sent) == (1, 0, 0, 1)
    events = events_at(sandbox, name)
    assert len(events) == 51
    last = events[-1]
    if name == "braze":
        assert (last["external_id"], last["name"], last["properties"]) == (
            "u1", "purchase_completed", {"total": 99.0},
        )  # fmt: skip
        assert str(last["time"]).startswith("2026-12-02T09:00:00")
    elif name == "customerio":
        ulid = event_ulid("o50", "2026-12-02T09:00:00.000000Z")
        assert (last["person"], last["name"], last["id"]) == ("u1", "purchase_completed", ulid)
    elif name == "airship":
        assert last["user"] == {"named_user_id": "u1"} and last["body"] == {
            "name": "purchase_completed", "properties": {"total": 99.0},
        }  # fmt: skip
        assert last["occurred"] == "2026-12-02T09:00:00"
    else:
        assert (last["userId"], last["eventName"], last["id"]) == (
            "u1",
            "purchase_completed",
            "o50",
        )


def test_an_event_braze_may_have_recorded_is_not_sent_again(
    warehouse: Warehouse, sandbox: Sandbox, tmp_path: Path
) -> None:
    warehouse.sql(
        "create table orders as select 'o' || i as order_id, 'u' || i as user_id, "
        "1.0 as order_total, timestamp '2026-12-01 10:00' as ordered_at from range(3) t(i)"
    )
    sandbox.fail_next(Fault("braze", lose_response=True))  # recorded, then the answer was lost
    landing = tmp_path / "landing"
    with platform(sandbox, "braze") as destination:
        first = run_sync(orders_sync("braze"), warehouse.path, landing, destination)
        again = run_sync(orders_sync("braze"), warehouse.path, landing, destination)
    # Braze does not de-duplicate events: at most once, never twice
    assert (first.unknown, sandbox.braze.requests, again.rows_sent) == (3, 1, 0)
    assert len(events_at(sandbox, "braze")) == 3


def test_events_refused_for_credentials_are_sent_once_they_are_fixed(
    warehouse: Warehouse, sandbox: Sandbox, tmp_path: Path
) -> None:
    warehouse.sql(
        "create table orders as select 'o' || i as order_id, 'u' || i as user_id, "
        "1.0 as order_total, timestamp '2026-12-01 10:00' as ordered_at from range(3) t(i)"
    )
    landing, sync = tmp_path / "landing", orders_sync("braze")
    with (
        BrazeDestination(sandbox.base_url, "wrong-key") as wrong,
        pytest.raises(DestinationAuthError),
    ):
        run_sync(sync, warehouse.path, landing, wrong)
    with platform(sandbox, "braze") as braze:
        fixed = run_sync(sync, warehouse.path, landing, braze)
    assert (fixed.added, fixed.rows_sent) == (3, 3)
    assert len(events_at(sandbox, "braze")) == 3


@pytest.mark.parametrize("name", ["braze", "airship"])
def test_events_sent_before_a_crash_are_not_sent_again(
    name: str,
    warehouse: Warehouse,
    sandbox: Sandbox,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    warehouse.sql(
        "create table orders as select 'o' || i as order_id, 'u' || i as user_id, "
        "1.0 as order_total, timestamp '2026-12-01 10:00' as ordered_at from range(3) t(i)"
    )
    landing, sync = tmp_path / "landing", orders_sync(name)
    # a first run whose key was refused lands its rows as failed: an answer of that run, which
    # must not stand for the crashed run's sends below (attempted rows match by run)
    wrong = (AirshipDestination if name == "airship" else BrazeDestination)(sandbox.base_url, "x")
    with wrong, pytest.raises(DestinationAuthError):
        run_sync(sync, warehouse.path, landing, wrong)
    refused = {r["key"]: r["outcome"] for r in landed(landing) if r["outcome"] != "attempted"}
    assert refused == {"o0": "failed", "o1": "failed", "o2": "failed"}
    real_append = results.append

    def crash_after_sending(con: duckdb.DuckDBPyConnection, relation: str, *args: object):
        outcomes = con.sql(f"select distinct outcome from {relation}").fetchall()
        if outcomes != [("attempted",)]:
            raise KeyboardInterrupt("the run stops after the events went out")
        return real_append(con, relation, *args)  # type: ignore[arg-type]

    with platform(sandbox, name) as destination:
        monkeypatch.setattr(results, "append", crash_after_sending)
        with pytest.raises(KeyboardInterrupt):
            run_sync(sync, warehouse.path, landing, destination)
        monkeypatch.setattr(results, "append", real_append)
        assert len(events_at(sandbox, name)) == 3
        again = run_sync(sync, warehouse.path, landing, destination)
    assert (again.added, again.rows_sent) == (0, 0)
    assert len(events_at(sandbox, name)) == 3
    runs = {r["run_id"] for r in landed(landing)}
    crashed = {r["key"]: r["outcome"] for r in landed(landing) if r["outcome"] == "attempted"}
    assert len(runs) == 2 and crashed == {"o0": "attempted", "o1": "attempted", "o2": "attempted"}
    with duckdb.connect() as con:
        results.results_view(con, landing, sync.name)
        read = con.sql(
            "select key, outcome, reason from results qualify row_number() over "
            "(partition by key order by recorded_at desc) = 1 order by key"
        ).fetchall()
    assert read == [(k, "unknown", results.UNANSWERED) for k in ("o0", "o1", "o2")]
    if name == "braze":  # dbt reads the landed rows the same way (one dbt build is enough)
        paths = Paths(home=tmp_path, landing=landing, duckdb=tmp_path / "dbt.duckdb")
        dbt_build(paths, "stg_syncs__results", "dim_sync_state", "fct_sync_runs")
        state = query(paths, "select sync_key, last_outcome, last_reason from dim_sync_state")
        assert sorted(tuple(r.values()) for r in state) == [
            (k, "unknown", results.UNANSWERED) for k in ("o0", "o1", "o2")
        ]
        per_run = query(
            paths, "select rows_added, rows_failed, rows_unknown from fct_sync_runs order by 3"
        )
        assert [tuple(r.values()) for r in per_run] == [(3, 3, 0), (3, 0, 3)]


@pytest.mark.parametrize("name", ["iterable", "customerio"])
def test_an_event_a_platform_deduplicates_is_sent_again(
    name: str, warehouse: Warehouse, sandbox: Sandbox, tmp_path: Path
) -> None:
    warehouse.sql(
        "create table orders as select 'o' || i as order_id, 'u' || i as user_id, "
        "1.0 as order_total, timestamp '2026-12-01 10:00' as ordered_at from range(3) t(i)"
    )
    sandbox.fail_next(Fault(name, lose_response=True))
    with platform(sandbox, name) as destination:
        summary = run_sync(orders_sync(name), warehouse.path, tmp_path / "l", destination)
    # the lost answer is resent (two requests); the platform keeps each event once, by its id
    assert (summary.added, summary.unknown, summary.failed) == (3, 0, 0)
    assert getattr(sandbox, name).requests == 2
    assert len(events_at(sandbox, name)) == 3


def test_iterable_rows_it_names_as_failed_are_rejected(
    warehouse: Warehouse, sandbox: Sandbox, tmp_path: Path
) -> None:
    sandbox.iterable.forgotten.add("u3")  # a GDPR request at Iterable
    with platform(sandbox, "iterable") as destination:
        to_iterable = {**EMAIL, "destination": "iterable", "key": "user_id"}
        people = run_sync(
            Sync.from_meta("people", to_iterable, COLUMNS), warehouse.path, tmp_path / "people",
            destination,
        )  # fmt: skip
        assert (people.added, people.rejected) == (200, 1)
        warehouse.sql(
            "create table orders as select 'o' || i as order_id, 'u' || i as user_id, "
            "1.0 as order_total, timestamp '2026-12-01 10:00' as ordered_at from range(2) t(i)"
        )
        sandbox.iterable.disallowed_events.add("purchase_completed")
        orders = run_sync(orders_sync("iterable"), warehouse.path, tmp_path / "o", destination)
    assert (orders.added, orders.rejected) == (2, 2)
    reasons = {r["key"]: r["reason"] for r in landed(tmp_path / "people") if r["reason"]}
    assert reasons == {"u3": "Iterable listed 'u3' in failedUpdates.forgottenUserIds"}
    assert "u3" not in sandbox.iterable.users and not sandbox.iterable.events


def test_airship_audience_is_a_tag(warehouse: Warehouse, sandbox: Sandbox, tmp_path: Path) -> None:
    audience = Sync.from_meta(
        "people",
        {"name": "ua_new", "destination": "airship", "key": "user_id",
         "membership_attribute": "new_people"},
        COLUMNS,
    )  # fmt: skip
    landing = tmp_path / "landing"
    with platform(sandbox, "airship") as destination:
        first = run_sync(audience, warehouse.path, landing, destination)
        assert (first.added, first.requests) == (200, 2)  # 100 named users a request
        assert sandbox.airship.tags["u7"] == {TAG_GROUP: {"new_people"}}
        warehouse.sql("delete from people where user_id = 'u7'")
        assert run_sync(audience, warehouse.path, landing, destination).removed == 1
    assert sandbox.airship.tags["u7"] == {TAG_GROUP: set()}


def test_airship_named_users_removed_are_uninstalled(
    warehouse: Warehouse, sandbox: Sandbox, tmp_path: Path
) -> None:
    meta = {**EMAIL, "destination": "airship", "key": "user_id", "on_remove": "delete"}
    sync, landing = Sync.from_meta("people", meta, COLUMNS), tmp_path / "landing"
    with platform(sandbox, "airship") as destination:
        run_sync(sync, warehouse.path, landing, destination)
        assert sandbox.airship.users["u7"] == {"a": "u7@example.com"}
        warehouse.sql("delete from people where user_id in ('u7', 'u8')")
        removed = run_sync(sync, warehouse.path, landing, destination)
    assert (removed.removed, removed.rows_sent, removed.requests) == (2, 2, 1)
    assert sorted(sandbox.airship.uninstalled) == ["u7", "u8"] and "u7" not in sandbox.airship.users


def test_braze_purchases(warehouse: Warehouse, sandbox: Sandbox, tmp_path: Path) -> None:
    warehouse.sql(
        "create table orders as select 'o' || i as order_id, 'u' || i as user_id, "
        "19.5 as order_total, case when i = 2 then 'usd' else 'EUR' end as currency, "
        "timestamp '2026-12-01 10:00' as ordered_at from range(3) t(i)"
    )
    purchases = Sync.from_meta(
        "orders",
        {"name": "braze_purchases", "destination": "braze", "key": "user_id",
         "purchase": {"id": "order_id", "time": "ordered_at", "product_id": "order_id",
                      "price": "order_total", "currency": "currency"}},
        {*ORDERS, "currency"},
    )  # fmt: skip
    with platform(sandbox, "braze") as destination:
        summary = run_sync(purchases, warehouse.path, tmp_path / "landing", destination)
    assert (summary.added, summary.rejected) == (3, 1)  # 'usd' is no ISO 4217 code
    bought = [e for e in sandbox.braze.events if e["kind"] == "purchases"]
    got = sorted((p["external_id"], p["product_id"], p["price"], p["currency"]) for p in bought)
    assert got == [("u0", "o0", 19.5, "EUR"), ("u1", "o1", 19.5, "EUR")]
    elsewhere = {"name": "x", "destination": "iterable", "key": "user_id",
                 "purchase": {"id": "order_id"}}  # fmt: skip
    with pytest.raises(SyncDefinitionError, match="purchase syncs are Braze's"):
        Sync.from_meta("orders", elsewhere, ORDERS)
