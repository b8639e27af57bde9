"""Profiles after a small batch: the person-scoped incremental profile models against a full
rebuild of the same models on the same data, measured in the same run.

    python benchmarks/profiles_incremental.py [--size N] [--touched K]

Generates the sample data for N people (default 100,000) and builds the profiles
(`dbt run -s +models/profiles`). Then lands a batch in which K existing people (default 1,000)
identify with a new first name and open the app, and K new people sign up, and runs staging and
identity on it. The warehouse file is copied, and `dbt run -s models/profiles` runs on one copy
as the tiers run it (incremental) and with --full-refresh on the other (the baseline: every run
before the profiles were person-scoped). The two dim_people must agree.

Prints one `name=value unit` line per figure:
  profiles_full_seconds / profiles_incremental_seconds   dbt's wall time for the profile models;
  profiles_full_models_seconds / ..._incremental_models_seconds   the models' own time, summed;
  <model>_full_seconds / <model>_incremental_seconds   each person-scoped model's own time;
  dim_people_seconds   the full table every run still writes (its "days since" are as of the
                       latest activity of anyone);
  touched_people       people the incremental run recomputed;
  profiles_match       1 when both dim_people hold the same rows.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import duckdb

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))

from switchyard import events, landing, sample_data  # noqa: E402

DBT = str(Path(sys.executable).parent / "dbt")
PERSON_SCOPED = ("int_people_identifiers", "int_people_traits")
ANCHOR = datetime(2026, 12, 1, 12, 0)


def emit(name: str, value: float | int, unit: str = "s") -> None:
    shown = f"{value:.2f}" if isinstance(value, float) else str(value)
    print(f"{name}={shown} {unit}", flush=True)


def dbt_run(home: Path, *args: str, command: str = "run") -> tuple[float, dict[str, float]]:
    env = {
        **os.environ,
        "SWITCHYARD_HOME": str(home),
        "SWITCHYARD_LANDING_DIR": str(home / "landing"),
        "SWITCHYARD_DUCKDB_PATH": str(home / "switchyard.duckdb"),
        "DBT_TARGET_PATH": str(home / "target"),
    }
    cmd = [DBT, command, *args, "--project-dir", str(PROJECT_DIR)]
    cmd += ["--profiles-dir", str(PROJECT_DIR)]
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=PROJECT_DIR, env=env)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"dbt failed:\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}")
    if command != "run":
        return wall, {}
    results = json.loads((home / "target" / "run_results.json").read_text())["results"]
    return wall, {r["unique_id"].split(".")[-1]: r["execution_time"] for r in results}


def land_batch(home: Path, people: int, touched: int) -> None:
    at = ANCHOR + timedelta(minutes=5)
    rows = []
    for i in range(0, people, max(1, people // touched))[:touched]:
        user = f"u{i:07d}"
        rows.append(events.identify(at, user_id=user, traits={"first_name": f"Renamed{i}"}))
        rows.append(events.track("app_opened", at + timedelta(seconds=1), user_id=user))
    for i in range(touched):
        user, device = f"new{i:07d}", f"anon-new-{i}"
        rows.append(events.identify(at, user_id=user, anonymous_id=device,
                                    traits={"email": f"new.{i}@example.com"}))  # fmt: skip
        rows.append(events.track("signed_up", at, user_id=user, anonymous_id=device))
    landing.write_batch(home / "landing", "segment", "events", rows, prefix="bench")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100_000, help="people in the sample data")
    parser.add_argument("--touched", type=int, default=1_000, help="existing people in the batch")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-profiles-") as scratch:
        incremental = Path(scratch) / "incremental"
        sample_data.generate(incremental / "landing", people=args.size, anchor=ANCHOR)
        dbt_run(incremental, "-s", "+models/profiles")
        land_batch(incremental, args.size, args.touched)
        # Staging and identity take the batch in both copies alike.
        dbt_run(incremental, "-s", "+models/profiles", "--exclude", "models/profiles")
        full = Path(scratch) / "full"
        shutil.copytree(incremental, full, ignore=shutil.ignore_patterns("target"))
        dbt_run(full, command="parse")  # both timed runs start from a parsed project

        full_wall, full_steps = dbt_run(full, "-s", "models/profiles", "--full-refresh")
        db = duckdb.connect(str(incremental / "switchyard.duckdb"), read_only=True)
        newest = db.execute("select max(profiled_at) from int_people_traits").fetchone()
        db.close()
        inc_wall, inc_steps = dbt_run(incremental, "-s", "models/profiles")

        emit("profiles_full_seconds", full_wall)
        emit("profiles_incremental_seconds", inc_wall)
        emit("profiles_full_models_seconds", sum(full_steps.values()))
        emit("profiles_incremental_models_seconds", sum(inc_steps.values()))
        for model in PERSON_SCOPED:
            emit(f"{model}_full_seconds", full_steps[model])
            emit(f"{model}_incremental_seconds", inc_steps[model])
        emit("dim_people_seconds", inc_steps["dim_people"])

        con = duckdb.connect()
        con.execute(f"attach '{incremental / 'switchyard.duckdb'}' as inc (read_only)")
        con.execute(f"attach '{full / 'switchyard.duckdb'}' as full_ (read_only)")
        touched = con.execute(
            "select count(*) from inc.int_people_traits where profiled_at > ?",
            [newest[0] if newest else None],
        ).fetchone()
        emit("touched_people", int(touched[0] if touched else 0), "count")
        differ = con.execute(
            "select count(*) from ((select * from inc.dim_people except all "
            "select * from full_.dim_people) union all (select * from full_.dim_people "
            "except all select * from inc.dim_people))"
        ).fetchone()
        emit("profiles_match", int(differ is not None and differ[0] == 0), "bool")


if __name__ == "__main__":
    main()
