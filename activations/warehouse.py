"""Reading entries and profiles from the warehouse, read-only (dbt is the only writer)."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from activations.arrow_warehouse import ArrowWarehouse, read_table, relation
from activations.guards import FreshConsents, Person, Suppressions
from activations.journeys import PROFILE_MODEL
from activations.partitions import PersonPartition

ALIASES_MODEL = "dim_person_aliases"
# A view over the landing files: read at send time, it answers with the latest consent changes
# under the very rules that built dim_people's consent columns.
CONSENTS_MODEL = "int_user_consents_current"
SUPPRESSIONS_MODEL = "int_suppressions_current"  # a view too: bounces and STOPs as of now
CONSENT_CHANNELS = ("email", "sms", "push")
EVENTS_MODEL = "int_events_stitched"
FEEDBACK_MODEL = "stg_feedback__events"
# Every model a run reads besides the journey's audience (a tier's job builds them first).
MODELS_READ = (
    PROFILE_MODEL, EVENTS_MODEL, FEEDBACK_MODEL, CONSENTS_MODEL, SUPPRESSIONS_MODEL, ALIASES_MODEL,
)  # fmt: skip
# Those keyed by the person a run's partition is of (and every audience; the others are read
# whole).
BY_PERSON = (PROFILE_MODEL, EVENTS_MODEL)


def people_query(dialect: str = "duckdb") -> str:
    consent_columns = [f"{c}_consent" for c in CONSENT_CHANNELS]
    query = exp.select(
        "person_id",
        "user_id",
        "email",
        "phone",
        "push_token",
        "first_name",
        "most_engaged_channel",
        "timezone",
        *consent_columns,
    ).from_(exp.to_identifier(PROFILE_MODEL, quoted=True))
    return query.sql(dialect=dialect)


def consents_query(dialect: str = "duckdb") -> str:
    """Every topic's latest consent of the users in the list bound as the one parameter."""
    query = (
        exp.select("user_id", "channel", "topic", "consent_status", "recorded_at")
        .from_(exp.to_identifier(CONSENTS_MODEL, quoted=True))
        .where(exp.ArrayContains(this=exp.Placeholder(), expression=exp.column("user_id")))
    )
    return query.sql(dialect=dialect)


def suppressions_query(dialect: str = "duckdb") -> str:
    """The suppressed addresses among those bound as the one parameter."""
    query = (
        exp.select("channel", "address", "scope", "reason")
        .from_(exp.to_identifier(SUPPRESSIONS_MODEL, quoted=True))
        .where(exp.ArrayContains(this=exp.Placeholder(), expression=exp.column("address")))
    )
    return query.sql(dialect=dialect)


@dataclass(frozen=True)
class Audience:
    """Who the due sends are for, read right before sending."""

    people: dict[str, Person]  # the due sends' people
    consents: FreshConsents  # the latest consent per (user_id, channel, topic), as of now
    suppressions: Suppressions = field(default_factory=dict)  # their addresses suppressed now


def read_people(con: duckdb.DuckDBPyConnection, person_ids: Iterable[str]) -> Audience:
    """The profiles of `person_ids` and the freshest consents, on a connection that has the
    warehouse attached as `wh` (activations/inputs.py)."""
    wanted = set(person_ids)
    people_rows = (
        con.execute(
            f"select * from ({people_query()}) where list_contains(?, person_id)", [sorted(wanted)]
        ).fetchall()
        if wanted
        else []
    )
    people = {}
    for row in people_rows:
        if row[0] not in wanted:
            continue
        person_id, user_id, email, phone, push_token, first_name, engaged, zone, *consents = row
        people[person_id] = Person(
            person_id,
            user_id,
            email,
            phone,
            push_token,
            first_name,
            dict(zip(CONSENT_CHANNELS, consents, strict=True)),
            most_engaged_channel=engaged,
            timezone=zone,
        )
    return Audience(people, *read_guards(con, people.values()))


def read_guards(
    con: duckdb.DuckDBPyConnection, people: Iterable[Person]
) -> tuple[FreshConsents, Suppressions]:
    """The people's consents and suppressed addresses as the landing files say now (views)."""
    people = list(people)
    return read_consents(con, {p.user_id for p in people if p.user_id}), read_suppressions(
        con, people
    )


def read_consents(con: duckdb.DuckDBPyConnection, users: Iterable[str]) -> FreshConsents:
    """Every topic's latest consent of `users`."""
    wanted = sorted(set(users))
    rows = con.execute(consents_query(), [wanted]).fetchall() if wanted else []
    return {(user, ch, topic): (status, at) for user, ch, topic, status, at in rows}


