"""The dbt project builds the same warehouse on Spark as on DuckDB (issue 14).

One fixture, both engines, every relation compared row for row: the identity partition,
profiles, audiences, journey state and metrics. DuckDB builds it the way the product does (the
pipeline: dbt, journeys ticking and sending to the sandbox, metrics), then incrementally after a
second batch lands; Spark builds the landing as it was before the pipeline ran, then
incrementally on the landing as it ended (tests/spark_parity.py, one Spark session).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlglot import exp

from activations.arrow_warehouse import DuckDBWarehouse, read_table, relation
from activations.journeys import load_journeys
from activations.partitions import all_partitions
from activations.preview import preview_journey
from activations.syncs import load_syncs
from activations.syncs import results as sync_results
from orchestration.dev_server import free_port
from sandbox import Sandbox
from switchyard import landing
from switchyard.pipeline import run_pipeline
from switchyard.report import write_report
from switchyard.settings import PROJECT_DIR, Paths
from switchyard.spark import serving
from switchyard.tiers import TIERS
from tests.conftest import private_home
from tests.dbt_helpers import DBT
from tests.generated_sql import generated_queries
from tests.parity_build import PREVIEW_AT, ParityBuild

# Columns that differ between any two builds, not only between engines: each run's batch stamp,
# and the identity graph's internal integer labels (numbered in whatever order the engine
# reads rows; person ids are hashes of identifiers and are compared).
RUN_STAMPS = {"processed_at", "loaded_at", "profiled_at", "stitched_at", "aliased_at"}
INTERNAL_LABELS = {"node_id", "src_id", "dst_id", "component_id"}
PREVIEW_VOLATILE = {"run_id", "recorded_at"}


def normalized(value: Any, landings: tuple[str, ...]) -> Any:
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.UTC).replace(tzinfo=None)  # Spark's timestamps say UTC
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 9)  # sums in another order
    if isinstance(value, Decimal):
        return value.normalize()
    if isinstance(value, str):
        if value.startswith("component:"):  # a group without an anchor, named by its label
            return "component:"
        for landing in landings:  # the file a row came from, under each engine's home
            value = value.replace(landing, "<landing>")
    return value


def rows_of(table: Any, columns: list[str], landings: tuple[str, ...]) -> list[tuple[Any, ...]]:
    picked = table.select(columns).to_pylist()
    rows = [tuple(normalized(r[c], landings) for c in columns) for r in picked]
    return sorted(rows, key=lambda row: [(v is None, str(v)) for v in row])


@pytest.fixture(scope="module")
def built(parity: ParityBuild) -> Iterator[dict[str, Any]]:
    """The build tests/parity_build.py started with the session, once Spark's part is done."""
    parity.wait()
    paths = parity.paths
    with pytest.MonkeyPatch.context() as mp:  # the home pinned, as the build had it
        private_home(paths.home, mp)
        yield {
            "duckdb": DuckDBWarehouse(paths.duckdb),
            "dumps": parity.dumps,
            "landings": (str(paths.landing), str(parity.spark_home / "landing")),
            "manifest": parity.spark_home / "target" / "manifest.json",
            "landing": paths.landing,
            "spark_home": parity.spark_home,
        }


def test_spark_builds_every_relation_duckdb_builds(built: dict[str, Any]) -> None:
    duckdb_names = set(built["duckdb"].relations())
    spark_names = {p.stem for p in built["dumps"].glob("*.parquet")}  # generated/ aside
    assert duckdb_names == spark_names
    for name in ["dim_identities", "dim_people", "audience_cart_abandonment", "fct_deliveries"]:
        assert name in spark_names


def test_spark_and_duckdb_agree_row_for_row(built: dict[str, Any]) -> None:
    differing = []
    compared = 0
    for name in sorted(built["duckdb"].relations()):
        mine = read_table(built["duckdb"], exp.select("*").from_(relation(name)))
        theirs = pq.read_table(built["dumps"] / f"{name}.parquet")
        assert [c.lower() for c in mine.column_names] == [c.lower() for c in theirs.column_names], (
            name
        )
        columns = [c for c in mine.column_names if c not in RUN_STAMPS | INTERNAL_LABELS]
        theirs = theirs.rename_columns(mine.column_names)
        a = rows_of(mine, columns, built["landings"])
        b = rows_of(theirs, columns, built["landings"])
        compared += len(a)
        if a != b:
            only_duckdb = [r for r in a if r not in b][:3]
            only_spark = [r for r in b if r not in a][:3]
            differing.append(f"{name}: {len(a)} vs {len(b)} rows\n  duckdb only: "
                             f"{only_duckdb}\n  spark only: {only_spark}")  # fmt: skip
    assert not differing, "\n".join(differing)
    assert compared > 1000  # the fixture has rows to compare


