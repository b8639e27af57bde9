"""Retention: personal data kept only as long as the project declares.

Windows are declared in the dbt YAML, where the data is described, as `meta.retention` on a
landing source (a default for its tables), on one of its tables, or on a model:

    meta:
      retention:                       # or a list of such rules
        days: 396                      # rows whose time is older than this many days ...
        by: timestamp                  # ... by this column (default: the source's loaded_at_field)
        redact: [subject, body]        # only these columns emptied; without it, rows removed

`enforce` removes (or redacts) what is past its window (retention_policy.py reads the
declaration) in the landing files (rewritten atomically, as a forget does) and in the
warehouse tables of the models that declare a window (incremental models keep rows a rebuild
would not bring back; a table model follows its sources at its next build), then rewrites the
warehouse file so no freed block keeps a byte, and writes a report of what went, without
personal data (`landing/privacy/retention/`).

The ledger's lines and the journey transitions are the exactly-once record and the funnel's
counts: their rows are never removed, only their personal columns emptied (`redact`).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from sqlglot import exp

from activations.ledger.compact import compaction_lock
from switchyard import landing, publish
from switchyard.clock import parse_utc
from switchyard.privacy import landed, stored
from switchyard.privacy.audit import AuditLog
from switchyard.privacy.retention_policy import (
    LEDGER,
    PARQUET_FOLDERS,
    Policy,
    RetentionError,
    Rule,
    load_policy,
)

__all__ = ["Policy", "Report", "RetentionError", "Rule", "enforce", "load_policy"]

# The compacted ledger's keys file holds each key's latest message too, under its own names.
KEYS_FILE_COLUMNS = {"recorded_at": "last_at", "reason_detail": "last_detail"}


@dataclass
class Removed(landed.Done):
    undated: int = 0  # rows whose time is missing or unreadable: kept, counted


@dataclass
class Report:
    now: str
    dry_run: bool
    policy: dict[str, list[str]]
    stores: dict[str, dict[str, int]] = field(default_factory=dict)
    busy: list[str] = field(default_factory=list)  # files being written: the next run takes them
    path: str | None = None

    @property
    def rows_removed(self) -> int:
        return sum(s.get("rows_removed", 0) for s in self.stores.values())

    @property
    def rows_redacted(self) -> int:
        return sum(s.get("rows_redacted", 0) for s in self.stores.values())


# -- enforcing it ---------------------------------------------------------------------------


def enforce(
    landing_dir: Path,
    warehouse: Path | None,
    policy: Policy,
    now: datetime | None = None,
    dry_run: bool = False,
) -> Report:
    """Remove or redact what is past each window; with `dry_run`, count it only."""
    now = now or datetime.now(UTC)
    report = Report(now.isoformat(timespec="seconds"), dry_run, policy.describe())
    # Each store's counts grow as its files change, so a run stopped part-way (a file it
    # cannot write, a republish that fails) still reports what it did.
    progress: dict[str, Removed] = {}
    failed = True
    try:
        # The warehouse first, in one transaction: a declaration it refuses (a column a table
        # lacks) or a warehouse in use stops the run before any landing file changed.
        if policy.tables and warehouse is not None and warehouse.exists():
            _warehouse(warehouse, policy.tables, now, dry_run, progress)
        with compaction_lock(landing_dir):  # no compaction folds ledger lines in meanwhile
            unsettled = _unsettled(landing_dir) if set(policy.landing) & LEDGER else set()
            for name, rules in sorted(policy.landing.items()):
                exempt = unsettled if name in LEDGER else set()
                done = progress.setdefault(f"landing:{name}", Removed())
                if name in PARQUET_FOLDERS:
                    folder, patterns = PARQUET_FOLDERS[name]
                    files = [f for p in patterns for f in landed.visible(landing_dir / folder, p)]
                    _parquet(files, rules, now, dry_run, exempt, done)
                else:
                    _jsonl(landing_dir / name, rules, now, dry_run, exempt, done)
        failed = False
    finally:
        report.stores = {store: _counts(done) for store, done in progress.items()}
        report.busy = [f for done in progress.values() for f in done.busy]
        if not dry_run and (not failed or any(d.files for d in progress.values())):
            _report(landing_dir, report, completed=not failed)
    return report


def _report(landing_dir: Path, report: Report, completed: bool) -> None:
    path = _write_report(landing_dir, report)
    report.path = str(path)
    with AuditLog(landing_dir, "retention") as audit:
        for store, counts in report.stores.items():
            if counts["rows_removed"] or counts["rows_redacted"]:
                audit.record(path.stem, "retention", "stage", store, counts)
        if completed:
            audit.record(path.stem, "retention", "completed")


def _counts(done: Removed) -> dict[str, int]:
    return {
        "files": done.files,
        "rows_removed": done.rows_removed,
        "rows_redacted": done.rows_redacted,
        "undated": done.undated,
    }


def _time(value: object) -> datetime | None:
    """A landed row's time (ISO 8601 text, or epoch seconds or milliseconds), in UTC; None when
    it has none that reads."""
    if isinstance(value, str) and value.strip():
        try:
            return parse_utc(value).replace(tzinfo=UTC)
        except ValueError:
            return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1000 if value > 1e11 else value, UTC)
    return None


def _unsettled(landing_dir: Path) -> set[str]:
    """Send keys without a final outcome: the sender may still resend their message (at most
    once more, visibly), so it is kept until they settle."""
    from activations.ledger import open_keys

    return open_keys(landing_dir)


def _jsonl(
    folder: Path,
    rules: tuple[Rule, ...],
    now: datetime,
    dry_run: bool,
    exempt: set[str],
    done: Removed,
) -> None:
    def decide(row: dict[str, Any]) -> dict[str, Any] | bool | None:
        if exempt and row.get("send_key") in exempt:
            return True
        changed: dict[str, Any] | None = None
        for rule in rules:
            moment = _time(row.get(rule.by))
            if moment is None:
                done.undated += 1
                return True
            if moment >= rule.cutoff(now):
                continue
            if not rule.redact:
                return None
            for column in rule.redact:
                if row.get(column) is not None:
                    changed = changed or dict(row)
                    changed[column] = None
        return changed if changed is not None else True

    nobody = landed.Target(set(), set(), {}, set())  # text that does not parse is kept
    landed.wait_for_open_files(folder)
    for path in landed.visible(folder, "*.jsonl"):
        done.add(landed.rewrite_jsonl(path, decide, nobody, write=not dry_run))


def _past(rule: Rule, now: datetime) -> str:
    column = exp.to_identifier(rule.by).sql("duckdb")
    cutoff = exp.Literal.string(rule.cutoff(now).isoformat()).sql("duckdb")
    return f"try_cast({column} as timestamptz) < cast({cutoff} as timestamptz)"


def _parquet(
    files: list[Path],
    rules: tuple[Rule, ...],
    now: datetime,
    dry_run: bool,
    exempt: set[str],
    done: Removed,
) -> None:
    with duckdb.connect() as con:
        con.execute("set TimeZone = 'UTC'")  # a naive timestamp is UTC, as the writers mean it
        con.register("exempt_keys", pa.table({"send_key": pa.array(sorted(exempt), pa.string())}))
        for path in files:
            source = f"read_parquet({exp.Literal.string(str(path)).sql('duckdb')})"
            columns = {r[0] for r in con.execute(f"describe select * from {source}").fetchall()}
            applied = rules
            if path.name.startswith("keys-"):
                applied = _keys_file_rules(rules, columns)
            kept = "send_key in (select send_key from exempt_keys)" if exempt else "false"
            past = _Past.of(str(path), columns, applied, now, kept)
            removed, redacted, undated = past.counts(con, source, applied)
            done.undated += undated
            if not removed and not redacted:
                continue
            if not dry_run:
                landed.rewrite_parquet(con, path, past.kept(source))
            done.files += 1
            done.rows_removed += removed
            done.rows_redacted += redacted


@dataclass(frozen=True)
class _Past:
    """A table's rules as SQL over its columns: which rows go, which columns are emptied when."""

    gone: str
    emptied: dict[str, str]  # column -> when it is emptied

    @classmethod
    def of(
        cls,
        relation: str,
        columns: set[str],
        rules: tuple[Rule, ...],
        now: datetime,
        exempt: str = "false",
    ) -> _Past:
        """`exempt`: rows no rule touches (a ledger key not settled yet)."""
        for rule in rules:
            missing = ({rule.by} | set(rule.redact)) - columns
            if missing:
                raise RetentionError(
                    f"{relation}: retention names {', '.join(sorted(missing))}, which it does "
                    f"not have (its columns: {', '.join(sorted(columns))})"
                )
        emptied: dict[str, list[str]] = {}
        for rule in (r for r in rules if r.redact):
            for column in rule.redact:
                emptied.setdefault(column, []).append(_past(rule, now))
        gone = " or ".join(_past(r, now) for r in rules if not r.redact) or "false"
        spared = f"not coalesce({exempt}, false)"
        return cls(
            f"({spared} and coalesce({gone}, false))",
            {c: f"({spared} and coalesce({' or '.join(w)}, false))" for c, w in emptied.items()},
        )

    def counts(
        self, con: duckdb.DuckDBPyConnection, relation: str, rules: tuple[Rule, ...]
    ) -> tuple[int, int, int]:
        """Rows removed, rows redacted (something in them emptied), rows without a time."""
        redacts = " or ".join(
            f"({when} and {_q(c)} is not null)" for c, when in self.emptied.items()
        )
        undated = " or ".join(f"try_cast({_q(r.by)} as timestamptz) is null" for r in rules)
        found = con.execute(
            f"select count(*) filter (where {self.gone}), "
            f"count(*) filter (where not {self.gone} and ({redacts or 'false'})), "
            f"count(*) filter (where {undated}) from {relation}"
        ).fetchone() or (0, 0, 0)
        return int(found[0]), int(found[1]), int(found[2])

    def kept(self, relation: str) -> str:
        replaced = [
            f"case when {when} then null else {_q(c)} end as {_q(c)}"
            for c, when in self.emptied.items()
        ]
        select = f"select * replace ({', '.join(replaced)})" if replaced else "select *"
        return f"{select} from {relation} where not {self.gone}"


