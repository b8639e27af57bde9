"""One read interface to the warehouse dbt builds, answering in Arrow record batches.

Activations need a few relations (an audience, profiles, the events a journey waits for) and
compute on them locally, per partition of people; the warehouse may be the embedded DuckDB
file or a distributed engine. A query is built once with sqlglot and written in the engine's
dialect, so the same read runs on each.

Implemented:
- `DuckDBWarehouse`: the DuckDB file, opened read-only per read (dbt is its only writer, and
  DuckDB allows one writing process: DESIGN.md, invariant 6);
- `SparkWarehouse`: the session of the `spark` or `spark_connect` dbt target
  (switchyard/spark.py); `toArrow` collects on the driver (or, through Spark Connect, streams
  Arrow to the client), so a read is meant to be one partition of people, not a whole table.

Described, for whoever adds them (the same three methods):
- Snowflake: snowflake-connector-python, `cursor.execute(sql)` then
  `cursor.fetch_arrow_batches()`; dialect "snowflake"; the dbt schema from the profile.
- BigQuery: google-cloud-bigquery, `client.query(sql).result().to_arrow_iterable()` (Storage
  Read API for large results); dialect "bigquery"; relations as `project.dataset.table`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import duckdb
import pyarrow as pa
from sqlglot import exp

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

SCHEMA = "main"  # where dbt builds the models, on every target (profiles.yml)


class ArrowWarehouse(Protocol):
    dialect: str

    def batches(self, query: exp.Query) -> Iterator[pa.RecordBatch]:
        """The rows of `query`, written in this warehouse's dialect, batch by batch."""
        ...

    def relations(self) -> list[str]:
        """The tables and views dbt built, by name."""
        ...


def read_table(warehouse: ArrowWarehouse, query: exp.Query) -> pa.Table:
    """All of `query`'s rows as one Arrow table (its schema even when there are none)."""
    batches = list(warehouse.batches(query))
    if not batches:
        raise RuntimeError(f"{warehouse.dialect} returned no schema for {query.sql()}")
    return pa.Table.from_batches(batches)


def relation(name: str) -> exp.Table:
    return exp.table_(exp.to_identifier(name, quoted=True), db=exp.to_identifier(SCHEMA))


class DuckDBWarehouse:
    dialect = "duckdb"

    def __init__(self, path: Path) -> None:
        if not path.exists():
            raise FileNotFoundError(
                f"warehouse {path} does not exist yet: build the dbt models first "
                "(`switchyard demo` does both)"
            )
        self.path = path
        self._con: duckdb.DuckDBPyConnection | None = None

    @contextlib.contextmanager
    def held(self) -> Iterator[DuckDBWarehouse]:
        """This warehouse with one connection kept for every read until the block ends: the
        reads see one version of the file (a publish replaces it between two connections)."""
        held = DuckDBWarehouse(self.path)
        held._con = duckdb.connect(str(self.path), read_only=True)
        try:
            yield held
        finally:
            held._con.close()

    def batches(self, query: exp.Query) -> Iterator[pa.RecordBatch]:
        con = self._con or duckdb.connect(str(self.path), read_only=True)
        try:
            reader = con.sql(query.sql(dialect=self.dialect)).to_arrow_reader()
            # One empty batch carries the schema of an empty answer.
            yielded = False
            for batch in reader:
                yielded = True
                yield batch
            if not yielded:
                yield pa.RecordBatch.from_pylist([], schema=reader.schema)
        finally:
            if con is not self._con:
                con.close()

    def relations(self) -> list[str]:
        con = duckdb.connect(str(self.path), read_only=True)
        try:
            rows = con.execute(
                "select table_name from information_schema.tables where table_schema = ? "
                "order by table_name",
                [SCHEMA],
            ).fetchall()
        finally:
            con.close()
        return [name for (name,) in rows]


class SparkWarehouse:
    dialect = "spark"

    def __init__(self, session: SparkSession | None = None) -> None:
        if session is None:
            from switchyard.spark import spark_session

            session = spark_session()
        self.session = session

    def batches(self, query: exp.Query) -> Iterator[pa.RecordBatch]:
        table = self.session.sql(query.sql(dialect=self.dialect)).toArrow()
        yield from table.to_batches() or [pa.RecordBatch.from_pylist([], schema=table.schema)]

    def relations(self) -> list[str]:
        rows = self.session.sql(f"show tables in {SCHEMA}").collect()
        return sorted(row["tableName"] for row in rows if not row["isTemporary"])


def open_warehouse(target: str, duckdb_path: Path) -> ArrowWarehouse:
    """The warehouse of dbt target `target` (SWITCHYARD_TARGET: duckdb, spark or
    spark_connect)."""
    from switchyard.spark import SPARK_TARGETS

    if target == "duckdb":
        return DuckDBWarehouse(duckdb_path)
    if target in SPARK_TARGETS:
        return SparkWarehouse()
    raise ValueError(
        f"SWITCHYARD_TARGET={target!r}: choose duckdb, {' or '.join(SPARK_TARGETS)} (profiles.yml)"
    )


def configured_source(duckdb_path: Path) -> Path | ArrowWarehouse:
    """What a run beside dbt reads on the configured target (SWITCHYARD_TARGET): the DuckDB file
    at `duckdb_path`, read directly, or another engine's warehouse, read as Arrow."""
    from switchyard.spark import target

    return duckdb_path if target() == "duckdb" else open_warehouse(target(), duckdb_path)
