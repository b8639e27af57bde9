"""Everything held about one person, as one JSON document: the answer to an access request
(GDPR Art. 15, CCPA "right to know").

Read from the warehouse (the published copy when there is one, so no run is held up), as of its
last build: identifiers with the spellings they arrived in, the profile, consents now and their
history, suppressions of the person's addresses, events, orders, messages with their outcomes
and engagement, in-app messages, and journey entries and positions. Ledger lines and landing
files newer than the last build are not in it; the document says when its source was built.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from switchyard import landing
from switchyard.privacy.subject import Subject

# section -> its query: each reads one relation for the subject, with named parameters:
# `ids`: the person's current and former person ids; `users`: user ids; `emails`, `phones`:
# normalised; `addresses`: every email, phone and push token.
SECTIONS: dict[str, str] = {
    "identifiers": """
        select i.identifier_type as type, i.identifier_value as value, i.resolution,
            i.first_seen_at, i.last_seen_at,
            (select list(distinct o.raw_value order by o.raw_value)
             from int_identifier_occurrences as o
             where o.identifier_key = i.identifier_key) as spellings
        from dim_identities as i
        where i.person_id in (select unnest($ids))
        order by 1, 2
    """,
    "profile": "select * from dim_people where person_id in (select unnest($ids))",
    "consents": """
        select channel, topic, consent_status, consent_source, recorded_at
        from dim_people_consents where person_id in (select unnest($ids)) order by 1, 2
    """,
    "consent_history": """
        select user_id, channel, topic, consent_status, consent_source, recorded_at,
            reject_reason
        from stg_preferences__consents where user_id in (select unnest($users))
        order by recorded_at, channel, topic
    """,
    "suppressions": """
        select channel, address, suppression_status, scope, reason, suppression_source,
            recorded_at
        from stg_preferences__suppressions
        where lower(trim(address)) in (select lower(trim(unnest($addresses))))
        order by recorded_at
    """,
    "events": """
        select event_id, event_type, event_name, occurred_at, received_at, user_id,
            anonymous_id, device_id, properties, traits, timezone, intake_source
        from int_events_stitched where person_id in (select unnest($ids))
        order by occurred_at, event_id
    """,
    "orders": """
        select order_id, user_id, email, order_total, currency, order_status, ordered_at
        from stg_shop__orders
        where user_id in (select unnest($users))
            or (user_id is null and email in (select unnest($emails)))
        order by ordered_at, order_id
    """,
    "messages": """
        select d.send_key, d.journey, d.step, d.channel, d.recipient, d.delivery_status,
            d.reason, d.subject, d.body, d.first_attempted_at, d.sent_at, d.decided_at,
            e.delivered_at, e.first_opened_at, e.first_clicked_at, e.unsubscribed_at,
            e.opens, e.clicks
        from fct_deliveries as d
        left join fct_message_engagement as e using (send_key)
        where d.person_id in (select unnest($ids)) or d.current_person_id in (select unnest($ids))
        order by d.first_attempted_at, d.send_key
    """,
    "inbox": """
        select send_key, journey, step, title, body, created_at, read_at, clicked_at
        from fct_inbox_messages where user_id in (select unnest($users))
        order by created_at, send_key
    """,
    "journey_entries": """
        select journey, entry_id, entered_at, arm, split_path, exited_at, converted_at,
            ended_at, end_reason
        from fct_journey_entries
        where person_id in (select unnest($ids)) or current_person_id in (select unnest($ids))
        order by entered_at, entry_id
    """,
    "journey_positions": """
        select journey, entry_id, node, entry_state, since, next_at, reason
        from dim_journey_positions
        where person_id in (select unnest($ids)) or current_person_id in (select unnest($ids))
        order by journey, entry_id
    """,
}


class ExportError(RuntimeError):
    """The warehouse cannot answer (not built, a relation missing)."""


def document(
    con: duckdb.DuckDBPyConnection, subject: Subject, source: Path, now: datetime | None = None
) -> dict[str, Any]:
    """The export of `subject` from the warehouse on `con` (read from `source`)."""
    ids = subject.person_ids
    profile_rows = _rows(con, "profile", {"ids": ids})
    tokens = [str(r["push_token"]) for r in profile_rows if r.get("push_token")]
    params = {
        "ids": ids,
        "users": subject.values("user_id"),
        "emails": subject.values("email"),
        "addresses": [*subject.values("email"), *subject.values("phone"), *tokens],
    }
    doc: dict[str, Any] = {
        "generated_at": (now or datetime.now(UTC)).isoformat(timespec="seconds"),
        "source": str(source),
        "source_built_at": datetime.fromtimestamp(source.stat().st_mtime, UTC).isoformat(
            timespec="seconds"
        ),
        "person_id": subject.person_id,
        "former_person_ids": list(subject.former_person_ids),
        "profile": profile_rows[0] if profile_rows else None,
    }
    for section in SECTIONS:
        if section != "profile":
            doc[section] = _rows(con, section, params)
    return doc


def _rows(
    con: duckdb.DuckDBPyConnection, section: str, params: Mapping[str, Sequence[str]]
) -> list[dict[str, Any]]:
    sql = SECTIONS[section]
    used = {k: list(v) for k, v in params.items() if f"${k}" in sql}
    try:
        cur = con.execute(sql, used)
    except (duckdb.CatalogException, duckdb.BinderException) as exc:
        raise ExportError(
            f"the warehouse cannot answer for {section!r}: {exc}. Build the models first "
            "(`switchyard demo`, or a Dagster run)"
        ) from exc
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def write(doc: dict[str, Any], out: Path) -> Path:
    """`doc` as JSON at `out`, readable by its owner only (it is personal data)."""
    text = json.dumps(doc, indent=2, default=_plain, ensure_ascii=False) + "\n"
    landing.replace_file(out, text.encode(), mode=0o600)
    return out


def _plain(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)  # dates, decimals, UUIDs
