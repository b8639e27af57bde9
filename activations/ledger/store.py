"""Where ledger lines live, and the relations every reader of the ledger uses.

    ledger/deliveries/run-*.jsonl            lines as runs append them (the landing contract)
    ledger/compacted/lines-<gen>.parquet     the same lines, typed, each with its source_file
    ledger/compacted/keys-<gen>.parquet      one row per send key: its state up to <gen>

A run file belongs to the Parquet file that names it in source_file; readers skip it from then on,
and the compaction after the one that took it deletes it (a reader that listed it a moment before
can still read it). The newest keys file covers every lines file up to its generation; lines files
above it (a compaction stopped before its keys file) are read as lines. So a reader's work grows
with the lines since the last compaction, not with history.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import duckdb

from activations.ledger.vocabulary import COLUMNS
from activations.tick import lit
from switchyard import landing

COMPACTED = "compacted"
_GEN = re.compile(r"^(lines|keys)-(\d{8})\.parquet$")

# At one clock reading (a fixed clock): deferred, attempted, unknown, then the outcome.
RANK_SQL = (
    "case status when 'deferred' then -1 when 'attempted' then 0 when 'unknown' then 1 else 2 end"
)
UNSETTLED = ("attempted", "unknown")
# Kept in the keys file whatever was asked for: a run acts on all of them.
OPEN = (*UNSETTLED, "deferred")

# One row per key: the shape of the keys file, and of one line read as a key's whole history.
KEY_COLUMNS = {
    "send_key": "VARCHAR",
    "journey": "VARCHAR",
    "step": "VARCHAR",
    "person_id": "VARCHAR",
    "entry_id": "VARCHAR",
    "last_status": "VARCHAR",
    "last_at": "TIMESTAMP",
    "last_rank": "INTEGER",
    "attempts": "BIGINT",
    "sent_at": "TIMESTAMP[]",  # sends, and attempts given up on as outcome_unknown (may have gone)
    "last_sent_at": "TIMESTAMP",
    "first_attempted_at": "TIMESTAMP",
    "last_attempted_at": "TIMESTAMP",
    # the latest attempt's message: what a provider lookup must find (kept while unsettled)
    "channel": "VARCHAR",
    "recipient": "VARCHAR",
    "subject": "VARCHAR",
    "body": "VARCHAR",
}


def compacted_dir(landing_dir: Path) -> Path:
    return landing_dir / "ledger" / COMPACTED


def ensure_folder(landing_dir: Path) -> Path:
    """The compacted folder, with an empty generation-0 lines file: dbt's glob of lines files
    is readable before the first compaction."""
    folder = compacted_dir(landing_dir)
    folder.mkdir(parents=True, exist_ok=True)
    empty = folder / compacted_name("lines", 0)
    if not empty.exists():
        columns = {**COLUMNS, "line_at": "TIMESTAMP", "source_file": "VARCHAR"}
        typed = ", ".join(f"null::{kind} as {name}" for name, kind in columns.items())
        con = duckdb.connect()
        try:
            landing.write_parquet(con, f"select {typed} limit 0", empty)
        finally:
            con.close()
    return folder


def run_files_dir(landing_dir: Path) -> Path:
    return landing.table_dir(landing_dir, "ledger", "deliveries")


def generations(landing_dir: Path, kind: str) -> dict[int, Path]:
    found: dict[int, Path] = {}
    folder = compacted_dir(landing_dir)
    if folder.is_dir():
        for path in folder.iterdir():
            match = _GEN.match(path.name)
            if match and match.group(1) == kind:
                found[int(match.group(2))] = path
    return found


def compacted_name(kind: str, gen: int) -> str:
    return f"{kind}-{gen:08d}.parquet"


def paths_sql(paths: list[Path]) -> str:
    return "[" + ", ".join(lit(str(p)) for p in paths) + "]"


@dataclass(frozen=True)
class Layout:
    """What a reader reads, listed once so that every relation agrees."""

    keys_file: Path | None  # the newest keys file
    keys_gen: int
    lines_files: list[Path]  # every compacted lines file (history)
    newer_lines_files: list[Path]  # lines files above keys_gen
    run_files: list[Path]  # run files no lines file has taken
    taken_run_files: set[str]  # names of run files a lines file has taken


def layout(con: duckdb.DuckDBPyConnection, landing_dir: Path) -> Layout:
    keys = generations(landing_dir, "keys")
    lines = generations(landing_dir, "lines")
    keys_gen = max(keys, default=0)
    taken: set[str] = set()
    if lines:
        rows = con.execute(
            f"select distinct source_file from read_parquet({paths_sql(list(lines.values()))})"
        ).fetchall()
        taken = {name for (name,) in rows}
    folder = run_files_dir(landing_dir)
    run_files = sorted(
        p
        for p in folder.glob("*.jsonl")
        if p.name not in taken and p.name != landing.PLACEHOLDER and p.stat().st_size > 0
    )
    return Layout(
        keys_file=keys.get(keys_gen),
        keys_gen=keys_gen,
        lines_files=[lines[g] for g in sorted(lines)],
        newer_lines_files=[lines[g] for g in sorted(lines) if g > keys_gen],
        run_files=run_files,
        taken_run_files=taken,
    )


def run_lines_sql(files: list[Path]) -> str:
    """The run files' lines, typed as the lines files hold them."""
    columns = ", ".join(f"'{name}': '{kind}'" for name, kind in COLUMNS.items())
    return f"""
        select * exclude (filename),
            try_cast(recorded_at as timestamp) as line_at,
            parse_filename(filename) as source_file
        from read_json({paths_sql(files)}, format='newline_delimited', filename=true,
                       columns={{{columns}}})
    """


