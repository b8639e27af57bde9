"""The last asset of every run: the warehouse published read-only for BI tools and notebooks."""

import dagster as dg

from orchestration.defs.resources import WarehouseResource
from orchestration.defs.transform import WAREHOUSE_POOL
from switchyard.publish import publish
from switchyard.spark import SPARK_TARGETS, TARGET_VARIABLE, target

PUBLISHED_KEY = dg.AssetKey(["published_warehouse"])


def build_publish_asset(after: list[dg.AssetKey]) -> dg.AssetsDefinition:
    @dg.asset(
        key=PUBLISHED_KEY,
        deps=after,
        group_name="upkeep",
        kinds={"duckdb"},
        # it reads the working file: no dbt build or journey may hold it meanwhile
        pool=WAREHOUSE_POOL,
        description=(
            "A consistent copy of the warehouse swapped in atomically after the run "
            "(switchyard/publish.py): readers open it read-only and are never locked out."
        ),
    )
    def _publish(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource
    ) -> dg.MaterializeResult:
        if target() in SPARK_TARGETS:  # readers query the engine itself: no file to copy
            context.log.info(f"nothing to publish on {TARGET_VARIABLE}={target()}")
            return dg.MaterializeResult(metadata={"skipped": f"{TARGET_VARIABLE}={target()}"})
        done = publish(warehouse.paths().duckdb)
        context.log.info(f"published {done.path} in {done.seconds:.2f} s ({done.method})")
        return dg.MaterializeResult(
            metadata={
                "path": dg.MetadataValue.path(str(done.path)),
                "seconds": round(done.seconds, 3),
                "bytes": done.bytes,
                "method": done.method,
            }
        )

    return _publish
