"""The engine parity fixture (tests/test_engine_parity.py), started at the beginning of the
session: DuckDB builds its warehouse, then Spark's build of the same landing runs in a
subprocess, at a lower priority, beside the rest of the suite (most of its three minutes used
to be a wait of their own); the parity tests run last and wait for it."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

from activations import ledger
from activations.ledger import store
from activations.ledger.compact import GRACE_SECONDS, compact
from sandbox import Sandbox
from switchyard import sample_data
from switchyard.pipeline import run_pipeline
from switchyard.settings import PROJECT_DIR, Paths
from tests.dbt_helpers import dbt_build

MODULE = "test_engine_parity.py"
# The journeys' previews' clock on both engines: after the sample data's latest activity (it
# ends at the wall clock), so that waits run out and steps fall due.
# (naive UTC, as the engine keeps time)
PREVIEW_AT = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=30)).replace(tzinfo=None, microsecond=0)


@dataclass
class ParityBuild:
    paths: Paths  # DuckDB's home, built
    spark_home: Path
    dumps: Path  # what Spark built, as Parquet (tests/spark_parity.py)
    command: list[str]
    spark: subprocess.Popen[str]

    def wait(self) -> None:
        """Until Spark's build is done; fails with the end of its report."""
        _, stderr = self.spark.communicate()
        # its report is the end of stderr (Spark's own logging comes before it)
        assert self.spark.returncode == 0, stderr[-4000:]


def killed_senders(landing_dir: Path) -> None:
    """Two senders killed midway through a ledger line: one run file compacted and deleted
    since (its cut line kept in a rejects file), one still there; the pipeline's own run files
    compacted into Parquet. Both engines then read the ledger from every place it can be."""

    def killed(run_id: str) -> None:
        writer = ledger.LedgerWriter(landing_dir, run_id)
        (path,) = store.run_files_dir(landing_dir).glob(f"run-{run_id}-*.jsonl")
        path.write_text('{"send_key":"cut-short","run_id":"' + run_id + '","sta')
        writer.close()

    killed("killed-early")
    compact(landing_dir)
    long_ago = time.time() - GRACE_SECONDS - 1  # as if that compaction were past its grace
    for lines in store.generations(landing_dir, "lines").values():
        os.utime(lines, (long_ago, long_ago))
    assert compact(landing_dir).deleted > 0
    assert store.recorded_rejects(duckdb.connect(), landing_dir)
    killed("killed-late")


def start(paths: Paths, scratch: Path) -> ParityBuild:
    stages = scratch / "landing-stages"
    sample_data.generate(paths.landing, people=60, seed=7)
    shutil.copytree(paths.landing, stages / "before")
    with Sandbox() as sandbox, pytest.MonkeyPatch.context() as mp:
        mp.setenv("SWITCHYARD_CHANNELS", "sandbox")
        mp.setenv("SWITCHYARD_CHANNELS_BASE_URL", sandbox.base_url)
        run_pipeline(paths)
    # A second batch: the same user ids on new devices, with new orders and consents (merges,
    # new identifiers and traits for the incremental models).
    sample_data.generate(paths.landing, people=20, seed=8)
    killed_senders(paths.landing)
    dbt_build(paths)
    shutil.copytree(paths.landing, stages / "after")
    spark_home, dumps = scratch / "spark-home", scratch / "spark-dumps"
    spark_home.mkdir()
    dumps.mkdir()
    command = [sys.executable, "-m", "tests.spark_parity", "--home", str(spark_home),
               "--stage", str(stages / "before"), "--stage", str(stages / "after"),
               "--out", str(dumps), "--now", PREVIEW_AT.isoformat()]  # fmt: skip
    spark = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=PROJECT_DIR,
        preexec_fn=lambda: os.nice(10),  # the tests beside it first
    )
    return ParityBuild(paths, spark_home, dumps, command, spark)
