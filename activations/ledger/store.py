"""Where ledger lines live, and the relations every reader of the ledger uses.

    ledger/deliveries/run-*.jsonl            lines as runs append them (the landing contract)
    ledger/compacted/lines-<gen>.parquet     the same lines, typed, each with its source_file
    ledger/compacted/sends-<gen>.parquet     the sends (for caps) of lines-<gen>, by person
    ledger/compacted/keys-<gen>.parquet      one row per send key: its state up to <gen>,
                                             the open keys first
    ledger/compacted/rejects-*.parquet       the lines a compaction left out of the run files
                                             it deleted (cut short by a kill): one row each, so
                                             dbt lists them once their run file is gone

A run file belongs to the Parquet file that names it in source_file; readers skip it from then on,
and the compaction after the one that took it deletes it (a reader that listed it a moment before
can still read it). The newest keys file covers every lines file up to its generation; lines files
above it (a compaction stopped before its keys file) are read as lines. So a reader's work grows
with the lines since the last compaction, not with history. A sends file is the narrow copy of
its lines file that a run's cap reads (a lines file without one, from before sends files, is
read in its place until a compaction writes it).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import tempfile
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import duckdb

from activations.ledger.vocabulary import COLUMNS
from activations.tick import lit
from switchyard import landing

COMPACTED = "compacted"
_GEN = re.compile(r"^(lines|keys|sends)-(\d{8})\.parquet$")

# The outcome of an attempt the provider refused before any work (DeferReason.RETRYING): it
# went nowhere. A key's attempts less its refusals are those that may have gone out.
REFUSED_SQL = "(status = 'deferred' and reason = 'retrying')"
# At one clock reading (a fixed clock): deferred, attempted, unknown or refused, the outcome.
RANK_SQL = (
    f"case when {REFUSED_SQL} then 1 when status = 'deferred' then -1 "
    "when status = 'attempted' then 0 when status = 'unknown' then 1 else 2 end"
)
# Not decided yet; a run acts on all of them. An open key's latest attempt, if it has one, is
# unsettled: a deferral after it (quiet hours, the cap) does not say whether it went out. Only a
# refusal does, of one attempt: the key is in doubt while it has more attempts than refusals.
OPEN = ("attempted", "unknown", "deferred")

# One row per key: the shape of the keys file, and of one line read as a key's whole history.
# (Sends for the cap are read from the lines, which are in time order: a window prunes them.)
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
    "refusals": "BIGINT",  # attempts the provider refused before any work (REFUSED_SQL)
    "last_reason": "VARCHAR",  # the latest line's reason and detail (a deferral's "until ...")
    "last_detail": "VARCHAR",
    "first_attempted_at": "TIMESTAMP",
    "last_attempted_at": "TIMESTAMP",
    # the key's latest line, whatever its status (a final line stamped by a run whose clock was
    # behind can be older than an open line before it): every key has a line stamped by a run
    # that found its step due, so no later than this; a tick bounds its reads by it. Null when
    # a line of the key has no readable time, or a keys file from before it held the key (until
    # the next compaction that has new lines fills it in: compact._with_seen_at).
    "seen_at": "TIMESTAMP",
    # the latest attempt's message: what a provider lookup must find (kept while unsettled)
    "channel": "VARCHAR",
    "recipient": "VARCHAR",
    "subject": "VARCHAR",
    "body": "VARCHAR",
}


def compacted_dir(landing_dir: Path) -> Path:
    return landing_dir / "ledger" / COMPACTED


MEMORY_LIMIT_VARIABLE = "SWITCHYARD_LEDGER_MEMORY_LIMIT"
MEMORY_LIMIT = "4GB"  # a fold of ~25M lines not yet compacted fits (4.5 GiB peak, measured)


@contextlib.contextmanager
def bounded_connection(
    landing_dir: Path, compacting: bool = False
) -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory connection that reads or folds the ledger within MEMORY_LIMIT (or
    SWITCHYARD_LEDGER_MEMORY_LIMIT), spilling to a folder of its own beyond it. Unbounded,
    DuckDB takes up to 80% of the machine's memory: 19.9 GiB for a run's read of 25M lines not
    yet compacted, here."""
    limit = os.environ.get(MEMORY_LIMIT_VARIABLE) or MEMORY_LIMIT
    with _spill_folder(landing_dir) as spill:
        con = duckdb.connect()
        try:
            con.execute(f"set memory_limit = {lit(limit)}")
            con.execute(f"set temp_directory = {lit(str(spill))}")
            yield con
        except duckdb.OutOfMemoryException as exc:
            # Folding keys spills only so far: what is not compacted yet must be, or the limit
            # raised.
            doing, todo = ("compacting", "") if compacting else ("reading", _COMPACT_IT)
            raise RuntimeError(
                f"{doing} the ledger in {landing_dir} took more than {limit}: "
                f"{todo}raise {MEMORY_LIMIT_VARIABLE}"
            ) from exc
        finally:
            con.close()


