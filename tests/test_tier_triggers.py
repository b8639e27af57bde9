"""What starts each tier: the seconds tier's sensor on landed intake files (evaluated in-process
against a real landing folder and a Dagster instance), the cron tiers' schedules and the jobs'
selections."""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

import dagster as dg
import pytest

from orchestration.definitions import build_definitions
from switchyard import landing
from switchyard.landed_files import GRACE_NS, LandedCursor, landed_since


def land(home: Path, source: str = "segment", table: str = "events") -> str:
    written = landing.write_batch(home / "landing", source, table, [{"event": "cart_updated"}])
    return f"{source}/{table}/{written.name}"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SWITCHYARD_HOME", str(tmp_path))
    for variable in ("SWITCHYARD_LANDING_DIR", "SWITCHYARD_DUCKDB_PATH"):
        monkeypatch.delenv(variable, raising=False)
    landing.ensure_layout(tmp_path / "landing")
    return tmp_path


def test_each_landed_file_is_new_once_and_own_writes_are_not_watched(home: Path) -> None:
    first = [land(home), land(home, "shop", "orders"), land(home, "preferences", "consents")]
    landing.write_batch(home / "landing", "ledger", "deliveries", [{"k": 1}])  # a run's own
    (home / "landing" / "segment" / "events" / ".half.jsonl.open").write_text("{}")
    new, cursor = landed_since(home / "landing", LandedCursor())
    assert new == sorted(first)  # no placeholder, no open file, no ledger
    assert landed_since(home / "landing", cursor)[0] == []
    later = land(home, "feedback", "events")
    new, cursor = landed_since(home / "landing", LandedCursor.from_json(cursor.to_json()))
    assert new == [later]


def test_a_file_older_than_the_watermark_but_unseen_is_still_new(home: Path) -> None:
    # Listed while another folder was being read: its rename is older than the newest seen.
    older, newer = land(home), land(home, "shop", "orders")
    stat = os.stat(home / "landing" / newer)
    cursor = LandedCursor(stat.st_ctime_ns, frozenset({f"{newer}:{stat.st_size}"}))
    assert landed_since(home / "landing", cursor)[0] == [older]
    # Past the grace window the cursor vouches for it: seen before the cursor's files.
    assert landed_since(home / "landing", LandedCursor(cursor.watermark_ns + GRACE_NS + 1))[0] == []


def test_appended_rows_count_once_more_and_a_copied_future_mtime_hides_nothing(
    home: Path,
) -> None:
    # The inbox's read and click events are appended to a visible file.
    log = landing.AppendLog(home / "landing", "feedback", "events", prefix="inbox")
    log.append([{"event": "open"}])
    name = f"feedback/events/{log.path.name}"
    new, cursor = landed_since(home / "landing", LandedCursor())
    assert new == [name]
    log.append([{"event": "click"}])  # within the grace window: new rows, so new again
    new, cursor = landed_since(home / "landing", cursor)
    assert new == [name]
    assert landed_since(home / "landing", cursor)[0] == []
    # A file copied with its mtime a day ahead (cp -p from a host with a fast clock) does not
    # move the watermark past files landing after it.
    ahead = land(home)
    day = 86_400 * 10**9
    os.utime(home / "landing" / ahead, ns=(time.time_ns() + day, time.time_ns() + day))
    new, cursor = landed_since(home / "landing", cursor)
    assert new == [ahead] and cursor.watermark_ns <= time.time_ns()
    later = land(home)
    assert landed_since(home / "landing", cursor)[0] == [later]


def test_random_landings_and_looks_see_every_file_exactly_once(home: Path) -> None:
    rng = random.Random(7)
    cursor, landed, seen = LandedCursor(), [], []
    for _ in range(60):
        if rng.random() < 0.6:
            landed.append(land(home, *rng.choice([("segment", "events"), ("shop", "orders")])))
        else:
            new, cursor = landed_since(home / "landing", cursor)
            seen.extend(new)
    seen.extend(landed_since(home / "landing", cursor)[0])
    assert sorted(seen) == sorted(landed) and len(seen) == len(set(seen))


def evaluate(
    instance: dg.DagsterInstance, cursor: str | None
) -> tuple[list[dg.RunRequest], str | None, str | None]:
    defs = build_definitions()
    sensor = defs.get_sensor_def("tier_seconds_on_landed_files")
    context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs)
    result = sensor.evaluate_tick(context)
    return list(result.run_requests or []), result.cursor, result.skip_message


