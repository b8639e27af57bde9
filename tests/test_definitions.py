"""The Dagster code location loads, in-process and through the CLI `dagster dev` uses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from orchestration.definitions import PIPELINE_JOB, build_definitions
from switchyard.settings import PROJECT_DIR


def test_definitions_have_the_flow() -> None:
    defs = build_definitions()
    graph = defs.resolve_asset_graph()
    journey = dg.AssetKey(["journey", "cart_abandonment"])
    assert graph.get(journey).group_name == "activations"
    assert {k.to_user_string() for k in graph.get(journey).parent_keys} == {
        "audience_cart_abandonment",
        "dim_people",
    }
    # Metrics read the ledger the journey writes, so they run after it.
    assert journey in graph.get(dg.AssetKey(["fct_deliveries"])).parent_keys
    assert defs.resolve_job_def(PIPELINE_JOB) is not None
    # What starts each tier a journey runs in: cart (seconds) on landed files, welcome (hours)
    # and lapsed (days) on schedules.
    assert {s.name for s in defs.schedules or []} == {
        "tier_hours_schedule",
        "tier_days_schedule",
        "ledger_upkeep_schedule",
    }
    assert [s.name for s in defs.sensors or []] == ["tier_seconds_on_landed_files"]
    # The ledger's compaction runs on its own schedule, after the journeys, never in a tier's run.
    compacted = dg.AssetKey(["ledger", "compacted"])
    assert journey in graph.get(compacted).parent_keys
    for job in ("tier_seconds", PIPELINE_JOB):
        assert compacted not in defs.resolve_job_def(job).asset_layer.executable_asset_keys
    assert defs.resolve_job_def("ledger_upkeep").asset_layer.executable_asset_keys == {compacted}
    lapsed = graph.get(dg.AssetKey(["journey", "lapsed_reengagement"]))
    assert lapsed.tags.get("tier") == "days"
    # The transitions the journeys record are staged with the metrics, after every journey.
    assert journey in graph.get(dg.AssetKey(["fct_journey_transitions"])).parent_keys
    # Every run ends by publishing the read-only copy, after the metrics it copies.
    published = dg.AssetKey(["published_warehouse"])
    assert dg.AssetKey(["fct_deliveries"]) in graph.get(published).parent_keys
    for job in ("tier_seconds", "tier_days", PIPELINE_JOB):
        assert published in defs.resolve_job_def(job).asset_layer.executable_asset_keys


def test_workspace_loads_with_the_dagster_cli(tmp_path: Path) -> None:
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    (tmp_path / "dagster.yaml").write_text(
        (PROJECT_DIR / "orchestration" / "dagster.yaml").read_text()
    )
    dagster = str(Path(sys.executable).parent / "dagster")
    done = subprocess.run(
        [dagster, "definitions", "validate", "-w", "workspace.yaml"],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Validation successful" in done.stdout + done.stderr
