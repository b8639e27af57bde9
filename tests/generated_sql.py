"""The SQL Switchyard builds in Python (sqlglot trees, written in each engine's dialect), as
queries over the warehouse dbt built: the person partitions and every condition the shipped
journeys declare (branches, exit criteria) over the profiles, at a fixed clock. Spark answers
them in tests/spark_parity.py, DuckDB in tests/test_engine_parity.py; the answers must agree."""

from __future__ import annotations

from pathlib import Path

import sqlglot
from sqlglot import exp

from activations.arrow_warehouse import relation
from activations.graph import Branch
from activations.journeys import PROFILE_MODEL, load_journeys
from activations.partitions import all_partitions

CLOCK = "cast('2026-12-01 12:00:00' as timestamp)"  # what current_date and now() read
PARTITIONS = 4


def generated_queries(manifest: Path, dialect: str) -> dict[str, str]:
    profiles = relation(PROFILE_MODEL).sql(dialect=dialect)
    person = exp.column("person_id", quoted=True)
    which = exp.Case()
    for p in all_partitions(PARTITIONS):
        which = which.when(p.condition(person.copy()), exp.Literal.number(p.index + 1))
    queries = {
        "person_partitions": exp.select(person.copy(), which.as_("person_partition"))
        .from_(relation(PROFILE_MODEL))
        .sql(dialect=dialect)
    }
    for journey in load_journeys(manifest):
        conditions = [journey.exit_when] if journey.exit_when else []
        for node in journey.nodes:
            if isinstance(node, Branch):
                conditions += [condition for condition, _ in node.branches]
        for number, condition in enumerate(conditions, start=1):
            test = condition.sql(dialect=dialect, table="p", now=CLOCK)
            # a condition is a boolean: null counts as false, as the engine's case does
            queries[f"condition_{journey.name}_{number}"] = (
                f"select p.person_id, case when {test} then 1 else 0 end as holds "
                f"from {profiles} as p"
            )
    for query in queries.values():  # each is one select in the dialect, nothing else
        assert len(sqlglot.parse(query, read=dialect)) == 1
    return queries
