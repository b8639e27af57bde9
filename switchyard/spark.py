"""The Spark session of the `spark` dbt target, for readers beside dbt (activations, tests).

Its settings are the profile's (profiles.yml, outputs.spark.server_side_parameters), read with
the same environment variables, so a reader opens the metastore and warehouse folder dbt
writes. In one process, dbt-spark (method: session) and these readers share one session.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import jinja2
import yaml  # type: ignore[import-untyped]

from switchyard.settings import PROJECT_DIR

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

TARGET_VARIABLE = "SWITCHYARD_TARGET"


def target(environ: Mapping[str, str] = os.environ) -> str:
    """The dbt target this process builds and reads: duckdb (the default) or spark."""
    return environ.get(TARGET_VARIABLE, "duckdb")


def require_duckdb_target(what: str, environ: Mapping[str, str] = os.environ) -> None:
    """Stop `what` (a Dagster asset reading the DuckDB file) when dbt builds another target: it
    would act on a stale file, if one is there at all."""
    if target(environ) != "duckdb":
        raise RuntimeError(
            f"{what} reads the DuckDB warehouse, but {TARGET_VARIABLE}={target(environ)!r}: "
            "Dagster's journeys and publish run on the duckdb target only for now (the engine "
            "reads Spark through activations/arrow_warehouse.py; see docs/scaling.md)"
        )


def session_settings(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The spark output's server_side_parameters, rendered as dbt renders them."""
    profile = yaml.safe_load((PROJECT_DIR / "profiles.yml").read_text())
    raw: dict[str, Any] = profile["switchyard"]["outputs"]["spark"]["server_side_parameters"]

    def env_var(name: str, default: str | None = None) -> str:
        if name in environ:
            return environ[name]
        if default is None:
            raise KeyError(f"profiles.yml needs the environment variable {name}")
        return default

    render = jinja2.Environment(undefined=jinja2.StrictUndefined)
    settings = {k: render.from_string(str(v)).render(env_var=env_var) for k, v in raw.items()}
    # dbt-spark turns ANSI mode off on every statement; readers must parse SQL the same way.
    settings["spark.sql.ansi.enabled"] = "false"
    return settings


def spark_session(environ: Mapping[str, str] = os.environ) -> SparkSession:
    """The process's Spark session (created with the profile's settings if there is none)."""
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.enableHiveSupport()
    for key, value in session_settings(environ).items():
        builder = builder.config(key, value)
    return builder.getOrCreate()
