"""One activation asset per declared journey, downstream of its audience; no journey named here."""

from datetime import timedelta

import dagster as dg
from dagster_dbt import get_asset_key_for_model

from activations.arrow_warehouse import configured_source
from activations.channels.settings import DeliveryLimits
from activations.journeys import Journey, load_journeys
from activations.ledger.reader import run_preview
from activations.partitions import PersonPartition, all_partitions, configured_count
from activations.run import run_journey
from activations.warehouse import MODELS_READ
from orchestration.dbt_project import ensure_manifest
from orchestration.defs.resources import ChannelsResource, WarehouseResource
from orchestration.defs.transform import ACTIVATION_KEY_PREFIX, WAREHOUSE_POOL
from switchyard.clock import parse_utc
from switchyard.publish import published_path
from switchyard.spark import require_shared_warehouse, target
from switchyard.tiers import TIERS


class JourneyRunConfig(dg.Config):
    now: str | None = None  # ISO 8601 time (any offset; none means UTC); default: the wall clock


def activation_key(journey: Journey) -> dg.AssetKey:
    return dg.AssetKey([ACTIVATION_KEY_PREFIX, journey.name])


def declared_journeys() -> list[Journey]:
    return load_journeys(ensure_manifest())


def markdown_table(rows: list[dict[str, object]]) -> str:
    """Rows as a Markdown table (Dagster renders it in the materialization's metadata)."""
    if not rows:
        return "_nothing decided in this run_"
    columns = list(rows[0])

    def cell(value: object) -> str:
        return "" if value is None else str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(cell(r[c]) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


# How late a cron tier's run may be (queued behind another, slow) before its journey shows as
# stale; twice the tier's promise, and it fails.
FRESHNESS_GRACE = timedelta(minutes=15)
# The seconds tier's sensor starts a run at least once a minute (files landing, or work falling
# due with time): a journey not run for minutes means the sensor is off or its runs fail.
SENSOR_TIER_STALE = (timedelta(minutes=5), timedelta(minutes=15))


def freshness_policy(journey: Journey) -> dg.FreshnessPolicy:
    """How long a journey may go without a run before Dagster's freshness daemon (part of
    `dagster dev`) marks it stale (warn), then failed. The seconds tier's event-to-message
    latency itself is what benchmarks/tier_latency.py measures."""
    tier = TIERS[journey.tier]
    if tier.trigger != "cron":
        warn, fail = SENSOR_TIER_STALE
        return dg.FreshnessPolicy.time_window(warn_window=warn, fail_window=fail)
    promise = timedelta(seconds=tier.target_seconds)
    return dg.FreshnessPolicy.time_window(
        warn_window=promise + FRESHNESS_GRACE, fail_window=2 * promise + FRESHNESS_GRACE
    )


def person_partitions(count: int | None = None) -> dg.StaticPartitionsDefinition | None:
    """The activations' Dagster partitions, by a hash of the person id
    (SWITCHYARD_PERSON_PARTITIONS; none when it is 1, the default)."""
    count = configured_count() if count is None else count
    if count == 1:
        return None
    return dg.StaticPartitionsDefinition([p.key for p in all_partitions(count)])


def build_activation_asset(
    journey: Journey,
    dbt_models: dg.AssetsDefinition,
    uncounted: frozenset[str] = frozenset(),
    partitions_def: dg.StaticPartitionsDefinition | None = None,
) -> dg.AssetsDefinition:
    """`uncounted`: the transactional journeys and those the cap policy exempts, whose sends no
    cap counts. `partitions_def`: person_partitions(); each partition's run sends to its people
    only, beside the others. On DuckDB they read the published copy of the warehouse the tier's
    run ended with (switchyard/publish.py), never locked by dbt, so they need no turn in the
    warehouse pool and run at once; on Spark they read the tables themselves and take turns."""

    @dg.asset(
        key=activation_key(journey),
        deps=[
            get_asset_key_for_model([dbt_models], model)
            for model in (journey.audience_model, *MODELS_READ)
        ],
        group_name="activations",
        tags={"tier": journey.tier},
        freshness_policy=freshness_policy(journey),
        kinds={"python"},
        # On Spark there is no published copy: a partition's run reads the tables a dbt run may be
        # rewriting (a Parquet table is dropped, then made), so it takes its turn like the rest.
        pool=None if partitions_def and target() == "duckdb" else WAREHOUSE_POOL,
        description=f"Sends the due steps of journey {journey.name!r} and writes the ledger.",
        partitions_def=partitions_def,
    )
    def _activate(
        context: dg.AssetExecutionContext,
        config: JourneyRunConfig,
        warehouse: WarehouseResource,
        channels: ChannelsResource,
    ) -> dg.MaterializeResult:
        require_shared_warehouse(f"journey {journey.name!r}")
        paths = warehouse.paths()
        now = parse_utc(config.now) if config.now else None
        limits = DeliveryLimits.from_env()
        partition = None
        if context.has_partition_key:
            partition = PersonPartition.from_key(context.partition_key)
        # a partition's run reads the published copy of the DuckDB file; another engine is read
        # as Arrow (the partition's people only)
        duckdb_path = published_path(paths.duckdb) if partition else paths.duckdb
        with channels.settings(paths.home / "sandbox", journey.channels) as settings:
            summary = run_journey(
                journey,
                duckdb_path=duckdb_path,
                landing_dir=paths.landing,
                clients=settings.clients(),
                now=now,
                rate_limits=limits.rate_per_second,
                concurrency=limits.concurrency,
                uncounted_journeys=uncounted,
                links=settings.links,
                partition=partition,
                source=configured_source(duckdb_path),
            )
        context.log.info(f"journey {journey.name}: {summary.as_metadata()}")
        preview = run_preview(paths.landing, summary.run_id)
        return dg.MaterializeResult(
            metadata={
                "run_id": summary.run_id,
                "tier": journey.tier,
                **({"person_partition": partition.key} if partition else {}),
                **summary.as_metadata(),
                "first_decisions": dg.MetadataValue.md(markdown_table(preview)),
            }
        )

    return _activate
