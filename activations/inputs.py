"""The relations a tick reads (activations/tick.py), from the warehouse and the landing files.

The warehouse is attached read-only (dbt is its only writer); the transitions are read straight
from their landing files, so a tick sees every decision, including those dbt has not staged yet.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import duckdb

from activations import ledger, transitions
from activations.graph import Wait
from activations.journeys import PROFILE_MODEL, Journey
from activations.partitions import PersonPartition
from activations.tick import ReadDecided, lit
from activations.warehouse import ALIASES_MODEL, EVENTS_MODEL, FEEDBACK_MODEL, quoted


def open_inputs(
    con: duckdb.DuckDBPyConnection,
    journey: Journey,
    *,
    landing_dir: Path,
    partition: PersonPartition | None = None,
) -> None:
    """Define audience, profiles, events, feedback, aliases (dim_person_aliases) and history on
    `con`, which has the warehouse attached as `wh` (warehouse.attached); the tick makes
    `decided` with decided_reader. `partition`: only the people in it, and the entries of
    people who are in it now (an entry recorded under an id since merged away follows whoever
    holds it: its row in `aliases`)."""

    def of_partition(person_id: str) -> str:
        return f"and {partition.sql(person_id)}" if partition else ""

    names = sorted(
        {*journey.exit_on, *(g.event for g in journey.goals)}
        | {
            n.until_event
            for n in journey.nodes
            if isinstance(n, Wait) and n.until_event and not n.of_step
        }
    )
    wanted = ", ".join(lit(n) for n in names) or "null"
    audience = f"wh.main.{quoted(journey.audience_model)}"
    columns = {c for (c, *_) in con.execute(f"describe {audience}").fetchall()}
    # Membership and schedule audiences (people, not episodes) have no former ids, nor has an
    # event audience written without journey_entry_audience(): null columns keep one shape.
    missing = "".join(
        f", null::varchar as {name}"
        for name in ("former_entry_id", "entry_event_id")
        if name not in columns
    )
    con.execute(
        f"create temp view audience as select *{missing} from {audience} "
        f"where true {of_partition('person_id')}"
    )
    con.execute(
        f"create temp view profiles as select * from wh.main.{PROFILE_MODEL} "
        f"where true {of_partition('person_id')}"
    )
    con.execute(
        f"""
        create temp view events as
        select person_id, event_name, occurred_at from wh.main.{EVENTS_MODEL}
        where event_type = 'track' and person_id is not null and event_name in ({wanted})
            {of_partition("person_id")}
        """
    )
    con.execute(
        f"""
        create temp view feedback as
        select send_key, feedback_event, occurred_at from wh.main.{FEEDBACK_MODEL}
        where reject_reason is null
        """
    )
    con.execute(
        f"create temp view aliases as select alias_person_id, person_id, is_primary "
        f"from wh.main.{quoted(ALIASES_MODEL)}"
    )
    if partition is None:
        transitions.create_history_view(con, landing_dir)
    else:
        transitions.create_history_view(con, landing_dir, name="all_history")
        con.execute(
            f"""
            create temp view history as
            select h.* from all_history h
            left join aliases m
                on m.alias_person_id = h.person_id and m.is_primary
                and m.alias_person_id <> m.person_id
            where true {of_partition("coalesce(m.person_id, h.person_id)")}
            """
        )


def decided_reader(
    landing_dir: Path, journey: Journey, aliases: Mapping[str, Sequence[str]]
) -> ReadDecided:
    """What makes the tick's `decided` (send_key, status, reason, decided_at, carried) from the
    ledger, for the entries the tick names. `aliases`: replaced person ids and who holds their
    identifiers now, the one each goes on as first."""

    def read(con: duckdb.DuckDBPyConnection, entries: str) -> None:
        ledger.create_decided(con, landing_dir, journey.name, aliases, entries)

    return read
