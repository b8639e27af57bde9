"""The Dagster code location loads, in-process and in `dagster dev` (webserver and daemon)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest
import yaml  # type: ignore[import-untyped]

from orchestration.definitions import PIPELINE_JOB, build_definitions
from orchestration.dev_server import dagster_dev
from switchyard.settings import PROJECT_DIR


def test_definitions_have_the_flow() -> None:
    defs = build_definitions()
    graph = defs.resolve_asset_graph()
    journey = dg.AssetKey(["journey", "cart_abandonment"])
    assert graph.get(journey).group_name == "activations"
    # Everything a run reads, so that a tier's job builds it first.
    assert {k.to_user_string() for k in graph.get(journey).parent_keys} == {
        "audience_cart_abandonment",
        "dim_people",
        "int_events_stitched",
        "stg_feedback__events",
        "int_user_consents_current",
        "int_suppressions_current",
        "dim_person_aliases",
    }
    # Metrics read the ledger the journey writes, so they run after it.
    assert journey in graph.get(dg.AssetKey(["fct_deliveries"])).parent_keys
    assert defs.resolve_job_def(PIPELINE_JOB) is not None
    # What starts each tier a journey runs in: cart (seconds) on landed files, welcome (hours)
    # and lapsed (days) on schedules.
    assert {s.name for s in defs.schedules or []} == {
        "tier_hours_schedule",
        "tier_days_schedule",
        "ledger_upkeep_schedule",
    }
    assert [s.name for s in defs.sensors or []] == ["tier_seconds_on_landed_files"]
    # The ledger's compaction runs on its own schedule, after the journeys, never in a tier's run.
    compacted = dg.AssetKey(["ledger", "compacted"])
    assert journey in graph.get(compacted).parent_keys
    for job in ("tier_seconds", PIPELINE_JOB):
        assert compacted not in defs.resolve_job_def(job).asset_layer.executable_asset_keys
    assert defs.resolve_job_def("ledger_upkeep").asset_layer.executable_asset_keys == {compacted}
    lapsed = graph.get(dg.AssetKey(["journey", "lapsed_reengagement"]))
    assert lapsed.tags.get("tier") == "days"
    # A cron tier's journey shows as stale when it has not run within its tier's promise.
    assert lapsed.freshness_policy == dg.FreshnessPolicy.time_window(
        warn_window=timedelta(days=1, minutes=15), fail_window=timedelta(days=2, minutes=15)
    )
    # The seconds tier's sensor starts a run at least once a minute: minutes without one is stale.
    assert graph.get(journey).freshness_policy == dg.FreshnessPolicy.time_window(
        warn_window=timedelta(minutes=5), fail_window=timedelta(minutes=15)
    )
    # One asset per declared sync, after the model it reads, in its own tier's runs; what the
    # destinations acknowledged is staged with the metrics, after it.
    people_sync = dg.AssetKey(["sync", "braze_people"])
    lapsed_sync = dg.AssetKey(["sync", "braze_lapsed_audience"])
    assert graph.get(people_sync).parent_keys == {dg.AssetKey(["dim_people"])}
    assert graph.get(people_sync).tags.get("tier") == "hours"
    assert people_sync in graph.get(dg.AssetKey(["dim_sync_state"])).parent_keys
    hours = defs.resolve_job_def("tier_hours").asset_layer.executable_asset_keys
    days = defs.resolve_job_def("tier_days").asset_layer.executable_asset_keys
    assert (people_sync in hours, people_sync in days) == (True, False)
    assert (lapsed_sync in hours, lapsed_sync in days) == (False, True)
    # The transitions the journeys record are staged with the metrics, after every journey.
    assert journey in graph.get(dg.AssetKey(["fct_journey_transitions"])).parent_keys
    # Every asset that opens the warehouse takes turns in one pool (limit 1 in dagster.yaml):
    # overlapping runs queue step by step instead of failing on DuckDB's lock. The ledger's
    # compaction works on landing files only; the report reads the published copy.
    outside = {"ledger", "journey_report"}
    for key in graph.materializable_asset_keys:
        pool = defs.resolve_assets_def(key).op.pool
        assert pool == (None if key.path[0] in outside else "switchyard_warehouse"), key
    instance = yaml.safe_load((PROJECT_DIR / "orchestration" / "dagster.yaml").read_text())
    assert instance["concurrency"]["pools"]["default_limit"] == 1
    # and one seconds-tier run at a time (its sensor queues at most one more)
    assert {"key": "tier", "value": "seconds", "limit": 1} in (
        instance["concurrency"]["runs"]["tag_concurrency_limits"]
    )
    # The guards' promises are checks operators see, beside every dbt test.
    checks = {k.name for k in graph.asset_check_keys
              if k.asset_key == dg.AssetKey(["fct_guard_violations"])}  # fmt: skip
    assert {"audit_duplicate_sends", "audit_sends_over_frequency_cap",
            "audit_sends_after_opt_out"} <= checks  # fmt: skip
    # Every run ends by publishing the read-only copy, after the metrics it copies.
    published = dg.AssetKey(["published_warehouse"])
    assert dg.AssetKey(["fct_deliveries"]) in graph.get(published).parent_keys
    for job in ("tier_seconds", "tier_days", PIPELINE_JOB):
        assert published in defs.resolve_job_def(job).asset_layer.executable_asset_keys
    # The journey report follows the published copy in the days tier's runs (and the whole
    # pipeline's), not in the faster tiers' runs.
    report = dg.AssetKey(["journey_report"])
    assert graph.get(report).parent_keys == {published}
    # The measurement marts in the hours and days tiers' runs, not in every seconds-tier run.
    funnel = dg.AssetKey(["fct_journey_funnel"])
    for job, has_report, has_funnel in [
        ("tier_seconds", False, False), ("tier_hours", False, True), ("tier_days", True, True),
        (PIPELINE_JOB, True, True),
    ]:  # fmt: skip
        keys = defs.resolve_job_def(job).asset_layer.executable_asset_keys
        assert (report in keys, funnel in keys) == (has_report, has_funnel), job
        assert dg.AssetKey(["fct_deliveries"]) in keys
    # Retention after the published copy, in the days tier's runs only: a demo or a full
    # pipeline run never trims history.
    retention = dg.AssetKey(["privacy", "retention"])
    assert graph.get(retention).parent_keys == {published}
    for job in ("tier_seconds", "tier_hours", "tier_days", PIPELINE_JOB):
        keys = defs.resolve_job_def(job).asset_layer.executable_asset_keys
        assert (retention in keys) == (job == "tier_days"), job
    # Deletion requests the collector queued: carried out by the hourly and daily runs.
    requests = dg.AssetKey(["privacy", "forget_requests"])
    for job in ("tier_seconds", "tier_hours", "tier_days", PIPELINE_JOB):
        keys = defs.resolve_job_def(job).asset_layer.executable_asset_keys
        assert (requests in keys) == (job != "tier_seconds"), job


REPOSITORY_QUERY = """
{ repositoriesOrError { ... on RepositoryConnection { nodes {
    sensors { name sensorState { status } }
    schedules { name scheduleState { status } }
} } }
  assetNodes { assetKey { path } hasAssetChecks } }
