"""Build the dbt project on the `spark` target over landing snapshots, in one process and so one
Spark session, then write every relation dbt built as Parquet (read through SparkWarehouse),
the answers to the SQL built in Python (tests/generated_sql.py) under generated/, each
journey's preview at --now, the journey engine reading what Spark built (previews.json), and
the journey report from Spark's marts (report.html).

    python -m tests.spark_parity --home H --stage LANDING_A --stage LANDING_B --out DIR

Each stage replaces H's landing folder with a snapshot and runs dbt (`run`; `build`, tests
included, for the last), so the later stages exercise the incremental models, and every model
runs a second time in the session that ran it first, as in a long-lived session or a Spark Connect
server (macros/journey_policies.sql, literal_rows, says what that once broke).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from sqlglot import exp

from switchyard.settings import PROJECT_DIR


def report(result: Any, title: str) -> None:
    """What failed, on stderr (dbt's own log goes to stdout and logs/dbt.log)."""
    print(title, file=sys.stderr)
    if result.exception:
        print(f"  {result.exception}", file=sys.stderr)
    for node in getattr(result.result, "results", None) or []:
        if str(node.status) in ("error", "fail"):
            message = "\n    ".join(str(node.message).splitlines()[:6])
            print(f"  {node.node.unique_id}: {message}", file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--stage", type=Path, action="append", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--now", required=True, help="the journeys' previews' clock (ISO 8601)")
    args = parser.parse_args()
    home: Path = args.home.resolve()
    landing = home / "landing"
    os.environ.update(
        SWITCHYARD_HOME=str(home),
        SWITCHYARD_LANDING_DIR=str(landing),
        SWITCHYARD_TARGET="spark",
        # the phone parser's script transformation runs this Python (macros/phones.sql)
        SWITCHYARD_PYTHON=sys.executable,
    )
    from dbt.cli.main import dbtRunner

    from activations.arrow_warehouse import SparkWarehouse, read_table, relation
    from tests.generated_sql import generated_queries

    runner = dbtRunner()
    project = ["--project-dir", str(PROJECT_DIR), "--profiles-dir", str(PROJECT_DIR),
               "--target-path", str(home / "target")]  # fmt: skip
    for number, stage in enumerate(args.stage, start=1):
        command = "build" if number == len(args.stage) else "run"
        shutil.rmtree(landing, ignore_errors=True)
        shutil.copytree(stage, landing)
        result = runner.invoke([command, *project])
        if not result.success:
            report(result, f"dbt {command} failed on the spark target at stage {number}")
            return 1
    warehouse = SparkWarehouse()
    args.out.mkdir(parents=True, exist_ok=True)
    for name in warehouse.relations():
        rows = read_table(warehouse, exp.select("*").from_(relation(name)))
        pq.write_table(rows, args.out / f"{name}.parquet")
    # the SQL built in Python, written in Spark's dialect, answered by Spark
    generated = args.out / "generated"
    generated.mkdir()
    for name, sql in generated_queries(home / "target" / "manifest.json", "spark").items():
        rows = read_table(warehouse, exp.maybe_parse(sql, dialect="spark"))
        pq.write_table(rows, generated / f"{name}.parquet")
    # the journey engine on what Spark built: each journey's preview (read as Arrow)
    from activations.journeys import load_journeys
    from activations.preview import preview_journey
    from switchyard.clock import parse_utc

    journeys = load_journeys(home / "target" / "manifest.json")
    uncounted = [j.name for j in journeys if j.transactional]
    previews = {
        j.name: preview_journey(
            j, duckdb_path=home / "no-duckdb-here", landing_dir=landing, now=parse_utc(args.now),
            uncounted_journeys=uncounted, source=warehouse,
        ).rows
        for j in journeys
    }  # fmt: skip
    (args.out / "previews.json").write_text(json.dumps(previews, default=str, sort_keys=True))
    # the journey report, its marts read from Spark
    from switchyard.report import write_report

    write_report(warehouse, args.out / "report.html")
    return 0


if __name__ == "__main__":
    sys.exit(main())
