"""What starts each tier's runs: a job per tier in use (its journeys, the models upstream of them
and the metrics and publish after), a schedule for the cron tiers and a sensor on landed intake
files for the seconds tier. All start stopped: the README says how to turn them on."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Collection, Sequence
from dataclasses import replace

import dagster as dg

from activations.journeys import Journey
from switchyard.landed_files import LandedCursor, landed_since
from switchyard.settings import Paths
from switchyard.tiers import TIERS, Tier

SENSOR_INTERVAL_SECONDS = 5
# At least this often a sensor tier runs with no file landing, for what falls due with time.
DUE_EVERY_SECONDS = 60
# A run not started yet will read every file landed by the time it does: another request would
# only queue behind it. A started one may have read its inputs already, so new files get a run
# of their own, queued until it ends (one seconds run at a time: orchestration/dagster.yaml).
_WAITING = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
]


def _not_reading_yet(instance: dg.DagsterInstance, job_name: str) -> str | None:
    """The id of a run of the job that has read nothing yet: not started, or started with no
    step begun. The daemon starts a run whose first step waits for the warehouse pool
    (orchestration/dagster.yaml, op_granularity_run_buffer), and a step that waits for its turn
    has not begun (Dagster records its start once it holds the slot)."""
    waiting = instance.get_run_records(dg.RunsFilter(job_name=job_name, statuses=_WAITING), limit=1)
    if waiting:
        return waiting[0].dagster_run.run_id
    started = instance.get_run_records(
        dg.RunsFilter(job_name=job_name, statuses=[dg.DagsterRunStatus.STARTED]), limit=1
    )
    for record in started:
        run_id = record.dagster_run.run_id
        if not any(step.start_time for step in instance.get_run_step_stats(run_id)):
            return run_id
    return None


def tier_job_name(tier: Tier) -> str:
    return f"tier_{tier.name}"


def tier_selection(tier: str, with_checks: bool = True) -> dg.AssetSelection:
    """The tier's journeys, what they read, what reads their ledger (metrics, the published
    copy) and what those read too (the transitions' and the inbox's staging), but not the other
    tiers' journeys nor the audiences only those read: a run works on a fresh warehouse."""
    journeys = dg.AssetSelection.tag("tier", tier)
    others = dg.AssetSelection.groups("activations") - journeys
    after = journeys.downstream()
    only_theirs = others.upstream(depth=1) - journeys.upstream()
    selection = journeys.upstream() | after | (after.upstream() - others - only_theirs)
    return selection if with_checks else selection.without_checks()


def build_tier_jobs(
    journeys: Sequence[Journey],
    exclude: dg.AssetSelection,
    only_in: Sequence[tuple[dg.AssetSelection, Collection[str]]] = (),
    also_in_use: Collection[str] = (),
) -> list[dg.UnresolvedAssetJobDefinition]:
    """A job per tier in use. `only_in`: assets downstream of every tier's runs that only the
    named tiers' runs materialize (the report after the days tier's); when none of those tiers
    is in use, every tier's runs do, so that they are never left to manual runs. `also_in_use`:
    tiers other assets tagged with a tier need (the syncs')."""
    in_use = {j.tier for j in journeys} | set(also_in_use)
    # The models the test-less tiers' journeys read (the seconds tier's audience included) are
    # also built and tested by the other tiers' runs; their journeys are not run there.
    tested_too: dg.AssetSelection | None = None
    for t in TIERS.values():
        if t.name in in_use and not t.runs_tests:
            journeys_of = dg.AssetSelection.tag("tier", t.name)
            models = journeys_of.upstream() - journeys_of
            tested_too = models if tested_too is None else tested_too | models

    def selection(tier: Tier) -> dg.AssetSelection:
        chosen = tier_selection(tier.name, with_checks=tier.runs_tests)
        if tier.runs_tests and tested_too is not None:
            chosen = chosen | tested_too
        for assets, tiers in only_in:
            if tier.name not in tiers and in_use & set(tiers):
                chosen = chosen - assets
        return chosen - exclude

    return [
        dg.define_asset_job(
            tier_job_name(tier),
            selection=selection(tier),
            description=f"{tier.description}; target: event to message within "
            f"{tier.target_seconds} s",
            tags={"tier": tier.name},
            # Steps run in the run's own process: no step pays for a new Python process and the
            # code location's imports (~5 s each on this machine). The pool still applies.
            executor_def=dg.in_process_executor,
        )
        for tier in TIERS.values()
        if tier.name in in_use
    ]


