"""Running the whole pipeline once, in-process: what `switchyard demo` and the tests call."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import dagster as dg

from switchyard.settings import Paths


def run_pipeline(
    paths: Paths,
    now: datetime | None = None,
    log_level: str = "WARNING",
    job: str | None = None,
    partition_key: str | None = None,
) -> dg.ExecuteInProcessResult:
    """dbt models, every journey, then metrics, as one Dagster job run in this process (or
    another job: a tier's, `tier_seconds`; with SWITCHYARD_PERSON_PARTITIONS, its partitioned
    sends, `tier_seconds_sends`, one `partition_key` a run)."""
    paths.export()  # dbt subprocesses and resources read the same paths
    from orchestration.definitions import PIPELINE_JOB, build_definitions

    defs = build_definitions()
    job_def = defs.resolve_job_def(job or PIPELINE_JOB)
    run_config: dict[str, Any] = {"loggers": {"console": {"config": {"log_level": log_level}}}}
    if now is not None:
        run_config["ops"] = {
            _op_name(key): {"config": {"now": now.isoformat()}}
            for key in job_def.asset_layer.executable_asset_keys
            if key.path[0] == "journey"
        }
    with dg.instance_for_test() as instance:
        return job_def.execute_in_process(
            run_config=run_config,
            instance=instance,
            raise_on_error=True,
            partition_key=partition_key,
        )


def _op_name(key: dg.AssetKey) -> str:
    return "__".join(key.path)