_COMPACT_IT = "compact it (`switchyard ledger compact`, or Dagster's daily `ledger_upkeep` job) or "
_SPILL_PREFIX = "ledger-spill-"
_HELD = ".held"  # locked while its folder is in use


@contextlib.contextmanager
def _spill_folder(landing_dir: Path) -> Iterator[Path]:
    """A new folder for one connection's spill files (DuckDB's temp file names are not unique
    across processes), beside the ledger (the same disk), or in the system's temporary folder
    where that cannot be written; removed after. Spill files can hold messages: folders whose
    connection is gone (a process killed before removing its own) go first, found by their
    lock, free once its holder is gone whichever process or machine that was."""
    root = compacted_dir(landing_dir) / ".spill"
    try:
        root.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix=_SPILL_PREFIX, dir=root))
    except OSError:  # a landing folder this process may only read
        root = Path(tempfile.gettempdir())
        folder = Path(tempfile.mkdtemp(prefix=_SPILL_PREFIX, dir=root))
    # locked before it has the name another process looks for: never seen free while in use
    held = (folder / ".holding").open("w")
    try:
        fcntl.flock(held, fcntl.LOCK_EX)
        (folder / ".holding").rename(folder / _HELD)
        for left in root.glob(f"{_SPILL_PREFIX}*"):
            if left != folder:
                _remove_if_abandoned(left)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        held.close()


def _remove_if_abandoned(folder: Path) -> None:
    try:
        held = (folder / _HELD).open("r")
    except OSError:  # being made right now, or already removed
        return
    with held:
        try:
            fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # in use
            return
        shutil.rmtree(folder, ignore_errors=True)


# A rejects file's rows: one per line without a send key of a deleted cut run file (unreadable:
# no column could be read, the line cut short; else a whole JSON line without a send key, which
# a lines file holds as well unless a compaction older than that took the file).
REJECT_COLUMNS = {"source_file": "VARCHAR", "unreadable": "BOOLEAN", "compacted_at": "TIMESTAMP"}


def ensure_folder(landing_dir: Path) -> Path:
    """The compacted folder, with empty generation-0 lines and rejects files: dbt's globs of
    them are readable before the first compaction."""
    folder = compacted_dir(landing_dir)
    folder.mkdir(parents=True, exist_ok=True)
    empty = {
        "lines": {**COLUMNS, "line_at": "TIMESTAMP", "source_file": "VARCHAR"},
        "rejects": REJECT_COLUMNS,
    }
    for kind, columns in empty.items():
        path = folder / compacted_name(kind, 0)
        if path.exists():
            continue
        typed = ", ".join(f"null::{type_} as {name}" for name, type_ in columns.items())
        con = duckdb.connect()
        try:
            landing.write_parquet(con, f"select {typed} limit 0", path)
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
    newer_table: str | None = None  # the lines the keys file does not cover, materialized
    sends_files: dict[Path, Path] = field(default_factory=dict)  # lines file -> its sends file
    keys_columns: frozenset[str] = frozenset(KEY_COLUMNS)  # the keys file's columns

    def newer_lines(self) -> str | None:
        """The lines the keys file does not cover (columns, line_at, source_file), or None."""
        if self.newer_table is not None:
            return f"select * from {self.newer_table}"
        return lines_sql(self, newer_only=True)