def test_the_fixture_exercises_what_it_compares(built: dict[str, Any]) -> None:
    """The comparison above is only as good as the fixture: it holds merges, sends, journey
    state and incremental batches."""

    def count(sql: str) -> int:
        table = read_table(built["duckdb"], exp.maybe_parse(sql, dialect="duckdb"))
        return int(table.column(0)[0].as_py())

    assert count("select count(*) from main.fct_deliveries") > 0
    assert count("select count(*) from main.fct_journey_transitions") > 0
    assert count("select count(*) from main.audience_cart_abandonment") > 0
    assert count("select count(distinct loaded_at) from main.stg_segment__events") == 2
    assert count("select count(*) from main.int_phone_numbers where phone_e164 is null") > 0
    # people whose identifiers arrived in two batches (the second merged into the first)
    assert count("select count(*) from main.dim_people where identifier_count > 4") > 0
    # the ledger read from compacted Parquet (the pipeline's run files are deleted: the
    # deliveries above are read from there), and a cut line from a run file and from the
    # record of a deleted one (tests/parity_build.py, killed_senders)
    rejects = "select count(*) from main.fct_rejected_rows where source_table = 'ledger.deliveries'"
    assert count(rejects) == 2


def test_the_sql_built_in_python_gives_the_same_answers_on_both_engines(
    built: dict[str, Any],
) -> None:
    """Person partitions and the journeys' conditions, built with sqlglot and written in each
    engine's dialect (tests/generated_sql.py)."""
    queries = generated_queries(built["manifest"], "duckdb")
    assert {"condition_lapsed_reengagement_1", "condition_lapsed_reengagement_2"} <= set(queries)
    for name, sql in queries.items():
        mine = read_table(built["duckdb"], exp.maybe_parse(sql, dialect="duckdb"))
        theirs = pq.read_table(built["dumps"] / "generated" / f"{name}.parquet")
        columns = mine.column_names
        theirs = theirs.rename_columns(columns)
        a, b = (rows_of(t, columns, built["landings"]) for t in (mine, theirs))
        assert a == b, name
        assert len(a) > 10, name
    partitions = read_table(
        built["duckdb"], exp.maybe_parse(queries["person_partitions"], dialect="duckdb")
    )
    assert set(partitions.column("person_partition").to_pylist()) == {1, 2, 3, 4}


def test_the_journey_engine_decides_the_same_on_what_each_engine_built(
    built: dict[str, Any],
) -> None:
    """Each journey's preview (entries, waits, branches, exits, what would be sent or skipped
    and why) on the DuckDB file, and on Spark's tables read through the Arrow interface."""
    journeys = load_journeys(built["manifest"])
    uncounted = [j.name for j in journeys if j.transactional]
    theirs = json.loads((built["dumps"] / "previews.json").read_text())
    decided = 0
    for journey in journeys:
        rows = preview_journey(
            journey, duckdb_path=built["duckdb"].path, landing_dir=built["landing"],
            now=PREVIEW_AT, uncounted_journeys=uncounted,
        ).rows  # fmt: skip
        mine = json.loads(json.dumps(rows, default=str, sort_keys=True))

        def comparable(rows: list[dict[str, Any]]) -> list[str]:
            kept = [{k: v for k, v in r.items() if k not in PREVIEW_VOLATILE} for r in rows]
            return sorted(json.dumps(r, sort_keys=True) for r in kept)

        assert comparable(mine) == comparable(theirs[journey.name]), journey.name
        decided += len(mine)
    assert decided > 0  # the previews decide something to compare


def test_the_journey_report_reads_the_same_from_each_engine(
    built: dict[str, Any], tmp_path: Path
) -> None:
    """switchyard report on Spark's marts (its queries written in Spark's SQL by sqlglot) and on
    the DuckDB file: the same page, but for when and from where it was made."""
    mine = write_report(built["duckdb"].path, tmp_path / "report.html")
    assert mine.journeys  # a report with journeys in it to compare

    def comparable(path: Path) -> str:
        return re.sub(r'<p class="meta">Made .*? from .*?\. ', "", path.read_text())

    theirs = built["dumps"] / "report.html"
    assert comparable(mine.path) == comparable(theirs)
    assert "the spark warehouse" in theirs.read_text()
    assert comparable(theirs).count("<svg") >= 4  # charts drawn from rows, not empty sections


def served_paths(built: dict[str, Any]) -> Paths:
    spark_home: Path = built["spark_home"]
    return Paths(spark_home, spark_home / "landing", spark_home / "no-duckdb-here.duckdb")


