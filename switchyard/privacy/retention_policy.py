"""Retention windows as the dbt YAML declares them: `meta.retention` on a landing source (a
default for its tables), on one of its tables, or on a model (docs/privacy.md). Read from the
manifest and checked; a mistake names the source or model and what is allowed. Enforcing
them is retention.py's job."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlglot
from sqlglot import exp

from switchyard import landing

# dbt sources whose tables are Parquet files under the landing folder: folder, file patterns
PARQUET_FOLDERS = {
    "journeys/transitions": ("journeys/transitions", ("*.parquet",)),
    "journeys/previews": ("journeys/previews", ("*.parquet",)),
    "syncs/results": ("syncs/results", ("*.parquet",)),
    # the lines, and each key's latest message (the sends files hold no message)
    "ledger/deliveries_compacted": ("ledger/compacted", ("lines-*.parquet", "keys-*.parquet")),
}
# rows kept for exactly-once and the funnel: only their columns may be emptied
LEDGER = {"ledger/deliveries", "ledger/deliveries_compacted"}
REDACT_ONLY = LEDGER | {"journeys/transitions"}
RULE_KEYS = {"days", "by", "redact"}


class RetentionError(ValueError):
    pass


@dataclass(frozen=True)
class Rule:
    days: int
    by: str
    redact: tuple[str, ...] = ()  # empty: rows past the window are removed

    def cutoff(self, now: datetime) -> datetime:
        return now - timedelta(days=self.days)

    def describe(self) -> str:
        what = f"empty {', '.join(self.redact)}" if self.redact else "remove rows"
        return f"{what} older than {self.days} days by {self.by}"


@dataclass(frozen=True)
class Policy:
    landing: dict[str, tuple[Rule, ...]]  # "source/table" -> its rules
    tables: dict[str, tuple[Rule, ...]]  # "schema.table" of a model -> its rules

    def describe(self) -> dict[str, list[str]]:
        return {
            name: [r.describe() for r in rules]
            for name, rules in sorted({**self.landing, **self.tables}.items())
        }


def load_policy(manifest_path: Path) -> Policy:
    """Every `meta.retention` of the project's sources and models, checked: a mistake names the
    source or model and what is allowed."""
    manifest = json.loads(manifest_path.read_text())
    landing_rules: dict[str, tuple[Rule, ...]] = {}
    for source in manifest.get("sources", {}).values():
        name = f"{source['source_name']}/{source['name']}"
        declared = _meta(source).get("retention", source.get("source_meta", {}).get("retention"))
        if declared is None:
            continue
        where = f"source {source['source_name']}.{source['name']} ({source['original_file_path']})"
        if name not in _LANDING_TABLES:
            raise RetentionError(
                f"{where}: retention is enforced on the landing tables only "
                f"({', '.join(sorted(_LANDING_TABLES))}); a table another tool loads keeps "
                "its own retention"
            )
        rules = _rules(where, declared, _time_column(source.get("loaded_at_field")))
        if name in REDACT_ONLY and any(not r.redact for r in rules):
            raise RetentionError(
                f"{where}: its rows are the exactly-once record and the funnel's counts and are "
                "never removed; declare `redact: [columns]` to empty personal columns instead"
            )
        landing_rules[name] = rules
    table_rules: dict[str, tuple[Rule, ...]] = {}
    for node in manifest.get("nodes", {}).values():
        declared = _meta(node).get("retention")
        if node.get("resource_type") != "model" or declared is None:
            continue
        where = f"model {node['name']} ({node['original_file_path']})"
        if node.get("config", {}).get("materialized") in ("view", "ephemeral"):
            raise RetentionError(
                f"{where}: a view stores nothing; declare retention on the source it reads"
            )
        table = f"{node['schema']}.{node.get('alias') or node['name']}"
        table_rules[table] = _rules(where, declared, None)
    return Policy(landing_rules, table_rules)


def _meta(node: Mapping[str, Any]) -> dict[str, Any]:
    return {**(node.get("meta") or {}), **(node.get("config", {}).get("meta") or {})}


def _time_column(loaded_at_field: str | None) -> str | None:
    """The one column a source's `loaded_at_field` reads (`try_cast(timestamp as timestamp)`)."""
    if not loaded_at_field:
        return None
    columns = {c.name for c in sqlglot.parse_one(loaded_at_field).find_all(exp.Column)}
    return columns.pop() if len(columns) == 1 else None


def _rules(where: str, declared: Any, default_by: str | None) -> tuple[Rule, ...]:
    items = declared if isinstance(declared, list) else [declared]
    rules = []
    for item in items:
        if isinstance(item, dict) and {True, "true"} & set(item):
            raise RetentionError(
                f"{where}: a retention rule has a key YAML reads as true (an unquoted `on:`, "
                "which dbt cannot log either): the time column is named with `by:`"
            )
        if not isinstance(item, dict) or set(item) - RULE_KEYS:
            raise RetentionError(
                f"{where}: retention {item!r} is not a rule; each is "
                "{days: N, by: column, redact: [columns]} (by and redact optional)"
            )
        days, by, redact = item.get("days"), item.get("by") or default_by, item.get("redact", [])
        if not isinstance(days, int) or isinstance(days, bool) or days < 1:
            raise RetentionError(
                f"{where}: retention days must be a whole number >= 1, not {days!r}"
            )
        if not by:
            raise RetentionError(
                f"{where}: retention needs `by:`, the column holding each row's time"
            )
        if not isinstance(redact, list) or not all(isinstance(c, str) for c in redact):
            raise RetentionError(f"{where}: retention redact must be a list of column names")
        rules.append(Rule(days, str(by), tuple(redact)))
    return tuple(rules)


_LANDING_TABLES = {f"{s}/{t}" for s, tables in landing.LAYOUT.items() for t in tables} | set(
    PARQUET_FOLDERS
)
