"""The journey report (switchyard/report.py) after each days-tier run and each full pipeline run:
it reads the published copy, so it needs no warehouse pool and never waits on a run."""

import dagster as dg

from orchestration.defs.publish import PUBLISHED_KEY
from orchestration.defs.resources import WarehouseResource
from switchyard.report import default_output, write_report

REPORT_KEY = dg.AssetKey(["journey_report"])
# The tier whose runs end with the report; the faster tiers' runs leave it be.
REPORT_TIER = "days"


@dg.asset(
    key=REPORT_KEY,
    deps=[PUBLISHED_KEY],
    group_name="upkeep",
    kinds={"html"},
    description=(
        "One self-contained HTML file with each journey's funnel, experiment lift with its "
        "interval, channel mix over time, attribution shares and messages per person per week "
        "(`switchyard report` writes the same)."
    ),
)
def journey_report(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    paths = warehouse.paths()
    written = write_report(paths.duckdb, default_output(paths.home))
    context.log.info(f"journey report: {written.path}")
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(written.path)),
            "journeys": ", ".join(written.journeys),
            "bytes": written.path.stat().st_size,
        }
    )
