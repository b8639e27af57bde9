"""Retention after each days-tier run: what is past the windows the dbt YAML declares goes from
the landing files and the declared warehouse tables (switchyard/privacy/retention.py)."""

import dagster as dg

from orchestration.dbt_project import ensure_manifest
from orchestration.defs.publish import PUBLISHED_KEY
from orchestration.defs.resources import WarehouseResource
from orchestration.defs.transform import WAREHOUSE_POOL
from switchyard.privacy.retention import enforce, load_policy

RETENTION_KEY = dg.AssetKey(["privacy", "retention"])
# The tier whose runs end with it: daily is what the windows (in days) need.
RETENTION_TIER = "days"


@dg.asset(
    key=RETENTION_KEY,
    deps=[PUBLISHED_KEY],
    group_name="upkeep",
    kinds={"python", "duckdb"},
    # it trims warehouse tables and rewrites the file: no dbt build or journey meanwhile
    pool=WAREHOUSE_POOL,
    description=(
        "Removes, or empties the personal columns of, what is past each `meta.retention` window "
        "of the landing sources and models, rewrites the warehouse file and republishes it; "
        "the report (landing/privacy/retention/) says what went."
    ),
)
def privacy_retention(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    paths = warehouse.paths()
    done = enforce(paths.landing, paths.duckdb, load_policy(ensure_manifest()))
    for store, counts in sorted(done.stores.items()):
        context.log.info(f"retention {store}: {counts}")
    if done.busy:
        context.log.warning(f"{len(done.busy)} files were being written: the next run takes them")
    return dg.MaterializeResult(
        metadata={
            "rows_removed": done.rows_removed,
            "rows_redacted": done.rows_redacted,
            "files_being_written": len(done.busy),
            "report": dg.MetadataValue.path(done.path or ""),
            "by_store": dg.MetadataValue.json(done.stores),
            "policy": dg.MetadataValue.json(done.policy),
        }
    )
