"""The same dbt project built on each engine over the same sample data: the figures behind
docs/scaling.md.

    python benchmarks/engines.py [--size N] [--engines duckdb,spark]   (N people, default 2,000)

Generates N people's landing files (72 hours of activity), then runs `dbt build` (every model
and test) on the `duckdb` target (the baseline, measured in the same run) and on the `spark`
target (dbt-spark, method session, a local[2] session: one machine standing in for a cluster),
each in a home of its own, a full build then an incremental one after a second batch lands.
Prints one `name=value unit` line per figure.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))

from switchyard import sample_data  # noqa: E402

DBT = str(Path(sys.executable).parent / "dbt")


def build(home: Path, target: str) -> float:
    env = {
        **os.environ,
        "SWITCHYARD_HOME": str(home),
        "SWITCHYARD_LANDING_DIR": str(home / "landing"),
        "SWITCHYARD_DUCKDB_PATH": str(home / "switchyard.duckdb"),
        "SWITCHYARD_TARGET": target,
        "SWITCHYARD_PYTHON": sys.executable,
        "DBT_TARGET_PATH": str(home / "target"),
    }
    args = [DBT, "build", "--project-dir", str(PROJECT_DIR), "--profiles-dir", str(PROJECT_DIR)]
    started = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, cwd=PROJECT_DIR, env=env)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        tail = "\n".join(done.stdout.splitlines()[-40:])
        raise SystemExit(f"dbt build on {target} failed:\n{tail}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=2_000, help="people (default 2,000)")
    parser.add_argument("--engines", default="duckdb,spark")
    args = parser.parse_args()
    engines = args.engines.split(",")
    with tempfile.TemporaryDirectory(prefix="switchyard-engines-") as scratch:
        root = Path(scratch)
        first, second = root / "batch-1", root / "batch-2"
        summary = sample_data.generate(first / "landing", people=args.size, seed=1)
        shutil.copytree(first, second)
        sample_data.generate(second / "landing", people=max(1, args.size // 10), seed=2)
        print(f"people={args.size} people")
        print(f"events_first_batch={summary.events} events")
        figures: dict[str, float] = {}
        for engine in engines:
            home = root / engine
            shutil.copytree(first, home)
            figures[f"{engine}_build_seconds"] = build(home, engine)
            shutil.rmtree(home / "landing")
            shutil.copytree(second / "landing", home / "landing")
            figures[f"{engine}_incremental_build_seconds"] = build(home, engine)
            for name, value in figures.items():
                if name.startswith(engine):
                    print(f"{name}={value:.1f} s", flush=True)
        if "duckdb" in engines:
            con = duckdb.connect(str(root / "duckdb" / "switchyard.duckdb"), read_only=True)
            for figure, model in [("profiles", "dim_people"), ("events", "int_events_stitched")]:
                (rows,) = con.execute(f"select count(*) from main.{model}").fetchone() or (0,)
                print(f"{figure}={rows} rows")
        if {"duckdb", "spark"} <= set(engines):
            ratio = figures["spark_build_seconds"] / figures["duckdb_build_seconds"]
            print(f"spark_over_duckdb_build={ratio:.1f} x")


if __name__ == "__main__":
    main()