def _union(parts: list[str]) -> str:
    return " union all by name ".join(f"({p})" for p in parts)


def lines_sql(view: Layout, newer_only: bool = False) -> str | None:
    """Every line (or only those the keys file does not cover): columns, line_at, source_file."""
    files = view.newer_lines_files if newer_only else view.lines_files
    parts = [f"select * from read_parquet({paths_sql(files)})"] if files else []
    if view.run_files:
        parts.append(run_lines_sql(view.run_files))
    return _union(parts) if parts else None


def _line_as_key_sql(lines: str) -> str:
    """Each line as a key row: a key's rows folded by `fold_sql` give its state."""
    return f"""
        select
            send_key, journey, step, person_id, entry_id,
            status as last_status, line_at as last_at, {RANK_SQL} as last_rank,
            (status = 'attempted')::bigint as attempts,
            case when status = 'sent' or (status = 'failed' and reason = 'outcome_unknown')
                then [line_at] else []::timestamp[] end as sent_at,
            case when status = 'sent' or (status = 'failed' and reason = 'outcome_unknown')
                then line_at end as last_sent_at,
            case when status = 'attempted' then line_at end as first_attempted_at,
            case when status = 'attempted' then line_at end as last_attempted_at,
            case when status = 'attempted' then channel end as channel,
            case when status = 'attempted' then recipient end as recipient,
            case when status = 'attempted' then subject end as subject,
            case when status = 'attempted' then body end as body
        from ({lines})
    """


def fold_sql(rows: str) -> str:
    """Key rows (lines as key rows, keys-file rows) folded into one row per key. The message
    columns are kept only while the key is unsettled: nothing else needs them."""
    last = "{'t': last_at, 'rank': last_rank}"
    folded = f"""
        select
            send_key,
            any_value(journey) as journey, any_value(step) as step,
            any_value(person_id) as person_id, any_value(entry_id) as entry_id,
            arg_max(last_status, {last}) as last_status,
            max({last}).t as last_at, max({last}).rank as last_rank,
            sum(attempts)::bigint as attempts,
            flatten(list(sent_at)) as sent_at,
            max(last_sent_at) as last_sent_at,
            min(first_attempted_at) as first_attempted_at,
            max(last_attempted_at) as last_attempted_at,
            arg_max(channel, last_attempted_at) as channel,
            arg_max(recipient, last_attempted_at) as recipient,
            arg_max(subject, last_attempted_at) as subject,
            arg_max(body, last_attempted_at) as body
        from ({rows})
        group by send_key
    """
    open_ = ", ".join(lit(s) for s in UNSETTLED)
    message = ("channel", "recipient", "subject", "body")
    kept = ", ".join(f"case when last_status in ({open_}) then {c} end as {c}" for c in message)
    return f"select * exclude ({', '.join(message)}), {kept} from ({folded})"


def keys_sql(view: Layout, where: str = "true") -> str:
    """One row per key (KEY_COLUMNS) that `where` (a condition on the key columns) holds for.
    Keys the lines since the keys file do not touch come from it as they are; only the keys
    they touch are folded, so the work grows with those lines, not with history."""
    newer = lines_sql(view, newer_only=True)
    columns = ", ".join(KEY_COLUMNS)
    if view.keys_file is None and newer is None:
        casts = ", ".join(f"null::{kind} as {name}" for name, kind in KEY_COLUMNS.items())
        return f"select {casts} where false"
    stored = f"select {columns} from read_parquet({lit(str(view.keys_file))})"
    if newer is None:
        return f"select * from ({stored}) where {where}"
    fresh = _line_as_key_sql(newer)
    if view.keys_file is None:
        return f"select * from ({fold_sql(fresh)}) where {where}"
    touched = f"select send_key from ({fresh})"
    refolded = fold_sql(
        f"select * from ({stored}) where send_key in ({touched}) union all by name {fresh}"
    )
    return f"""
        select * from ({stored}) where ({where}) and send_key not in ({touched})
        union all by name
        select * from ({refolded}) where {where}
    """


def newest_line_sql(view: Layout) -> str:
    """When the newest line was written (null for an empty ledger)."""
    newer = lines_sql(view, newer_only=True)
    parts = [f"select max(line_at) as newest from ({newer})"] if newer else []
    if view.keys_file is not None:
        parts.append(f"select max(last_at) as newest from read_parquet({lit(str(view.keys_file))})")
    return f"select max(newest) from ({_union(parts)})" if parts else "select null::timestamp"
