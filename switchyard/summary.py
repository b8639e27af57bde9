"""The short report a run ends with: what happened, where the data is, what to query."""

from __future__ import annotations

from pathlib import Path

import duckdb

from switchyard.publish import published_path

TABLES = {
    "dim_people": "one row per person: traits, consent, RFM, engagement, churn risk",
    "dim_people_consents": "consent per person, channel and topic, with source and time",
    "dim_identities": "identifier -> person",
    "fct_identity_audit": "identifiers kept out of merging, with the reason",
    "fct_person_merges": "every person-id change (merge, split); dim_person_aliases maps old ids",
    "audience_cart_abandonment": "journey entries",
    "fct_deliveries": "one row per send key with its outcome",
    "fct_journey_step_metrics": "decisions per journey step and channel (skip reasons)",
    "fct_journey_funnel": "funnel per journey, version, arm, split path and step",
    "fct_journey_experiments": "holdout and split lift with 95% intervals",
    "fct_rejected_rows": "landed rows that could not be used, with the reason",
    "fct_guard_violations": "sends a guard should have stopped (empty when every promise held)",
    "dim_sync_state": "what each sync's destination (Braze) holds per key, and pending rows",
    "fct_sync_runs": "per sync run: rows added, changed, removed, rejected",
}


def collect(duckdb_path: Path) -> dict[str, object]:
    con = duckdb.connect(str(duckdb_path), read_only=True)
    try:

        def one(sql: str) -> int:
            row = con.execute(sql).fetchone()
            return int(row[0]) if row and row[0] is not None else 0

        def counts(table: str, by: str, where: str = "true") -> dict[str, int]:
            """Rows of `table` per value of `by` (SQL written here, never user text)."""
            return dict(
                con.execute(
                    f"select {by}, count(*) from {table} where {where} group by 1 order by 1"
                ).fetchall()
            )

        def per_channel(status: str) -> dict[str, int]:
            return counts(
                "fct_deliveries", "coalesce(channel, 'none')", f"delivery_status = '{status}'"
            )

        return {
            "people": one("select count(*) from dim_people"),
            "identified_people": one("select count(*) from dim_people where user_id is not null"),
            "anonymous_ids_stitched": one(
                "select count(*) from dim_identities where identifier_type = 'anonymous_id' "
                "and person_id in "
                "(select person_id from dim_identities where identifier_type = 'user_id')"
            ),
            "journey_entries": one("select count(*) from fct_journey_entries"),
            "rejected_rows": one("select count(*) from fct_rejected_rows"),
            "violations": counts("fct_guard_violations", "violation"),
            "sent": per_channel("sent"),
            # a superseded key is no decision of its own (its step went on under another key)
            "skipped": counts(
                "fct_deliveries",
                "reason",
                "delivery_status = 'skipped' and coalesce(reason, '') <> 'superseded'",
            ),
            "failed": per_channel("failed"),
            "unknown": per_channel("unknown"),
            "synced": counts("dim_sync_state", "sync", "destination_state = 'live'"),
            "sync_pending": counts("dim_sync_state", "sync", "is_pending"),
        }
    finally:
        con.close()


def render(
    stats: dict[str, object], duckdb_path: Path, run_sent: dict[str, int] | None = None
) -> str:
    def kv(d: object) -> str:
        return ", ".join(f"{k}={v}" for k, v in d.items()) if isinstance(d, dict) and d else "none"

    lines = [
        "Switchyard run summary",
        f"  people                  {stats['people']} ({stats['identified_people']} identified)",
        f"  anonymous ids stitched  {stats['anonymous_ids_stitched']}",
        f"  journey entries         {stats['journey_entries']}",
        f"  sent per channel        {kv(stats['sent'])}",
        f"  skipped by reason       {kv(stats['skipped'])}",
        f"  failed                  {kv(stats['failed'])}",
        f"  outcome unknown         {kv(stats['unknown'])} (reconciled, or settled next run)",
        f"  rejected landing rows   {stats['rejected_rows']} (see fct_rejected_rows)",
        f"  guard violations        {kv(stats['violations'])} (see fct_guard_violations)",
        f"  synced to destinations  {kv(stats['synced'])} rows live; pending "
        f"{kv(stats['sync_pending'])} (see dim_sync_state)",
    ]
    if run_sent is not None:
        lines.append(f"  sandbox received        {kv(run_sent) if run_sent else 'nothing new'}")
    lines += [
        "",
        f"Warehouse: {duckdb_path}",
        f"  query it: duckdb -readonly {published_path(duckdb_path)}  (or any BI tool: the "
        "copy published after each run, never locked by one)",
    ]
    lines += [f"  {name:<26} {what}" for name, what in TABLES.items()]
    return "\n".join(lines)
