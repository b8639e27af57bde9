"""Reading entries and profiles from the warehouse, read-only (dbt is the only writer)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
from sqlglot import exp

from activations.engine import Entry
from activations.guards import FreshConsents, Person

PROFILE_MODEL = "dim_people"
ALIASES_MODEL = "dim_person_aliases"
# A view over the landing files: read at send time, it answers with the latest consent changes
# under the very rules that built dim_people's consent columns.
CONSENTS_MODEL = "int_user_consents_current"
CONSENT_CHANNELS = ("email", "sms", "push")


def entries_query(audience_model: str, now: datetime, dialect: str = "duckdb") -> str:
    # Built with sqlglot so the model name is quoted and the SQL follows the target's dialect.
    query = (
        exp.select("entry_id", "person_id", "enters_at", "exited_at", "entry_properties", "arm")
        .from_(exp.to_identifier(audience_model, quoted=True))
        .where(exp.column("enters_at") <= exp.Literal.string(now.isoformat(sep=" ")))
        .order_by("enters_at", "entry_id")
    )
    return query.sql(dialect=dialect)


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
        *consent_columns,
    ).from_(exp.to_identifier(PROFILE_MODEL, quoted=True))
    return query.sql(dialect=dialect)


def consents_query(dialect: str = "duckdb") -> str:
    query = (
        exp.select("user_id", "channel", "consent_status", "recorded_at")
        .from_(exp.to_identifier(CONSENTS_MODEL, quoted=True))
        .where(exp.column("topic").eq(exp.Literal.string("marketing")))
    )
    return query.sql(dialect=dialect)


def fetch_all(duckdb_path: Path, *queries: str) -> list[list[tuple[Any, ...]]]:
    """Each query's rows, read through one read-only connection."""
    if not duckdb_path.exists():
        raise FileNotFoundError(
            f"warehouse {duckdb_path} does not exist yet: build the dbt models first "
            "(`switchyard demo` does both)"
        )
    con = duckdb.connect(str(duckdb_path), read_only=True)
    try:
        return [con.execute(q).fetchall() for q in queries]
    except duckdb.CatalogException as exc:
        raise RuntimeError(
            f"{exc}. Build the dbt models (`dbt build`) before running journeys."
        ) from exc
    finally:
        con.close()


@dataclass(frozen=True)
class Audience:
    """What a journey run reads from the warehouse, through one read-only connection."""

    entries: list[Entry]
    people: dict[str, Person]  # the entries' people
    consents: FreshConsents  # the latest marketing consent per (user_id, channel), as of now


def read_audience(duckdb_path: Path, audience_model: str, now: datetime) -> Audience:
    entry_rows, people_rows, consent_rows = fetch_all(
        duckdb_path, entries_query(audience_model, now), people_query(), consents_query()
    )
    entries = [
        Entry(entry_id, person_id, enters_at, exited_at, json.loads(props) if props else {}, arm)
        for entry_id, person_id, enters_at, exited_at, props, arm in entry_rows
    ]
    wanted = {e.person_id for e in entries}
    people = {}
    for row in people_rows:
        if row[0] not in wanted:
            continue
        person_id, user_id, email, phone, push_token, first_name, engaged, *consents = row
        people[person_id] = Person(
            person_id,
            user_id,
            email,
            phone,
            push_token,
            first_name,
            dict(zip(CONSENT_CHANNELS, consents, strict=True)),
            most_engaged_channel=engaged,
        )
    fresh = {(user, channel): (status, at) for user, channel, status, at in consent_rows}
    return Audience(entries, people, fresh)


def read_person_aliases(duckdb_path: Path) -> dict[str, list[str]]:
    """Replaced person ids (merges, splits) and the people who hold their identifiers now."""
    query = exp.select("alias_person_id", "person_id").from_(
        exp.to_identifier(ALIASES_MODEL, quoted=True)
    )
    (rows,) = fetch_all(duckdb_path, query.sql(dialect="duckdb"))
    aliases: dict[str, list[str]] = {}
    for alias, person_id in rows:
        aliases.setdefault(alias, []).append(person_id)
    return aliases