@pytest.fixture(scope="module")
def connect(built: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """What Spark built, served by Spark Connect (`switchyard spark-connect`): its address, one
    server for the module's tests."""
    paths = served_paths(built)
    environ = {**os.environ, "SWITCHYARD_HOME": str(paths.home),
               "SWITCHYARD_LANDING_DIR": str(paths.landing)}  # fmt: skip
    log = tmp_path_factory.mktemp("spark-connect") / "server.log"
    with serving(free_port(), environ, log=log) as address:
        yield address


@pytest.mark.slow
def test_through_spark_connect_dagster_sends_by_partition_while_dbt_runs(
    built: dict[str, Any], connect: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On the in-process spark target, Dagster's journeys stop: the local session's embedded
    metastore takes one process at a time. Served by Spark Connect (`switchyard spark-connect`,
    SWITCHYARD_TARGET=spark_connect), what Spark built is shared: dbt runs in another process,
    up to three times (declaring the landing tables the journeys read each time), while
    Dagster's partitioned sends, in this one, read their people from Spark and send to the
    sandbox, each partition its own people, each message once."""
    paths = served_paths(built)
    monkeypatch.setenv("SWITCHYARD_TARGET", "spark_connect")
    monkeypatch.setenv("SWITCHYARD_SPARK_REMOTE", connect)
    monkeypatch.setenv("SWITCHYARD_PYTHON", sys.executable)  # macros/phones.sql, on the server
    monkeypatch.setenv("SWITCHYARD_PERSON_PARTITIONS", "2")
    monkeypatch.setenv("SWITCHYARD_CHANNELS", "sandbox")
    paths.export()
    ledger_before = ledger_lines(paths)
    synced_before = set(sync_results.folder(paths.landing).glob("run-*.parquet"))
    with Sandbox() as sandbox:
        monkeypatch.setenv("SWITCHYARD_CHANNELS_BASE_URL", sandbox.base_url)
        # dbt runs again and again in another process while the sends go on (three runs at
        # most: the machine's two cores are the tests' too): each run's on-run-start declares
        # the landing tables the journeys read, and it rebuilds a model no journey reads
        dbt_runs: list[tuple[float, float, int, str]] = []
        sending = threading.Event()
        sending.set()

        def run_dbt() -> None:
            while sending.is_set() and len(dbt_runs) < 3:
                began = time.monotonic()
                done = subprocess.run(
                    [DBT, "run", "--select",
                     "fct_journey_step_metrics", "--project-dir", str(PROJECT_DIR),
                     "--profiles-dir", str(PROJECT_DIR), "--target-path",
                     str(tmp_path / "target")],
                    capture_output=True, text=True,
                )  # fmt: skip
                dbt_runs.append((began, time.monotonic(), done.returncode, done.stdout[-3000:]))

        dbt = threading.Thread(target=run_dbt)
        dbt.start()
        sends_began = time.monotonic()
        recipients: dict[str, set[str]] = {}
        try:
            for tier in TIERS:
                for partition in all_partitions(2):
                    before = len(sandbox.received)
                    run_pipeline(paths, now=PREVIEW_AT, job=f"tier_{tier}_sends",
                                 partition_key=partition.key)  # fmt: skip
                    got = {r.send_key or "" for r in sandbox.received[before:]}
                    recipients[partition.key] = recipients.get(partition.key, set()) | got
        finally:
            sends_ended = time.monotonic()
            sending.clear()
            dbt.join()
    assert all(code == 0 for _, _, code, _ in dbt_runs), [out for *_, out in dbt_runs]
    # not vacuous: a whole dbt run, its on-run-start included, went on while the sends did
    assert any(sends_began < began and ended < sends_ended for began, ended, *_ in dbt_runs), (
        sends_began, sends_ended, [(b, e) for b, e, *_ in dbt_runs],
    )  # fmt: skip
    received = Counter(r.send_key for r in sandbox.received)
    assert received and set(received.values()) == {1}  # sent, each once
    lines = ledger_lines(paths)[len(ledger_before) :]
    sent = {x["send_key"]: x["person_id"] for x in lines if x["status"] == "sent"}
    assert set(received) <= set(sent)  # (in-app messages go to the inbox, not the sandbox)
    for partition in all_partitions(2):  # each partition's run sent to its own people only
        assert all(partition.holds(sent[k]) for k in recipients[partition.key])
    # What the journey engine previewed on Spark's build, at the same clock, was decided: sent,
    # or held by the cap (a journey's preview does not see the others' sends of these runs).
    previewed = json.loads((built["dumps"] / "previews.json").read_text())
    would_send = {r["send_key"] for rows in previewed.values() for r in rows
                  if r.get("decision") == "would_send"}  # fmt: skip
    latest = {x["send_key"]: x for x in lines}
    assert would_send and would_send <= set(latest)
    held = {k: latest[k]["reason"] for k in would_send - set(sent)}
    assert set(held.values()) <= {"capped"}, held
    assert len(held) < len(would_send) / 2  # most went out
    # the syncs in the same jobs read their models from Spark too, and synced them
    landed = set(sync_results.folder(paths.landing).glob("run-*.parquet")) - synced_before
    synced = pa.concat_tables(pq.read_table(f) for f in landed)
    assert set(synced.column("sync").to_pylist()) == {s.name for s in load_syncs(built["manifest"])}
    assert set(synced.column("outcome").to_pylist()) == {"synced"}


def ledger_lines(paths: Paths) -> list[dict[str, Any]]:
    """The run files' whole lines (a killed sender's cut line aside: tests/parity_build.py)."""
    folder = landing.table_dir(paths.landing, "ledger", "deliveries")
    return [json.loads(line) for f in sorted(folder.glob("run-*.jsonl"))
            for line in f.read_text().splitlines(keepends=True) if line.endswith("\n")]  # fmt: skip


@pytest.mark.slow
def test_a_changed_landing_declaration_is_made_again_and_the_others_are_kept(
    built: dict[str, Any], connect: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every dbt invocation declares the landing tables on Spark (macros/landing_sources.sql).
    On a shared Spark, readers in other processes read them meanwhile: a table and view whose
    declaration is as before are kept, not dropped and made again. One whose declaration
    changed in its YAML (a column added) is made again, with its view, and has the column.
    (The last test here: the module's Spark keeps the changed declaration.)"""
    paths = served_paths(built)
    for name, value in (("SWITCHYARD_HOME", paths.home), ("SWITCHYARD_LANDING_DIR", paths.landing),
                        ("SWITCHYARD_TARGET", "spark_connect"),
                        ("SWITCHYARD_SPARK_REMOTE", connect)):  # fmt: skip
        monkeypatch.setenv(name, str(value))
    changed = tmp_path / "project"  # the project with one declaration changed
    for folder in ("models", "macros", "tests/dbt"):
        shutil.copytree(PROJECT_DIR / folder, changed / folder)
    for name in ("dbt_project.yml", "profiles.yml"):
        shutil.copy(PROJECT_DIR / name, changed / name)
    orders_yaml = changed / "models" / "staging" / "shop" / "_shop__sources.yml"
    declared = orders_yaml.read_text()
    assert declared.count("created_at := 'VARCHAR'))") == 1
    orders_yaml.write_text(
        declared.replace(
            "created_at := 'VARCHAR'))", "created_at := 'VARCHAR', coupon := 'VARCHAR'))"
        )
    )
    manifest = json.loads(built["manifest"].read_text())
    relations = sorted(
        f"{node['schema']}.{node['identifier']}{suffix}"
        for node in manifest["sources"].values()
        if node["meta"].get("external_location")
        and "struct_pack" in node["meta"]["external_location"]
        for suffix in ("", "__landing_files")
    )
    assert "shop.orders" in relations and "segment.events__landing_files" in relations

    def declare(project: Path) -> None:
        done = subprocess.run(
            [DBT, "run-operation", "create_landing_sources",
             "--project-dir", str(project), "--profiles-dir", str(project),
             "--target-path", str(tmp_path / f"target-{project.name}")],
            capture_output=True, text=True,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout[-3000:]

    def catalog() -> dict[str, tuple[str, str, list[str]]]:
        """Each relation's created time, declaration hash and columns."""
        from switchyard.spark import spark_session

        spark = spark_session()
        # This session's cached tables go, each before its view: Spark refuses the view of a
        # table made again since this session read it (INCOMPATIBLE_VIEW_SCHEMA_CHANGE). Each
        # dbt run and Dagster step opens a session of its own; a long-lived reader refreshes.
        for name in sorted(relations, key=lambda name: not name.endswith("__landing_files")):
            spark.catalog.refreshTable(name)
        found = {}
        for name in relations:
            rows = [
                (row[0], row[1]) for row in spark.sql(f"describe table extended {name}").collect()
            ]
            # the columns come first, until a blank row or a '# ...' heading
            end = next(i for i, (key, _) in enumerate(rows) if not key or key.startswith("#"))
            (hashed,) = spark.sql(f"show tblproperties {name} ('switchyard.declared')").collect()
            found[name] = (dict(rows)["Created Time"], hashed[-1], [key for key, _ in rows[:end]])
        return found

    # as the build (and any dbt run since, with this landing folder) declared them
    before = catalog()
    time.sleep(1.1)  # created times are in seconds
    declare(changed)
    after = catalog()
    orders = {"shop.orders", "shop.orders__landing_files"}
    assert {name for name in relations if after[name] != before[name]} == orders
    for name in orders:
        assert after[name][0] != before[name][0] and after[name][1] != before[name][1]
        assert "coupon" in after[name][2] and "coupon" not in before[name][2]
