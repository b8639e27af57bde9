"""The code location: dbt assets, one activation asset per journey, the jobs, and what starts each
tier's runs (schedules, and a sensor on landed files for the seconds tier)."""

from __future__ import annotations

import dagster as dg

from orchestration.dbt_project import dbt_resource
from orchestration.defs.activation import (
    activation_key,
    build_activation_asset,
    declared_journeys,
    person_partitions,
)
from orchestration.defs.privacy import (
    FORGET_REQUEST_TIERS,
    RETENTION_TIER,
    privacy_forget_requests,
    privacy_retention,
)
from orchestration.defs.publish import build_publish_asset
from orchestration.defs.report import REPORT_TIER, journey_report
from orchestration.defs.resources import resources
from orchestration.defs.syncs import build_sync_asset, declared_syncs, sync_key
from orchestration.defs.tier_triggers import (
    build_partitioned_sends,
    build_tier_jobs,
    build_tier_triggers,
)
from orchestration.defs.transform import build_dbt_assets
from orchestration.defs.upkeep import build_ledger_compaction_asset
from switchyard.tiers import TIERS

PIPELINE_JOB = "switchyard_pipeline"
MEASUREMENT_TAG = "measurement"  # the dbt tag of the journey measurement marts (dbt_project.yml)


def build_definitions() -> dg.Definitions:
    journeys = declared_journeys()
    syncs = declared_syncs()
    dbt_models, dbt_metrics = build_dbt_assets(
        [activation_key(j) for j in journeys] + [sync_key(s) for s in syncs]
    )
    # transactional, or exempt by the cap policy: their sends count toward no cap
    uncounted = frozenset(j.name for j in journeys if not j.counted)
    partitions = person_partitions()
    activations = [build_activation_asset(j, dbt_models, uncounted, partitions) for j in journeys]
    sync_assets = [build_sync_asset(s, dbt_models) for s in syncs]
    compaction = build_ledger_compaction_asset([activation_key(j) for j in journeys])
    published = build_publish_asset(list(dbt_metrics.keys))
    upkeep = dg.define_asset_job(
        "ledger_upkeep",
        selection=dg.AssetSelection.assets(compaction),
        description="Compact the delivery ledger (safe beside running journeys).",
    )
    # Partitioned journeys run in jobs of their own (build_partitioned_sends), after the models.
    apart = dg.AssetSelection.assets(*activations) if partitions else dg.AssetSelection.assets()
    # Retention is the days tier's: a demo or a full pipeline run never trims history.
    retention = dg.AssetSelection.assets(privacy_retention)
    pipeline = dg.define_asset_job(
        PIPELINE_JOB,
        selection=dg.AssetSelection.all() - upkeep.selection - apart - retention,
        description="Build every model, run every journey (with person partitions configured "
        "the tier_<tier>_sends jobs run them instead), then metrics.",
    )
    tier_jobs = build_tier_jobs(
        journeys,
        also_in_use={s.tier for s in syncs},
        exclude=upkeep.selection | apart,
        only_in=[
            (dg.AssetSelection.assets(journey_report), {REPORT_TIER}),
            (retention, {RETENTION_TIER}),
            (dg.AssetSelection.assets(privacy_forget_requests), FORGET_REQUEST_TIERS),
            # measurement marts are for BI and the report: not worth a seconds-tier run's time
            (dg.AssetSelection.tag(MEASUREMENT_TAG, ""), set(TIERS) - {"seconds"}),
        ],
    )
    schedules, sensors = build_tier_triggers(tier_jobs)
    sends_jobs: list[dg.UnresolvedAssetJobDefinition] = []
    if partitions:
        sends_jobs, partition_sensors = build_partitioned_sends(tier_jobs, partitions)
        sensors += partition_sensors
    schedules.append(
        dg.ScheduleDefinition(
            job=upkeep, cron_schedule="30 3 * * *", default_status=dg.DefaultScheduleStatus.STOPPED
        )
    )
    return dg.Definitions(
        assets=[
            dbt_models,
            dbt_metrics,
            *activations,
            *sync_assets,
            compaction,
            published,
            journey_report,
            privacy_retention,
            privacy_forget_requests,
        ],
        jobs=[pipeline, *tier_jobs, *sends_jobs, upkeep],
        schedules=schedules,
        sensors=sensors,
        resources={**resources(), "dbt": dbt_resource()},
    )


defs = build_definitions()