SOURCE_FILES = "source_files"  # a lines file's metadata: the run files it took (JSON list)


def layout_taken(con: duckdb.DuckDBPyConnection, lines_files: list[Path]) -> set[str]:
    """The run files these lines files took, from each file's footer (no scan of its rows)."""
    if not lines_files:
        return set()
    rows = con.execute(
        f"""
        select decode(value) from parquet_kv_metadata({paths_sql(lines_files)})
        where decode(key) = {lit(SOURCE_FILES)}
        """
    ).fetchall()
    return {name for (names,) in rows for name in json.loads(names)}


def layout(con: duckdb.DuckDBPyConnection, landing_dir: Path) -> Layout:
    keys = generations(landing_dir, "keys")
    lines = generations(landing_dir, "lines")
    sends = generations(landing_dir, "sends")
    keys_gen = max(keys, default=0)
    taken = layout_taken(con, list(lines.values()))
    folder = run_files_dir(landing_dir)
    run_files = sorted(
        p
        for p in folder.glob("*.jsonl")
        if p.name not in taken and p.name != landing.PLACEHOLDER and p.stat().st_size > 0
    )
    keys_file = keys.get(keys_gen)
    keys_columns = frozenset(KEY_COLUMNS)
    if keys_file is not None:  # its footer only
        names = con.execute(f"select name from parquet_schema({lit(str(keys_file))})").fetchall()
        keys_columns = frozenset(name for (name,) in names)
    return Layout(
        keys_file=keys_file,
        keys_columns=keys_columns,
        keys_gen=keys_gen,
        lines_files=[lines[g] for g in sorted(lines)],
        newer_lines_files=[lines[g] for g in sorted(lines) if g > keys_gen],
        run_files=run_files,
        taken_run_files=taken,
        sends_files={lines[g]: sends[g] for g in lines if g in sends},
    )


def with_newer_materialized(con: duckdb.DuckDBPyConnection, view: Layout) -> Layout:
    """`view`, its newer lines read once into a temp table (for several queries on `con`)."""
    newer = view.newer_lines()
    if newer is None:
        return view
    con.execute(f"create or replace temp table newer_lines as {newer}")
    return replace(view, newer_table="newer_lines")


def run_lines_sql(files: list[Path]) -> str:
    """The run files' lines, typed as the lines files hold them. A file whose last line is cut
    short (its writer killed mid-write, or still writing it) is read without that line: a line
    is appended whole before its batch is fsynced, and the batch's requests go out only after
    that, so a cut line's request never left (a cut outcome line leaves its attempt unknown,
    which the next run settles). As the landing sources do (macros/landing_lines.sql), such a
    file is read with ignore_errors, which gives the cut line as a row of nulls; the others
    without it, which reads them faster."""
    cut = cut_files(files)
    whole = [f for f in files if f not in cut]
    parts = [_lines_sql(whole)] if whole else []
    if cut:
        parts.append(_lines_sql(cut, cut_short=True))
    return f"""
        select * exclude (filename),
            try_cast(recorded_at as timestamp) as line_at,
            parse_filename(filename) as source_file
        from ({_union(parts)})
    """


def cut_files(files: list[Path]) -> list[Path]:
    """Those of `files` that end in a line cut short (or that a writer still holds): read with
    ignore_errors, less the lines that come out as nulls (run_lines_sql). A file that ends whole
    is read strictly, and none of its lines is left out."""
    return [f for f in files if not _ends_with_a_whole_line(f)]


# A line that could not be read (cut short): none of the columns every ledger line has
# (macros/landing_lines.sql, ledger_line_keys) came out. A whole line without a send key is
# kept in the lines file, as from a file read strictly (dbt lists it as a reject from there).
UNREADABLE_SQL = " and ".join(
    f"{c} is null" for c in ("send_key", "run_id", "status", "recorded_at")
)


