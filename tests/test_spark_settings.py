"""The Spark targets' settings as readers beside dbt see them (switchyard/spark.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from switchyard.publish import published_path
from switchyard.spark import (
    require_shared_warehouse,
    serve_command,
    session_settings,
    target,
)


def test_readers_open_the_metastore_and_warehouse_dbt_writes() -> None:
    settings = session_settings({"SWITCHYARD_HOME": "/data/sy", "HOME": "/root"})
    assert settings["spark.sql.warehouse.dir"] == "/data/sy/spark/warehouse"
    assert "/data/sy/spark/metastore" in settings["spark.hadoop.javax.jdo.option.ConnectionURL"]
    assert settings["spark.sql.session.timeZone"] == "UTC"
    assert settings["spark.sql.ansi.enabled"] == "false"  # as dbt-spark sets it
    master = session_settings({"SWITCHYARD_HOME": "/x", "SWITCHYARD_SPARK_MASTER": "local[8]"})
    assert master["spark.master"] == "local[8]"


def test_the_target_is_one_setting() -> None:
    assert target({}) == "duckdb"
    assert target({"SWITCHYARD_TARGET": "spark"}) == "spark"


def test_journeys_run_where_spark_is_shared_and_stop_where_one_process_holds_it() -> None:
    require_shared_warehouse("journey 'cart'", {})
    require_shared_warehouse("journey 'cart'", {"SWITCHYARD_TARGET": "spark_connect"})
    with pytest.raises(RuntimeError, match="switchyard spark-connect"):
        require_shared_warehouse("journey 'cart'", {"SWITCHYARD_TARGET": "spark"})


def test_a_connect_session_names_the_server_and_the_server_holds_the_static_settings() -> None:
    env = {"SWITCHYARD_HOME": "/data/sy", "SWITCHYARD_SPARK_REMOTE": "sc://spark.internal:443"}
    client = session_settings(env, "spark_connect")
    assert client["spark.remote"] == "sc://spark.internal:443"
    # pyspark refuses a master beside a remote; the warehouse and metastore are the server's
    assert not {"spark.master", "spark.sql.warehouse.dir"} & set(client)
    assert client["spark.sql.session.timeZone"] == "UTC"
    command = serve_command(15099, env)
    confs = dict(command[i + 1].split("=", 1) for i, c in enumerate(command) if c == "--conf")
    assert confs["spark.sql.warehouse.dir"] == "/data/sy/spark/warehouse"
    assert confs["spark.connect.grpc.binding.port"] == "15099"
    assert confs["spark.connect.grpc.binding.address"] == "127.0.0.1"
    assert confs["spark.sql.catalogImplementation"] == "hive"


def test_publishing_copies_nothing_where_readers_query_spark(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dagster as dg

    from orchestration.defs.publish import build_publish_asset
    from orchestration.defs.resources import WarehouseResource
    from tests.conftest import private_home

    paths = private_home(tmp_path, monkeypatch)
    monkeypatch.setenv("SWITCHYARD_TARGET", "spark_connect")
    result = dg.materialize([build_publish_asset([])], resources={"warehouse": WarehouseResource()})
    (event,) = result.asset_materializations_for_node("published_warehouse")
    assert event.metadata["skipped"].value == "SWITCHYARD_TARGET=spark_connect"
    assert not published_path(paths.duckdb).exists()
