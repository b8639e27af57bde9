"""Upkeep assets: the ledger's compaction, so what each run reads stops growing with history."""

import dagster as dg

from activations.ledger.compact import compact
from orchestration.defs.resources import WarehouseResource

LEDGER_COMPACTION_KEY = dg.AssetKey(["ledger", "compacted"])


def build_ledger_compaction_asset(activations: list[dg.AssetKey]) -> dg.AssetsDefinition:
    # No warehouse pool: it writes landing files only, and is safe beside running journeys (a
    # run file still being written is left for the next time).
    @dg.asset(
        key=LEDGER_COMPACTION_KEY,
        deps=activations,
        group_name="upkeep",
        kinds={"python", "parquet"},
        description=(
            "Moves finished ledger run files into Parquet and each send key's state into one "
            "keys file (activations/ledger/compact.py); dbt's staging reads both."
        ),
    )
    def _compact(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource
    ) -> dg.MaterializeResult:
        done = compact(warehouse.paths().landing)
        context.log.info(f"ledger compaction: {done}")
        return dg.MaterializeResult(
            metadata={
                "generation": done.generation,
                "run_files": done.run_files,
                "lines": done.lines,
                "keys": done.keys,
                "deleted_run_files": done.deleted,
            }
        )

    return _compact
