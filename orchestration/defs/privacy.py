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


FORGET_REQUESTS_KEY = dg.AssetKey(["privacy", "forget_requests"])
# Deletion requests taken by the collector are carried out by these tiers' runs (hourly at
# most an hour after they arrive; the identifier is blocked from the moment it is accepted).
FORGET_REQUEST_TIERS = {"hours", "days"}


@dg.asset(
    key=FORGET_REQUESTS_KEY,
    deps=[PUBLISHED_KEY],
    group_name="upkeep",
    kinds={"python", "duckdb"},
    pool=WAREHOUSE_POOL,  # a forget purges warehouse tables and rewrites the file
    description=(
        "Forgets everyone the collector's POST /v1/privacy/forget queued "
        "(switchyard/privacy/requests.py): landing files, warehouse, platforms; each request's "
        "tombstone is its audit."
    ),
)
def privacy_forget_requests(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    from activations.syncs import sync_destinations
    from switchyard.privacy import requests

    paths = warehouse.paths()
    if not requests.pending(paths.landing):
        return dg.MaterializeResult(metadata={"requests": 0})
    done = requests.process(paths, sync_destinations(ensure_manifest()))
    for p in done:
        log = context.log.info if p.outcome == "completed" else context.log.warning
        log(f"forget request {p.request_id}: {p.outcome} {p.reason}".rstrip())
    return dg.MaterializeResult(
        metadata={
            "requests": len(done),
            "completed": sum(p.outcome == "completed" for p in done),
            "unfinished": [p.request_id for p in done if p.outcome == "unfinished"],
            "refused": {p.request_id: p.reason for p in done if p.outcome == "refused"},
        }
    )
