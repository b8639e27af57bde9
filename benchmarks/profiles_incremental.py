"""Profiles after a small batch: the person-scoped incremental profile models against a full
rebuild of the same models on the same data, measured in the same run.

    python benchmarks/profiles_incremental.py [--size N] [--touched K]

Generates the sample data for N people (default 100,000) and builds the profiles
(`dbt run -s +models/profiles`). Then lands a batch in which K existing people (default 1,000)
identify with a new first name and open the app, and K new people sign up, and runs staging and
identity on it. Then, --repeat times (default 3, alternating which goes first), `dbt run -s
models/profiles` runs on a fresh copy of that warehouse as the tiers run it (incremental) and
with --full-refresh on another (the baseline: every run before the profiles were person-scoped).
Both start from the same data and the same parse state; the copies must agree.

Prints one `name=value unit` line per figure (medians):
  profiles_full_seconds / profiles_incremental_seconds   dbt's wall time for the profile models;
  profiles_full_models_seconds / ..._incremental_models_seconds   the models' own time, summed;
  <model>_full_seconds / <model>_incremental_seconds   each person-scoped model's own time;
  full_table_models_seconds   the incremental run's time in the models that stay full tables;
  dim_people_seconds   the largest of them (its "days since" are as of the latest activity of
                       anyone: every row changes when anyone is active);
  touched_people       people the incremental run recomputed;
  profiles_match       1 when both copies' person-scoped models and dim_people hold the same
                       rows.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
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


def dbt_run(home: Path, *args: str) -> tuple[float, dict[str, float]]:
    env = {
        **os.environ,
        "SWITCHYARD_HOME": str(home),
        "SWITCHYARD_LANDING_DIR": str(home / "landing"),
        "SWITCHYARD_DUCKDB_PATH": str(home / "switchyard.duckdb"),
        "DBT_TARGET_PATH": str(home / "target"),
    }
    cmd = [DBT, "run", *args, "--project-dir", str(PROJECT_DIR)]
    cmd += ["--profiles-dir", str(PROJECT_DIR)]
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=PROJECT_DIR, env=env)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"dbt failed:\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}")
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


def compare(first: Path, second: Path, model: str) -> int:
    """Rows in one copy's model and not the other's (profiled_at aside: when a row was computed)."""
    con = duckdb.connect()
    con.execute(f"attach '{first / 'switchyard.duckdb'}' as a (read_only)")
    con.execute(f"attach '{second / 'switchyard.duckdb'}' as b (read_only)")
    cols = "* exclude (profiled_at)" if model in PERSON_SCOPED else "*"
    a, b = f"select {cols} from a.{model}", f"select {cols} from b.{model}"
    found = con.execute(
        f"select count(*) from (({a} except all {b}) union all ({b} except all {a}))"
    )
    differ = found.fetchone()
    con.close()
    return differ[0] if differ else -1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100_000, help="people in the sample data")
    parser.add_argument("--touched", type=int, default=1_000, help="existing people in the batch")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each mode (medians)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-profiles-") as scratch:
        base = Path(scratch) / "base"
        sample_data.generate(base / "landing", people=args.size, anchor=ANCHOR)
        dbt_run(base, "-s", "+models/profiles")
        land_batch(base, args.size, args.touched)
        # Staging and identity take the batch once; each timed run starts from a copy of this.
        dbt_run(base, "-s", "+models/profiles", "--exclude", "models/profiles")
        db = duckdb.connect(str(base / "switchyard.duckdb"), read_only=True)
        newest = db.execute("select max(profiled_at) from int_people_traits").fetchone()
        db.close()

        walls: dict[str, list[float]] = {"full": [], "incremental": []}
        steps: dict[str, list[dict[str, float]]] = {"full": [], "incremental": []}
        for i in range(args.repeat):
            # alternating which goes first, so neither always meets a warmer page cache
            for mode in ("full", "incremental") if i % 2 == 0 else ("incremental", "full"):
                home = Path(scratch) / mode
                shutil.rmtree(home, ignore_errors=True)
                shutil.copytree(base, home)
                extra = ["--full-refresh"] if mode == "full" else []
                wall, step = dbt_run(home, "-s", "models/profiles", *extra)
                walls[mode].append(wall)
                steps[mode].append(step)

        def median_step(mode: str, model: str | None = None) -> float:
            return statistics.median(s[model] if model else sum(s.values()) for s in steps[mode])

        for mode in ("full", "incremental"):
            emit(f"profiles_{mode}_seconds", statistics.median(walls[mode]))
            emit(f"profiles_{mode}_models_seconds", median_step(mode))
        for model in PERSON_SCOPED:
            for mode in ("full", "incremental"):
                emit(f"{model}_{mode}_seconds", median_step(mode, model))
        rest = [m for m in steps["incremental"][0] if m not in PERSON_SCOPED]
        emit(
            "full_table_models_seconds",
            statistics.median(sum(s[m] for m in rest) for s in steps["incremental"]),
        )
        emit("dim_people_seconds", median_step("incremental", "dim_people"))

        incremental, full = Path(scratch) / "incremental", Path(scratch) / "full"
        con = duckdb.connect(str(incremental / "switchyard.duckdb"), read_only=True)
        touched = con.execute(
            "select count(*) from int_people_traits where profiled_at > ?",
            [newest[0] if newest else None],
        ).fetchone()
        con.close()
        emit("touched_people", int(touched[0] if touched else 0), "count")
        differing = sum(compare(incremental, full, m) for m in (*PERSON_SCOPED, "dim_people"))
        emit("profiles_match", int(differing == 0), "bool")


if __name__ == "__main__":
    main()
