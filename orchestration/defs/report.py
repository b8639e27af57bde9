"""The journey report (switchyard/report.py) after each days-tier run and each full pipeline run:
on DuckDB it reads the published copy, so it needs no warehouse pool and never waits on a run;
on Spark, the engine's warehouse."""

import dagster as dg

from activations.arrow_warehouse import configured_source
from orchestration.defs.publish import PUBLISHED_KEY
from orchestration.defs.resources import WarehouseResource
from orchestration.defs.transform import WAREHOUSE_POOL
from switchyard.report import default_output, write_report
from switchyard.spark import require_shared_warehouse, target

REPORT_KEY = dg.AssetKey(["journey_report"])
# The tier whose runs end with the report; the faster tiers' runs leave it be.
REPORT_TIER = "days"


@dg.asset(
    key=REPORT_KEY,
    deps=[PUBLISHED_KEY],
    group_name="upkeep",
    kinds={"html"},
    # the published copy is never locked; the engine's tables are made again by dbt's runs
    pool=None if target() == "duckdb" else WAREHOUSE_POOL,
    description=(
        "One self-contained HTML file with each journey's funnel, experiment lift with its "
        "interval, channel mix over time, attribution shares and messages per person per week "
        "(`switchyard report` writes the same)."
    ),
)
def journey_report(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    require_shared_warehouse("the journey report")
    paths = warehouse.paths()
    written = write_report(configured_source(paths.duckdb), default_output(paths.home))
    context.log.info(f"journey report: {written.path}")
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(written.path)),
            "journeys": ", ".join(written.journeys),
            "bytes": written.path.stat().st_size,
        }
    )
