"""The `spark` target's settings as readers beside dbt see them (switchyard/spark.py)."""

from __future__ import annotations

import pytest

from switchyard.spark import require_duckdb_target, session_settings, target


def test_readers_open_the_metastore_and_warehouse_dbt_writes() -> None:
    settings = session_settings({"SWITCHYARD_HOME": "/data/sy", "HOME": "/root"})
    assert settings["spark.sql.warehouse.dir"] == "/data/sy/spark/warehouse"
    assert "/data/sy/spark/metastore" in settings["spark.hadoop.javax.jdo.option.ConnectionURL"]
    assert settings["spark.sql.session.timeZone"] == "UTC"
    assert settings["spark.sql.ansi.enabled"] == "false"  # as dbt-spark sets it
    master = session_settings({"SWITCHYARD_HOME": "/x", "SWITCHYARD_SPARK_MASTER": "local[8]"})
    assert master["spark.master"] == "local[8]"


def test_the_target_is_one_setting_and_duckdb_only_parts_say_so() -> None:
    assert target({}) == "duckdb"
    assert target({"SWITCHYARD_TARGET": "spark"}) == "spark"
    require_duckdb_target("publishing", {})
    with pytest.raises(RuntimeError, match="SWITCHYARD_TARGET='spark'"):
        require_duckdb_target("journey 'cart'", {"SWITCHYARD_TARGET": "spark"})