def left_out_lines_sql(cut: list[Path]) -> str:
    """The lines without a send key of these cut files (cut_files), as REJECT_COLUMNS less
    compacted_at, one row per line: those cut short, which run_lines_sql leaves out, and whole
    ones, which a lines file holds too unless an older compaction took the file (dbt lists
    each once)."""
    return f"""
        select filename as source_file, ({UNREADABLE_SQL}) as unreadable
        from ({_lines_sql(cut, cut_short=True, left_out=True)})
    """


def recorded_rejects(con: duckdb.DuckDBPyConnection, landing_dir: Path) -> set[str]:
    """The names of the run files whose left-out lines a rejects file holds."""
    files = sorted(compacted_dir(landing_dir).glob("rejects-*.parquet"))
    if not files:  # a home from before rejects files (no placeholder yet)
        return set()
    rows = con.execute(
        f"select distinct source_file from read_parquet({paths_sql(files)})"
    ).fetchall()
    return {Path(name).name for (name,) in rows}


def _lines_sql(files: list[Path], cut_short: bool = False, left_out: bool = False) -> str:
    columns = ", ".join(f"'{name}': '{kind}'" for name, kind in COLUMNS.items())
    tolerant = ", ignore_errors=true" if cut_short else ""
    # a cut line reads as a row of nulls
    where = ""
    if cut_short:
        where = "where send_key is null" if left_out else f"where not ({UNREADABLE_SQL})"
    return f"""
        select filename, * exclude (filename)
        from read_json({paths_sql(files)}, format='newline_delimited', filename=true,
                       columns={{{columns}}}{tolerant})
        {where}
    """


def _ends_with_a_whole_line(path: Path) -> bool:
    """The file ends with a newline, and no writer holds it (one may be midway through a line
    by the time it is read)."""
    with path.open("rb") as fh:
        if fh.seek(0, os.SEEK_END) == 0:
            return True
        fh.seek(-1, os.SEEK_END)
        return fh.read(1) == b"\n" and landing.closed(path)


def _union(parts: list[str]) -> str:
    return " union all by name ".join(f"({p})" for p in parts)


def lines_sql(view: Layout, newer_only: bool = False) -> str | None:
    """Every line (or only those the keys file does not cover): columns, line_at, source_file."""
    files = view.newer_lines_files if newer_only else view.lines_files
    parts = [f"select * from read_parquet({paths_sql(files)})"] if files else []
    if view.run_files:
        parts.append(run_lines_sql(view.run_files))
    return _union(parts) if parts else None


# What a sends counts: sent, or given up on as outcome_unknown (it may have gone out).
SENT_SQL = "status = 'sent' or (status = 'failed' and reason = 'outcome_unknown')"
# Enough to say whether a key is decided and how often it was attempted.
STATUS_COLUMNS = ("send_key", "last_status", "last_at", "last_rank", "attempts", "refusals")
# A key's seen_at from its rows' times: unknown (null) as soon as one of them is, so that nothing
# bounds a key with a line that might be later than those known.
SEEN_AT_SQL = "case when count(*) = count({0}) then max({0}) end"
_MESSAGE = ("channel", "recipient", "subject", "body")


def line_as_key_sql(lines: str, columns: Sequence[str]) -> str:
    """Each line as a key row (of `columns`): a key's rows folded by `fold_sql` give its state."""
    attempt = "case when status = 'attempted' then {} end"
    expressions = {
        "send_key": "send_key",
        "journey": "journey",
        "step": "step",
        "person_id": "person_id",
        "entry_id": "entry_id",
        "last_status": "status",
        "last_at": "line_at",
        "last_rank": RANK_SQL,
        "attempts": "(status = 'attempted')::bigint",
        "last_reason": "reason",
        "last_detail": "reason_detail",
        "refusals": f"({REFUSED_SQL})::bigint",
        "first_attempted_at": attempt.format("line_at"),
        "last_attempted_at": attempt.format("line_at"),
        "seen_at": "line_at",
        **{c: attempt.format(c) for c in _MESSAGE},
    }
    # (a line without a key is a reject, no key's: a null among keys would make every
    # `send_key not in (...)` over them null)
    return (
        f"select {', '.join(f'{expressions[c]} as {c}' for c in columns)} from ({lines}) "
        "where send_key is not null"
    )