"""


def test_dagster_dev_loads_the_code_location(tmp_path: Path) -> None:
    # What `make dev` starts: the webserver and the daemon, serving the workspace over GraphQL.
    env = {"SWITCHYARD_HOME": str(tmp_path / "home"), "SWITCHYARD_CHANNELS": "sandbox"}
    with dagster_dev(tmp_path / "dagster_home", env=env) as dev:
        data = dev.graphql(REPOSITORY_QUERY)
        print(f"dagster dev loaded in {dev.ready_seconds:.1f} s")
    assets = {"/".join(n["assetKey"]["path"]) for n in data["assetNodes"]}
    assert {"journey/cart_abandonment", "dim_people", "published_warehouse"} <= assets
    (repository,) = data["repositoriesOrError"]["nodes"]
    triggers = {s["name"]: s["sensorState"]["status"] for s in repository["sensors"]}
    triggers |= {s["name"]: s["scheduleState"]["status"] for s in repository["schedules"]}
    # Every trigger is there and off until an operator turns it on.
    assert triggers == {
        "tier_seconds_on_landed_files": "STOPPED",
        "tier_hours_schedule": "STOPPED",
        "tier_days_schedule": "STOPPED",
        "ledger_upkeep_schedule": "STOPPED",
    }


def test_person_partitions_run_each_tiers_journeys_per_partition_after_its_models(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SWITCHYARD_PERSON_PARTITIONS", "3")
    defs = build_definitions()
    keys = ["persons-1-of-3", "persons-2-of-3", "persons-3-of-3"]
    journey = dg.AssetKey(["journey", "cart_abandonment"])
    assert defs.resolve_asset_graph().get(journey).partitions_def.get_partition_keys() == keys
    # they read the published copy, which dbt never locks: no turn in the warehouse pool
    (activation,) = [
        a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition) and journey in a.keys
    ]
    assert activation.op.pool is None
    # the tier job builds the models; the journeys are a partitioned job of their own
    tier = defs.resolve_job_def("tier_seconds")
    assert journey not in tier.asset_layer.executable_asset_keys
    sends = defs.resolve_job_def("tier_seconds_sends")
    assert set(sends.asset_layer.executable_asset_keys) == {journey}
    assert sends.partitions_def is not None
    assert sends.partitions_def.get_partition_keys() == keys
    # the tier job's success asks for one run per partition, once per tier run
    sensor = next(s for s in defs.sensors if s.name == "tier_seconds_sends_after_models")
    with dg.instance_for_test() as instance:
        run = instance.create_run_for_job(tier)
        context = dg.build_run_status_sensor_context(
            sensor_name=sensor.name,
            dagster_instance=instance,
            dagster_run=run,
            dagster_event=dg.DagsterEvent(
                event_type_value="PIPELINE_SUCCESS", job_name="tier_seconds"
            ),
        )
        requests = sensor(context)
        assert [r.partition_key for r in requests] == keys
        assert len({r.run_key for r in requests}) == 3
        assert all(r.run_key and r.run_key.startswith(run.run_id) for r in requests)
        # a partition whose run has not started yet gets no second one
        waiting = instance.create_run_for_job(sends, tags={"dagster/partition": keys[1]})
        assert waiting.status == dg.DagsterRunStatus.NOT_STARTED
        again = sensor(context)
        assert [r.partition_key for r in again] == [keys[0], keys[2]]
    # the sends job is not a seconds-tier run (the instance runs one of those at a time)
    assert "tier" not in (sends.tags or {})
    # once the last partition is done, what reads the sends is built again: the metrics and the
    # published copy, not the journeys nor the models they read
    after = defs.resolve_job_def("tier_seconds_after_sends")
    built = {k.to_user_string() for k in after.asset_layer.executable_asset_keys}
    assert {"fct_deliveries", "fct_journey_step_metrics", "published_warehouse"} <= built
    upstream = {"audience_cart_abandonment", "dim_people", "stg_segment__events"}
    assert not built & upstream and journey.to_user_string() not in built
    assert not any(k.startswith("privacy") for k in built)
    when_sent = next(s for s in defs.sensors if s.name == "tier_seconds_after_sends_when_sent")
    with dg.instance_for_test() as instance:
        tier_run = instance.create_run_for_job(tier)
        done, other = (
            instance.create_run_for_job(
                sends,
                tags={"dagster/partition": key, "dagster/run_key": f"{tier_run.run_id}:{key}"},
                status=status,
            )
            for key, status in (
                (keys[0], dg.DagsterRunStatus.SUCCESS),
                (keys[1], dg.DagsterRunStatus.STARTED),
            )
        )

        def evaluate(run: dg.DagsterRun) -> object:
            return when_sent(
                dg.build_run_status_sensor_context(
                    sensor_name=when_sent.name,
                    dagster_instance=instance,
                    dagster_run=run,
                    dagster_event=dg.DagsterEvent(
                        event_type_value="PIPELINE_SUCCESS", job_name=sends.name
                    ),
                )
            )

        assert isinstance(evaluate(done), dg.SkipReason)  # another partition is still sending
        instance.report_run_canceled(other)  # (any end: the last to finish asks)
        request = evaluate(done)
        assert isinstance(request, dg.RunRequest)
        assert request.run_key == f"after-sends:{tier_run.run_id}"
