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
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pyarrow.parquet as pq
import pytest
from sqlglot import exp

from activations.arrow_warehouse import DuckDBWarehouse, read_table, relation
from activations.journeys import load_journeys
from activations.preview import preview_journey
from tests.conftest import private_home
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