def addresses_of(people: Iterable[Person]) -> set[str]:
    """The addresses suppressions are kept by (emails lower-cased)."""
    people = list(people)
    return {a.strip().lower() for p in people if (a := p.email)} | {
        a for p in people for a in (p.phone, p.push_token) if a
    }


def read_suppressions(con: duckdb.DuckDBPyConnection, people: Iterable[Person]) -> Suppressions:
    """Which of the people's addresses are suppressed now (emails matched lower-cased)."""
    addresses = sorted(addresses_of(people))
    rows = con.execute(suppressions_query(), [addresses]).fetchall() if addresses else []
    held: Suppressions = {}
    for channel, address, scope, reason in rows:  # an address held for all beats marketing
        if held.get((channel, address), ("marketing",))[0] == "marketing":
            held[(channel, address)] = (scope, reason)
    return held


Source = Path | ArrowWarehouse  # the DuckDB file, or any warehouse read as Arrow


@contextmanager
def attached(
    source: Source,
    relations: Collection[str] = (),
    partition: PersonPartition | None = None,
    by_person: Collection[str] = BY_PERSON,
) -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory DuckDB with the warehouse as `wh` (and in use): the DuckDB file attached
    read-only, or, for another engine (activations/arrow_warehouse.py), `relations` read from it
    as Arrow into `wh` (those in `by_person`, keyed by person_id, only for `partition`'s
    people, if given)."""
    if not isinstance(source, Path):
        with _loaded(source, relations, partition, by_person) as con:
            yield con
        return
    duckdb_path = source
    if not duckdb_path.exists():
        raise FileNotFoundError(
            f"warehouse {duckdb_path} does not exist yet: build the dbt models first "
            "(`switchyard demo` does both)"
        )
    con = duckdb.connect()
    try:
        con.execute("attach ? as wh (read_only)", [str(duckdb_path)])
        con.execute("use wh")
        yield con
    except duckdb.CatalogException as exc:
        raise RuntimeError(
            f"{exc}. Build the dbt models (`dbt build`) before running journeys."
        ) from exc
    finally:
        con.close()


@contextmanager
def _loaded(
    source: ArrowWarehouse,
    relations: Collection[str],
    partition: PersonPartition | None,
    by_person: Collection[str],
) -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb.connect()
    try:
        con.execute("attach ':memory:' as wh")
        con.execute("use wh")
        for name in relations:
            query = exp.select("*").from_(relation(name))
            if partition is not None and name in by_person:
                query = query.where(partition.condition(exp.column("person_id", quoted=True)))
            con.register("loaded", _naive_utc(read_table(source, query)))
            con.execute(f"create table wh.main.{quoted(name)} as select * from loaded")
            con.unregister("loaded")
        yield con
    finally:
        con.close()


def _naive_utc(table: pa.Table) -> pa.Table:
    """Time stamps as the DuckDB warehouse holds them: UTC, without a zone (Spark's say UTC)."""
    columns = []
    for column in table.columns:
        kind = column.type
        if pa.types.is_timestamp(kind) and kind.tz is not None:
            column = pc.cast(
                pc.cast(column, pa.timestamp(kind.unit, "UTC")), pa.timestamp(kind.unit)
            )
        columns.append(column)
    return pa.Table.from_arrays(columns, names=table.column_names)


def quoted(name: str) -> str:
    return exp.to_identifier(name, quoted=True).sql(dialect="duckdb")


def read_person_aliases(
    con: duckdb.DuckDBPyConnection,
) -> tuple[dict[str, list[str]], dict[tuple[str, str], datetime]]:
    """Replaced person ids (merges, splits) and the people who hold their identifiers now, the
    one its entries and send keys go on as (is_primary) first; and when identifiers last left
    each on their way to each of them (aliased_at). On a connection with the warehouse attached
    (`attached`)."""
    query = (
        exp.select("alias_person_id", "person_id", "aliased_at")
        .from_(exp.to_identifier(ALIASES_MODEL, quoted=True))
        .order_by("alias_person_id", "is_primary desc", "person_id")
    )
    rows = con.execute(query.sql(dialect="duckdb")).fetchall()
    aliases: dict[str, list[str]] = {}
    since: dict[tuple[str, str], datetime] = {}
    for alias, person_id, aliased_at in rows:
        aliases.setdefault(alias, []).append(person_id)
        since[(alias, person_id)] = aliased_at
    return aliases, since
