"""The long-lived dbt (orchestration/dbt_server): `switchyard-dbt` as dagster-dbt runs it, a real
server process it starts, a real DuckDB file. Invocations answer as dbt's CLI does (JSON log
lines, exit codes), one server serves a home's steps, and between them the warehouse file is
free for the activations and readers."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import duckdb
import pytest

from orchestration.dbt_server import server_paths
from switchyard import landing
from switchyard.settings import PROJECT_DIR

CLIENT = Path(sys.executable).parent / "switchyard-dbt"
MODEL = "stg_preferences__consents"


def step_env(home: Path, project: Path, **extra: str) -> dict[str, str]:
    """The environment dagster-dbt gives a step's dbt executable."""
    env = {
        **os.environ,
        "SWITCHYARD_HOME": str(home),
        "DBT_PROJECT_DIR": str(project),
        "DBT_PROFILES_DIR": str(project),
        "DBT_LOG_FORMAT": "json",
        "DBT_TARGET_PATH": str(home / "target"),
        "DBT_LOG_PATH": str(home / "target"),
        **extra,
    }
    for name in ("SWITCHYARD_DUCKDB_PATH", "SWITCHYARD_LANDING_DIR"):
        env.pop(name, None)
    return env


def invoke(
    home: Path, *args: str, project: Path = PROJECT_DIR, **extra: str
) -> tuple[int, list[dict[str, Any]]]:
    """What dagster-dbt does for a step: the client under its environment; (exit code, lines)."""
    done = subprocess.run([str(CLIENT), *args], env=step_env(home, project, **extra), cwd=project,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    return done.returncode, [json.loads(line) for line in done.stdout.splitlines() if line]


def home_at(path: Path) -> Path:
    landing.ensure_layout(path / "landing")
    return path


def served_by(lines: list[dict[str, Any]]) -> set[int]:
    return {line["info"]["pid"] for line in lines}


@pytest.mark.slow
def test_a_homes_steps_are_served_by_one_dbt_that_lets_go_of_the_warehouse(
    tmp_path: Path,
) -> None:
    home = home_at(tmp_path / "a")
    code, first = invoke(home, "run", "--select", MODEL)
    assert code == 0
    # the result event dagster-dbt makes a materialization of, as the CLI prints it (info level)
    results = [ln for ln in first if ln["info"]["name"] == "LogModelResult"]
    assert [ln["data"]["node_info"]["node_name"] for ln in results] == [MODEL]
    assert results[0]["data"]["node_info"]["node_status"] == "success"
    assert {ln["info"]["level"] for ln in first} <= {"info", "warn", "error"}
    # dbt wrote its artifacts where the step asked, as the CLI would
    artifact = json.loads((home / "target" / "run_results.json").read_text())
    # (the project's on-run-start hook is a result of its own: a no-op on DuckDB)
    models = [r for r in artifact["results"] if r["unique_id"].startswith("model.")]
    assert [r["status"] for r in models] == ["success"]
    # Between steps the file is free: an activation (another process) opens it to write.
    con = duckdb.connect(str(home / "switchyard.duckdb"))
    assert con.execute(f"select count(*) from {MODEL}").fetchall() == [(0,)]
    con.close()
    # dagster-dbt gives each step a target folder of its own: still the same server
    code, second = invoke(home, "run", "--select", MODEL, DBT_TARGET_PATH=str(home / "t2"))
    assert code == 0 and (home / "t2" / "run_results.json").exists()
    (server,) = served_by(first) | served_by(second)  # one process, still there
    assert server != os.getpid()
    # A parse is dbt's own (its point is the manifest it writes)
    (home / "target" / "manifest.json").unlink()
    code, parsed = invoke(home, "parse")
    assert code == 0 and (home / "target" / "manifest.json").exists()
    assert server not in served_by(parsed)
    # switched off: dbt itself, in the step's own process
    code, own = invoke(home, "run", "--select", MODEL, SWITCHYARD_DBT_SERVER="off")
    assert code == 0 and server not in served_by(own)
    # Exit codes as dbt's CLI gives them: 1 a node failed, 2 an error it did not handle.
    assert invoke(home, "run", "--select", "no_such_model_anywhere")[0] == 0  # nothing to do
    assert invoke(home, "no-such-command")[0] == 2
    # A home of its own gets a server of its own: the manifest holds the home's landing paths.
    other = home_at(tmp_path / "b")
    # its view over the staging view not built yet: that node fails
    code, failed = invoke(other, "run", "--select", "int_user_consents_current")
    assert code == 1
    assert any(ln["info"]["level"] == "error" for ln in failed)
    code, elsewhere = invoke(other, "run", "--select", MODEL)
    assert code == 0 and served_by(elsewhere) != {server}
    assert (other / "switchyard.duckdb").exists()
    assert server_paths(PROJECT_DIR, {"SWITCHYARD_HOME": str(home)}) != server_paths(
        PROJECT_DIR, {"SWITCHYARD_HOME": str(other)}
    )


def test_version_is_answered_without_dbt(tmp_path: Path) -> None:
    # dagster-dbt asks every step; the real dbt takes seconds to import itself to answer (and
    # says more: the latest version, its plugins).
    done = subprocess.run([str(CLIENT), "--version"], capture_output=True, text=True, check=True)
    assert done.stdout == f"Core:\n  - installed: {version('dbt-core')}\n"
    real = subprocess.run([str(CLIENT), "--version"], capture_output=True, text=True, check=True,
                          env={**os.environ, "SWITCHYARD_DBT_SERVER": "off"})  # fmt: skip
    assert "installed: " + version("dbt-core") in real.stdout and real.stdout != done.stdout


def project_copy(target: Path) -> Path:
    """The dbt project's own files, to change without touching the repository's."""
    target.mkdir()
    for name in ("dbt_project.yml", "profiles.yml"):
        shutil.copy2(PROJECT_DIR / name, target / name)
    for folder in ("models", "macros", "tests/dbt"):
        shutil.copytree(PROJECT_DIR / folder, target / folder)
    return target


def test_a_changed_project_is_parsed_again_and_a_stopped_step_frees_the_warehouse(
    tmp_path: Path,
) -> None:
    project = project_copy(tmp_path / "project")
    home = home_at(tmp_path / "home")
    code, first = invoke(home, "run", "--select", MODEL, project=project)
    assert code == 0
    (server,) = served_by(first)
    # a model added, then renamed: the same server builds it under each name
    added = project / "models" / "zz_added.sql"
    added.write_text("select 1 as answer")
    code, lines = invoke(home, "run", "--select", "zz_added", project=project)
    assert code == 0 and built(lines) == ["zz_added"] and served_by(lines) == {server}
    added.rename(project / "models" / "zz_renamed.sql")
    code, lines = invoke(home, "run", "--select", "zz_renamed", project=project)
    assert code == 0 and built(lines) == ["zz_renamed"]
    # A step cancelled mid-model (dagster-dbt sends SIGINT to its executable): the client ends
    # once the server stopped the query and let go of the warehouse, not before.
    (project / "models" / "zz_slow.sql").write_text(
        "{{ config(materialized='table') }}\n"
        "select count(*) as n from range(5000000000) t(i) where hash(i * 7919) % 13 = 0"
    )
    env = step_env(home, project)
    step = subprocess.Popen([str(CLIENT), "run", "--select", "zz_slow"], cwd=project, env=env,
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert step.stdout is not None
    for line in step.stdout:  # until the model is running
        if json.loads(line)["info"]["name"] == "LogStartLine":
            break
    step.send_signal(signal.SIGINT)
    step.stdout.read()
    assert step.wait(timeout=60) != 0
    con = duckdb.connect(str(home / "switchyard.duckdb"))  # free the moment the step ended
    assert con.execute(
        "select count(*) from information_schema.tables where table_name = 'zz_slow'"
    ).fetchall() == [(0,)]
    con.close()
    code, lines = invoke(home, "run", "--select", MODEL, project=project)
    assert code == 0 and served_by(lines) == {server}  # and the server serves on
    # Stopped while the server parses the changed project: nothing runs, here or elsewhere
    # (the client does not fall back to running dbt itself).
    (project / "models" / "zz_other.sql").write_text("select 2 as answer")
    step = subprocess.Popen([str(CLIENT), "run", "--select", "zz_slow"], cwd=project, env=env,
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    time.sleep(0.5)
    step.send_signal(signal.SIGINT)
    out, _ = step.communicate(timeout=60)
    assert step.returncode != 0
    assert served_by([json.loads(line) for line in out.splitlines() if line]) <= {server}
    assert invoke(home, "run", "--select", MODEL, project=project)[0] == 0


def built(lines: list[dict[str, Any]]) -> list[str]:
    return [
        ln["data"]["node_info"]["node_name"]
        for ln in lines
        if ln["info"]["name"] == "LogModelResult"
        and ln["data"]["node_info"]["node_status"] == "success"
    ]