def test_the_seconds_sensor_asks_for_a_run_when_files_land(home: Path) -> None:
    with dg.instance_for_test() as instance:
        # The first look asks for a run even with nothing landed: work may be due by time.
        (first,), cursor, _ = evaluate(instance, None)
        assert (first.tags["trigger"], first.tags["landed_files"]) == ("time", "0")
        land(home)
        (request,), cursor, _ = evaluate(instance, cursor)
        assert request.job_name == "tier_seconds"
        assert request.tags["tier"] == "seconds" and request.tags["landed_files"] == "1"
        assert request.tags["trigger"] == "landed_files"
        requests, cursor_after, skipped = evaluate(instance, cursor)
        assert (requests, cursor_after) == ([], cursor)  # a skip leaves the cursor as it was
        assert "no intake file landed" in (skipped or "")
        # A minute after the last request, a run is asked for anyway: waits end with time.
        stale = json.loads(cursor or "{}") | {"requested_at": time.time() - 61}
        (due,), after, _ = evaluate(instance, json.dumps(stale))
        assert (due.tags["trigger"], due.tags["landed_files"]) == ("time", "0")
        assert json.loads(after or "{}")["requested_at"] > stale["requested_at"]
        # While a run of the tier has not started, new files wait for it: the cursor does
        # not move, so the evaluation after it starts still sees them.
        land(home)
        queued = instance.add_run(
            dg.DagsterRun(
                job_name="tier_seconds", run_id="r1", status=dg.DagsterRunStatus.NOT_STARTED
            )
        )
        requests, held, skipped = evaluate(instance, cursor)
        assert (requests, held) == ([], cursor) and "r1 of tier_seconds has read nothing" in (
            skipped or ""
        )
        # Started, its first step waiting for its turn in the warehouse pool (the daemon starts
        # such runs): it has read nothing yet either.
        instance.report_dagster_event(
            dg.DagsterEvent(dg.DagsterEventType.RUN_START.value, "tier_seconds"), "r1"
        )
        assert instance.get_run_by_id("r1").status == dg.DagsterRunStatus.STARTED
        requests, held, skipped = evaluate(instance, cursor)
        assert (requests, held) == ([], cursor) and "r1 of tier_seconds has read nothing" in (
            skipped or ""
        )
        # Once a step has begun (it may have read its inputs already), they get a run of their
        # own.
        instance.report_dagster_event(
            dg.DagsterEvent(
                dg.DagsterEventType.STEP_START.value, "tier_seconds", step_key="dbt_models"
            ),
            "r1",
        )
        (request,), _, _ = evaluate(instance, cursor)
        assert request.tags["landed_files"] == "1"
        assert queued.run_id == "r1"


def test_tier_jobs_select_their_journeys_and_what_they_need() -> None:
    defs = build_definitions()
    seconds = defs.resolve_job_def("tier_seconds").asset_layer.executable_asset_keys
    hours = defs.resolve_job_def("tier_hours").asset_layer.executable_asset_keys
    cart, welcome = (
        dg.AssetKey(["journey", "cart_abandonment"]),
        dg.AssetKey(["journey", "welcome"]),
    )
    assert cart in seconds and welcome not in seconds
    assert welcome in hours and cart not in hours
    # What the cart journey reads is built first; what reads its ledger is built after.
    for key in ("audience_cart_abandonment", "dim_people", "fct_deliveries"):
        assert dg.AssetKey([key]) in seconds
    assert dg.AssetKey(["audience_welcome"]) not in seconds
    # and what the metrics after it read, so that a tier's run works on a fresh warehouse
    assert dg.AssetKey(["stg_journeys__transitions"]) in seconds
    assert defs.resolve_job_def("tier_seconds").tags["tier"] == "seconds"
    # The seconds tier leaves the dbt tests (checks) of the models it builds to the hourly runs.
    checks = {j: defs.resolve_job_def(j).asset_layer.asset_graph.asset_check_keys
              for j in ("tier_seconds", "tier_hours")}  # fmt: skip
    assert not checks["tier_seconds"]
    assert (
        dg.AssetCheckKey(dg.AssetKey(["dim_people"]), "unique_dim_people_person_id")
        in (checks["tier_hours"])
    )
    schedules = {s.name: s.cron_schedule for s in defs.schedules or []}
    assert schedules == {
        "tier_hours_schedule": "0 * * * *",
        "tier_days_schedule": "0 6 * * *",
        "ledger_upkeep_schedule": "30 3 * * *",
    }
