"""Running dbt against a test's own DuckDB file.

dbt runs as a subprocess, as Dagster runs it: in-process dbt-duckdb keeps its connection open,
and DuckDB refuses a second, read-only one from the same process.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb

from switchyard.settings import PROJECT_DIR, Paths

DBT = str(Path(sys.executable).parent / "dbt")
TESTS_TARGET_PREFIX = "tests-"


def dbt_env(paths: Paths) -> dict[str, str]:
    return {
        **os.environ,
        "SWITCHYARD_HOME": str(paths.home),
        "SWITCHYARD_LANDING_DIR": str(paths.landing),
        "SWITCHYARD_DUCKDB_PATH": str(paths.duckdb),
    }


def dbt_build(
    paths: Paths,
    *selection: str,
    dbt_vars: dict[str, Any] | None = None,
    full_refresh: bool = False,
    command: str = "build",
    extra: list[str] | None = None,
) -> str:
    """Build (and test) the selection; returns dbt's output, raises with it on failure.
    `command="test"` only tests it."""
    args = [DBT, command, "--project-dir", str(PROJECT_DIR), "--profiles-dir", str(PROJECT_DIR)]
    if selection:
        # Cautious: a partial build skips tests that also read models outside the selection.
        args += ["--select", *selection, "--indirect-selection", "cautious"]
    if dbt_vars:
        args += ["--vars", json.dumps(dbt_vars)]
    if full_refresh:
        args.append("--full-refresh")
    args += extra or []
    # dbt parses the whole project again when the DuckDB path or the vars differ from those its
    # partial-parse file was saved under: one target folder for each pair keeps theirs (and
    # leaves the project's manifest to Dagster).
    key = hashlib.sha256(f"{paths.duckdb}\0{json.dumps(dbt_vars)}".encode()).hexdigest()
    target = PROJECT_DIR / "target" / f"{TESTS_TARGET_PREFIX}{key[:12]}"
    env = {**dbt_env(paths), "DBT_TARGET_PATH": str(target)}
    done = subprocess.run(args, capture_output=True, text=True, cwd=PROJECT_DIR, env=env)
    if done.returncode != 0:
        raise AssertionError(f"dbt {command} failed:\n{done.stdout[-4000:]}\n{done.stderr[-2000:]}")
    return done.stdout


def query(paths: Paths, sql: str) -> list[dict[str, Any]]:
    con = duckdb.connect(str(paths.duckdb), read_only=True)
    try:
        cur = con.execute(sql)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    finally:
        con.close()