def build_tier_triggers(
    jobs: Sequence[dg.UnresolvedAssetJobDefinition],
) -> tuple[list[dg.ScheduleDefinition], list[dg.SensorDefinition]]:
    schedules, sensors = [], []
    for job in jobs:
        tier = TIERS[job.tags["tier"]]  # each tier job carries its tier
        if tier.trigger == "cron":
            if not tier.cron:
                raise ValueError(f"tier {tier.name!r} is started by cron but names none")
            schedules.append(
                dg.ScheduleDefinition(
                    job=job,
                    cron_schedule=tier.cron,
                    default_status=dg.DefaultScheduleStatus.STOPPED,
                )
            )
        else:
            sensors.append(build_landed_files_sensor(job))
    return schedules, sensors


def build_landed_files_sensor(job: dg.UnresolvedAssetJobDefinition) -> dg.SensorDefinition:
    @dg.sensor(
        name=f"{job.name}_on_landed_files",
        job=job,
        minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description="A run of the tier when intake files (events, orders, consents, "
        "suppressions, feedback) land, and at least once a minute for work that falls due "
        "with time; while one has read nothing yet (queued, or waiting for the warehouse), new "
        "files wait for it.",
    )
    def _on_landed_files(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
        waiting = _not_reading_yet(context.instance, job.name)
        if waiting:
            # The cursor stays: the next evaluation after it starts sees these files again.
            return dg.SkipReason(f"run {waiting} of {job.name} has read nothing yet")
        before = LandedCursor.from_json(context.cursor)
        new, cursor = landed_since(Paths.from_env().landing, before)
        now = time.time()
        if new:
            # The watermark too: a file appended to again is new again, under a new key.
            seen = "\n".join([*new, str(cursor.watermark_ns)])
            digest = hashlib.sha256(seen.encode()).hexdigest()[:16]
            key, trigger = f"landed-{digest}", "landed_files"
        elif now - before.requested_at >= DUE_EVERY_SECONDS:
            # A wait that ended, a step delayed from entry: due with no file landing.
            key, trigger = f"due-{int(now // DUE_EVERY_SECONDS)}", "time"
        else:
            return dg.SkipReason("no intake file landed since the last run, nothing due by time")
        request = dg.RunRequest(
            run_key=key,
            job_name=job.name,
            tags={
                "tier": job.tags["tier"],
                "trigger": trigger,
                "landed_files": str(len(new)),
            },
        )
        cursor = replace(cursor, requested_at=now)
        return dg.SensorResult(run_requests=[request], cursor=cursor.to_json())

    return _on_landed_files


def sends_job_name(tier: str) -> str:
    return f"tier_{tier}_sends"


def build_partitioned_sends(
    tier_jobs: Sequence[dg.UnresolvedAssetJobDefinition],
    partitions_def: dg.StaticPartitionsDefinition,
) -> tuple[list[dg.UnresolvedAssetJobDefinition], list[dg.SensorDefinition]]:
    """With person partitions, a tier's journeys run as a job of their own, one run per
    partition, started by the tier job's success (its models are fresh then): several runs
    send at once, each to its own people. Once the last of them is done, a third job builds
    again what reads their sends (the metrics, the published copy): the tier job built those
    before the sends."""
    jobs: list[dg.UnresolvedAssetJobDefinition] = []
    sensors: list[dg.SensorDefinition] = []
    for tier_job in tier_jobs:
        tier = tier_job.tags["tier"]
        journeys = dg.AssetSelection.tag("tier", tier) & dg.AssetSelection.groups("activations")
        sends = dg.define_asset_job(
            sends_job_name(tier),
            selection=journeys,  # partitioned as its assets are
            description=f"The {tier} tier's journeys, one run per person partition",
            # not `tier`: the instance runs one seconds-tier run at a time (dagster.yaml), and
            # the partitions' runs are meant to run at once
            tags={"sends_tier": tier},
            executor_def=dg.in_process_executor,
        )

        # What the tier job builds that reads the sends: not the deletion queue (its own work)
        after = dg.define_asset_job(
            after_sends_job_name(tier),
            selection=((journeys.downstream() - journeys) & tier_job.selection)
            - dg.AssetSelection.key_prefixes(["privacy"]),
            description=f"The {tier} tier's metrics and published copy again, after its "
            "partitions' sends",
            tags={"sends_tier": tier},
            executor_def=dg.in_process_executor,
        )
        jobs += [sends, after]
        sensors += [
            _after_models_sensor(tier_job, sends, partitions_def),
            _after_sends_sensor(sends, after),
        ]
    return jobs, sensors


def after_sends_job_name(tier: str) -> str:
    return f"tier_{tier}_after_sends"


_UNFINISHED = [*_WAITING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]


def _after_sends_sensor(
    sends: dg.UnresolvedAssetJobDefinition, after: dg.UnresolvedAssetJobDefinition
) -> dg.SensorDefinition:
    @dg.run_status_sensor(
        name=f"{after.name}_when_sent",
        run_status=dg.DagsterRunStatus.SUCCESS,
        monitored_jobs=[sends],
        request_job=after,
        default_status=dg.DefaultSensorStatus.STOPPED,
        minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
    )
    def _when_sent(context: dg.RunStatusSensorContext) -> dg.RunRequest | dg.SkipReason:
        unfinished = context.instance.get_run_records(
            dg.RunsFilter(job_name=sends.name, statuses=_UNFINISHED), limit=1
        )
        if unfinished:  # the last partition to finish asks
            return dg.SkipReason(f"run {unfinished[0].dagster_run.run_id} still sending")
        # One request per tier run: its partitions' runs are keyed '<tier run id>:<partition>'
        # (_after_models), and a run key asked for twice starts one run.
        run = context.dagster_run
        started_by = (run.tags.get("dagster/run_key") or run.run_id).split(":")[0]
        return dg.RunRequest(run_key=f"after-sends:{started_by}")

    return _when_sent


def _after_models_sensor(
    tier_job: dg.UnresolvedAssetJobDefinition,
    sends: dg.UnresolvedAssetJobDefinition,
    partitions_def: dg.StaticPartitionsDefinition,
) -> dg.SensorDefinition:
    @dg.run_status_sensor(
        name=f"{sends.name}_after_models",
        run_status=dg.DagsterRunStatus.SUCCESS,
        monitored_jobs=[tier_job],
        request_job=sends,
        default_status=dg.DefaultSensorStatus.STOPPED,
        minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
    )
    def _after_models(context: dg.RunStatusSensorContext) -> list[dg.RunRequest]:
        # A partition whose run has not started yet reads the models as they are when it does:
        # another request would only queue behind it.
        waiting = context.instance.get_runs(
            filters=dg.RunsFilter(job_name=sends.name, statuses=_WAITING)
        )
        pending = {run.tags.get("dagster/partition") for run in waiting}
        run_id = context.dagster_run.run_id
        return [
            dg.RunRequest(run_key=f"{run_id}:{key}", partition_key=key)
            for key in partitions_def.get_partition_keys()
            if key not in pending
        ]

    return _after_models
