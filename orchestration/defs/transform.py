# Dagster reads these annotations at definition time: no `from __future__ import annotations`.
"""dbt models as assets. Metrics are split off: they read the ledger the activations write, so they
run after them."""

import shutil
from collections.abc import Iterator, Mapping
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, dbt_assets

from orchestration.dbt_project import ensure_manifest, keep_partial_parse, switchyard_dbt
from orchestration.defs.resources import WarehouseResource
from switchyard import landing

# One writer at a time on the DuckDB file (docs/architecture.md, rule 6): every asset that opens it
# runs in this pool. Set its limit to 1 in the Dagster instance (see dagster.yaml).
WAREHOUSE_POOL = "switchyard_warehouse"
METRICS_SELECTION = "path:models/metrics"
ACTIVATION_KEY_PREFIX = "journey"


class SwitchyardTranslator(DagsterDbtTranslator):
    """Groups follow the folders (the data flow); metrics depend on every journey's activation."""

    def __init__(self, activation_keys: list[dg.AssetKey] | None = None) -> None:
        super().__init__()
        self.activation_keys = activation_keys or []

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        if dbt_resource_props["resource_type"] != "model":
            return None
        parts = dbt_resource_props["fqn"]
        return parts[1] if len(parts) > 2 else "default"

    def get_asset_spec(
        self, manifest: Mapping[str, Any], unique_id: str, project: Any
    ) -> dg.AssetSpec:
        spec = super().get_asset_spec(manifest, unique_id, project)
        props = manifest["nodes"].get(unique_id) or {}
        if props.get("resource_type") == "model" and props["fqn"][1:2] == ["metrics"]:
            spec = spec.merge_attributes(deps=self.activation_keys)
        return spec


def _build(dbt: DbtCliResource, context: dg.AssetExecutionContext) -> Iterator[Any]:
    invocation = dbt.cli(["build"], context=context)
    yield from invocation.stream()
    keep_partial_parse(invocation.target_path)
    # Each invocation writes its own target folder (manifest, compiled SQL: ~5 MB); the seconds
    # tier alone would leave thousands a day. Dagster has recorded what it needs; a failed
    # build's folder stays, for whoever looks into it.
    shutil.rmtree(invocation.target_path, ignore_errors=True)


def build_dbt_assets(activation_keys: list[dg.AssetKey]) -> list[dg.AssetsDefinition]:
    manifest = ensure_manifest()
    translator = SwitchyardTranslator(activation_keys)

    @dbt_assets(
        manifest=manifest,
        project=switchyard_dbt,
        dagster_dbt_translator=translator,
        exclude=METRICS_SELECTION,
        name="dbt_models",
        pool=WAREHOUSE_POOL,
    )
    def dbt_models(
        context: dg.AssetExecutionContext, dbt: DbtCliResource, warehouse: WarehouseResource
    ) -> Iterator[Any]:
        # Every landing folder must exist (even empty) for its source to be readable.
        landing.ensure_layout(warehouse.paths().landing)
        yield from _build(dbt, context)

    @dbt_assets(
        manifest=manifest,
        project=switchyard_dbt,
        dagster_dbt_translator=translator,
        select=METRICS_SELECTION,
        name="dbt_metrics",
        pool=WAREHOUSE_POOL,
    )
    def dbt_metrics(context: dg.AssetExecutionContext, dbt: DbtCliResource) -> Iterator[Any]:
        yield from _build(dbt, context)

    return [dbt_models, dbt_metrics]