def fold_sql(rows: str, columns: Sequence[str] = tuple(KEY_COLUMNS)) -> str:
    """Key rows (lines as key rows, keys-file rows) folded into one row per key. The message
    columns are kept only while the key is unsettled: nothing else needs them."""
    # A final line (rank 2: sent, failed, skipped) stays final: an open line stamped later (a
    # clock set back, another machine's) does not reopen the key. Ties on all of that (a fixed
    # clock) go by the status's name, then reason and detail: every reader picks the same line.
    ties = "".join(f", '{c}': {c}" for c in ("last_reason", "last_detail") if c in columns)
    last = f"{{'final': last_rank = 2, 't': last_at, 'rank': last_rank, 's': last_status{ties}}}"
    aggregates = {
        "journey": "any_value(journey)",
        "step": "any_value(step)",
        "person_id": "any_value(person_id)",
        "entry_id": "any_value(entry_id)",
        "last_status": f"arg_max(last_status, {last})",
        "last_at": f"max({last}).t",
        "last_rank": f"max({last}).rank",
        "attempts": "sum(attempts)::bigint",
        "refusals": "sum(refusals)::bigint",
        "last_reason": f"arg_max_null(last_reason, {last})",
        "last_detail": f"arg_max_null(last_detail, {last})",
        "first_attempted_at": "min(first_attempted_at)",
        "last_attempted_at": "max(last_attempted_at)",
        "seen_at": SEEN_AT_SQL.format("seen_at"),
        **{c: f"arg_max_null({c}, last_attempted_at)" for c in _MESSAGE},
    }
    folded = ", ".join(f"{aggregates[c]} as {c}" for c in columns if c != "send_key")
    open_ = ", ".join(lit(s) for s in OPEN)
    kept = [
        f"case when last_status in ({open_}) then {c} end as {c}" if c in _MESSAGE else c
        for c in columns
    ]
    return f"""
        select {", ".join(kept)}
        from (select send_key, {folded} from ({rows}) group by send_key)
    """


def stored_sql(view: Layout, columns: Sequence[str] = tuple(KEY_COLUMNS)) -> str | None:
    """The keys file's rows, or None before the first compaction."""
    if view.keys_file is None:
        return None
    # A keys file written before a column was added reads it as none (refusals: 0).
    chosen = [
        c
        if c in view.keys_columns
        else f"cast({0 if KEY_COLUMNS[c] == 'BIGINT' else 'null'} as {KEY_COLUMNS[c]}) as {c}"
        for c in columns
    ]
    # (a keys file from before keyless lines were left out of the keys may hold a null key)
    return (
        f"select {', '.join(chosen)} from read_parquet({lit(str(view.keys_file))}) "
        "where send_key is not null"
    )


def keys_sql(
    view: Layout,
    where: str = "true",
    wanted: Sequence[str] | None = None,
    columns: Sequence[str] = tuple(KEY_COLUMNS),
) -> str:
    """One row per key (`columns` of KEY_COLUMNS) that `where` holds for.

    Without `wanted`, every key: those the lines since the keys file do not touch come from it as
    they are, and only those they touch are folded. With `wanted` (queries over the keys file,
    each giving the rows of a small set of keys, such as those due now), only those keys and the
    keys the newer lines touch are read from it and folded with the newer lines: the work grows
    with the keys a run acts on and the lines since the last compaction, not with history.
    (The keys file is Parquet: a filter on one column costs a scan of that column, and every
    other column is read only for the rows that pass; keep `columns` to what is needed.)
    """
    newer = view.newer_lines()
    stored = stored_sql(view, columns)
    if stored is None and newer is None:
        casts = ", ".join(f"null::{KEY_COLUMNS[c]} as {c}" for c in columns)
        return f"select {casts} where false"
    fresh = line_as_key_sql(newer, columns) if newer else None
    touched = f"select send_key from ({fresh})"  # (never null: line_as_key_sql)
    if wanted is not None:
        parts = [*wanted]
        if stored is not None and fresh is not None:
            parts.append(f"select * from ({stored}) where send_key in ({touched})")
        rows = " union ".join(f"({q})" for q in parts) if parts else None
        if fresh is not None:
            rows = f"({rows}) union all by name ({fresh})" if rows else fresh
        if rows is None:
            return keys_sql(view, "false", None, columns)
        return f"select * from ({fold_sql(rows, columns)}) where {where}"
    if fresh is None:
        return f"select * from ({stored}) where {where}"
    if stored is None:
        return f"select * from ({fold_sql(fresh, columns)}) where {where}"
    refolded = fold_sql(
        f"select * from ({stored}) where send_key in ({touched}) union all by name {fresh}",
        columns,
    )
    return f"""
        select * from ({stored}) where ({where}) and send_key not in ({touched})
        union all by name
        select * from ({refolded}) where {where}
    """


