"""One asset per declared sync (meta.syncs), downstream of its model, on the sync's tier."""

import dagster as dg
from dagster_dbt import get_asset_key_for_model

from activations.arrow_warehouse import configured_source
from activations.syncs import MassRemovalError, Sync, load_syncs, run_sync
from activations.syncs.settings import open_destination
from orchestration.dbt_project import ensure_manifest
from orchestration.defs.resources import WarehouseResource
from orchestration.defs.transform import WAREHOUSE_POOL
from switchyard import landing
from switchyard.spark import require_shared_warehouse

SYNC_KEY_PREFIX = "sync"


class SyncRunConfig(dg.Config):
    # Go on when more than the sync's max_removal_share of the destination's rows would be
    # removed (set it in the launchpad after checking the model).
    confirm_removals: bool = False


def sync_key(sync: Sync) -> dg.AssetKey:
    return dg.AssetKey([SYNC_KEY_PREFIX, sync.name])


def declared_syncs() -> list[Sync]:
    return load_syncs(ensure_manifest())


def build_sync_asset(sync: Sync, dbt_models: dg.AssetsDefinition) -> dg.AssetsDefinition:
    what = (
        f"membership of {sync.model} in {sync.membership}"
        if sync.is_audience
        else f"{len(sync.attributes)} attributes of {sync.model}"
    )

    @dg.asset(
        key=sync_key(sync),
        deps=[get_asset_key_for_model([dbt_models], sync.model)],
        group_name="activations",
        tags={"tier": sync.tier},
        kinds={"python", sync.destination},
        # It reads the working warehouse file: not while dbt writes it.
        pool=WAREHOUSE_POOL,
        description=f"Sends {what} to {sync.destination}: changed rows only.",
    )
    def _sync(
        context: dg.AssetExecutionContext, config: SyncRunConfig, warehouse: WarehouseResource
    ) -> dg.MaterializeResult:
        require_shared_warehouse(f"sync {sync.name!r}")
        paths = warehouse.paths()
        landing.ensure_layout(paths.landing)
        try:
            with open_destination(sync.destination, paths.home / "sandbox") as destination:
                summary = run_sync(
                    sync,
                    configured_source(paths.duckdb),
                    paths.landing,
                    destination,
                    config.confirm_removals,
                )
        except MassRemovalError as exc:
            raise dg.Failure(
                str(exc), metadata={"fix": "launch again with config confirm_removals: true"}
            ) from exc
        context.log.info(f"sync {sync.name}: {summary.as_metadata()}")
        return dg.MaterializeResult(metadata=summary.as_metadata())

    return _sync