def _keys_file_rules(rules: tuple[Rule, ...], columns: set[str]) -> tuple[Rule, ...]:
    """The ledger's rules as the keys file names its columns (a key's latest line)."""
    return tuple(
        Rule(
            r.days,
            KEYS_FILE_COLUMNS.get(r.by, r.by),
            tuple(c for c in (KEYS_FILE_COLUMNS.get(c, c) for c in r.redact) if c in columns),
        )
        for r in rules
    )


def _q(column: str) -> str:
    return exp.to_identifier(column).sql("duckdb")


def _warehouse(
    warehouse: Path,
    tables: Mapping[str, tuple[Rule, ...]],
    now: datetime,
    dry_run: bool,
    progress: dict[str, Removed],
) -> None:
    """Each declared model's table trimmed in one transaction, then the file rewritten so no
    freed block keeps what went, and the published copy made again. The counts go into
    `progress` once the transaction is committed."""
    try:
        con = duckdb.connect(str(warehouse), read_only=dry_run)
    except duckdb.IOException as exc:
        raise RuntimeError(
            f"the warehouse {warehouse} is in use ({exc}): retention needs it to itself; the "
            "days tier runs it in the warehouse pool, or run it between Dagster runs"
        ) from exc
    done: dict[str, Removed] = {}
    try:
        con.execute("set TimeZone = 'UTC'")
        if not dry_run:
            con.execute("begin")
        for table, rules in sorted(tables.items()):
            schema, name = table.split(".", 1)
            relation = ".".join(_q(n) for n in (schema, name))
            found = con.execute(
                "select list(column_name) from information_schema.columns "
                "where table_schema = ? and table_name = ? and table_catalog = current_database()",
                [schema, name],
            ).fetchone()
            if not found or not found[0]:
                continue  # not built yet
            past = _Past.of(relation, set(found[0]), rules, now)
            removed, redacted, undated = past.counts(con, relation, rules)
            files = 1 if removed or redacted else 0
            done[table] = Removed(files, removed, redacted, undated=undated)
            if dry_run:
                continue
            if removed:
                con.execute(f"delete from {relation} where {past.gone}")
            for column, when in past.emptied.items():
                con.execute(
                    f"update {relation} set {_q(column)} = null "
                    f"where {when} and {_q(column)} is not null"
                )
        if not dry_run:
            con.execute("commit")
        progress.update({f"warehouse:{table}": counts for table, counts in done.items()})
        if not dry_run:
            con.execute("checkpoint")
            if any(d.files for d in done.values()):
                stored.rewrite_file(con, warehouse)  # while this connection keeps writers out
    finally:
        con.close()
    changed = any(d.files for d in done.values())
    if not dry_run and changed and publish.published_path(warehouse).exists():
        publish.publish(warehouse)


def _write_report(landing_dir: Path, report: Report) -> Path:
    """The run's audit, without personal data: when, the policy, what each store gave up."""
    stamp = re.sub(r"[^0-9T]", "", report.now)[:15]
    path = landing_dir / "privacy" / "retention" / f"run-{stamp}-{uuid.uuid4().hex[:8]}.json"
    document = json.dumps({**asdict(report), "path": None}, indent=2, sort_keys=True) + "\n"
    landing.replace_file(path, document.encode())
    return path