def all_lines_sql(view: Layout) -> str | None:
    """Every line: lines files, and the newer lines as `view` has them (materialized, maybe)."""
    covered, rest = _covered_and_rest(view)
    parts = [f"select * from read_parquet({paths_sql(covered)})"] if covered else []
    parts += [rest] if rest else []
    return _union(parts) if parts else None


def _covered_and_rest(view: Layout) -> tuple[list[Path], str | None]:
    """The lines files read as they are, and the rest of the lines (SQL) as `view` has them."""
    if view.newer_table is None:
        return view.lines_files, (run_lines_sql(view.run_files) if view.run_files else None)
    covered = [p for p in view.lines_files if p not in view.newer_lines_files]
    return covered, f"select * from {view.newer_table}"


# A sends file's rows: a lines file's sends, what the cap counts.
SENDS_FILE_SQL = "select person_id, journey, line_at from ({lines}) where " + SENT_SQL


def sends_sql(
    view: Layout,
    since: str | None = None,
    people: str | None = None,
    uncounted_journeys: Collection[str] = (),
    until: str | None = None,
    latest: int | None = None,
) -> str | None:
    """person_id, sent_time of every send (from `since`, of `people`: SQL expressions), but for
    the sends of `uncounted_journeys`; with `latest`, only each person's latest that many up to
    `until`, and every one after it. Read from the sends files where written (the narrow copy,
    sorted by person), else from the lines."""
    covered, rest = _covered_and_rest(view)
    digested = [view.sends_files[p] for p in covered if p in view.sends_files]
    plain = [p for p in covered if p not in view.sends_files]
    # one scan a file: a scan of several estimates its rows from the first file (the empty
    # generation 0), and the join with `people` then hashes the sends, not the people
    parts = [f"select * from read_parquet({lit(str(p))})" for p in digested]
    if plain:
        parts.append(SENDS_FILE_SQL.format(lines=f"select * from read_parquet({paths_sql(plain)})"))
    if rest:
        parts.append(SENDS_FILE_SQL.format(lines=rest))
    if not parts:
        return None
    conditions = ["true"]
    if since is not None:
        conditions.append(f"line_at >= {since}")
    if people is not None:
        conditions.append(f"person_id in ({people})")
    if uncounted_journeys:
        conditions.append(
            f"journey not in ({', '.join(lit(j) for j in sorted(uncounted_journeys))})"
        )
    # Lines stamped after `until` (another run's, sending while this one reads) are all kept:
    # the cap counts them once the clock passes them. Of the others, each person's latest.
    after = f"line_at > {until}" if until is not None else "false"
    latest_only = (
        f"qualify {after} or row_number() over "
        f"(partition by person_id, {after} order by line_at desc) <= {latest}"
        if latest is not None
        else ""
    )
    return f"""
        select person_id, line_at as sent_time from ({_union(parts)})
        where {" and ".join(conditions)}
        {latest_only}
    """


def newest_line_sql(view: Layout) -> str:
    """When the newest line was written (null for an empty ledger)."""
    newer = view.newer_lines()
    parts = [f"select max(line_at) as newest from ({newer})"] if newer else []
    if view.keys_file is not None:
        parts.append(f"select max(last_at) as newest from read_parquet({lit(str(view.keys_file))})")
    return f"select max(newest) from ({_union(parts)})" if parts else "select null::timestamp"
