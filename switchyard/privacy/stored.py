"""Forgetting in the warehouse: every stored table's rows that name the person are deleted, found
by the columns that name people (person ids, user ids, emails, phones, device ids, push tokens,
identifier keys and values, node ids, send keys, recipients). Going by column names, not by a
list of models, keeps a model added later covered. Views read the landing files, which the
landing pass has already rewritten.

DuckDB keeps deleted rows' bytes in freed blocks, so the file is then copied into a fresh one
(`COPY FROM DATABASE`) that replaces it: no byte of the person stays in the warehouse file. The
published copy is made again from it. This needs the warehouse to itself: run it when no
Dagster run or dbt command holds the file.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import duckdb
from sqlglot import exp

from switchyard import landing

# column -> which of the person's values it holds (`lower`: compared lower-cased and trimmed)
COLUMNS: dict[str, str] = {
    "person_id": "person_ids", "current_person_id": "person_ids",
    "previous_person_id": "person_ids", "alias_person_id": "person_ids",
    "user_id": "user_ids", "userid": "user_ids", "sync_key": "sync_keys",
    "anonymous_id": "anonymous_ids", "anonymousid": "anonymous_ids",
    "previous_id": "anonymous_ids", "previousid": "anonymous_ids", "device_id": "anonymous_ids",
    "email": "emails", "trait_email": "emails", "identifier_email": "emails",
    "raw_email": "spellings",
    "phone": "phones", "trait_phone": "phones", "phone_e164": "phones",
    "raw_phone": "spellings", "occurrence_id": "occurrence_ids",
    "push_token": "tokens",
    "identifier_key": "keys", "anchor_key": "keys", "identifier_value": "values",
    "node_id": "node_ids", "src_id": "node_ids", "dst_id": "node_ids",
    "send_key": "send_keys",
    "recipient": "addresses", "address": "addresses",
}  # fmt: skip
LOWERED = {"emails", "addresses", "spellings"}


@dataclass(frozen=True)
class Purged:
    tables: dict[str, int]  # table -> rows deleted
    bytes_before: int
    bytes_after: int


USER_COLUMNS = ("user_id", "userid")
# In another person's row (another user id), her email or phone is blanked, the row kept: an
# order placed with her address. Columns that hold it inside a document are blanked whole.
REDACTED = ("email", "trait_email", "phone", "trait_phone", "traits", "context")


def purge(warehouse: Path, values: dict[str, set[str]], rewrite: bool = False) -> Purged:
    """Delete the person's rows from every table of `warehouse`, then rewrite the file (if a
    row went, or `rewrite`). A row that names another user id is kept, whatever device or
    address it shares with them."""
    before = warehouse.stat().st_size
    deleted: dict[str, int] = {}
    try:
        con = duckdb.connect(str(warehouse))
    except duckdb.IOException as exc:
        raise RuntimeError(
            f"the warehouse {warehouse} is in use ({exc}): forget needs it to itself; run it "
            "between Dagster runs (stop the schedules or wait for the run), then again"
        ) from exc
    try:
        node_ids = _node_ids(con, values.get("person_ids", set()))
        wanted = {**values, "node_ids": node_ids}
        con.execute("begin")  # all of it or none: a forget stopped here is simply run again
        for schema, table, columns in _tables(con):
            found = [_condition(c, wanted) for c in columns if c.lower() in COLUMNS]
            conditions = [c for c in found if c]
            if not conditions:
                continue
            where = f"({' or '.join(conditions)})"
            for column in (c for c in columns if c.lower() in USER_COLUMNS):
                quoted = exp.to_identifier(column).sql("duckdb")
                users = _array(wanted.get("user_ids", set()))
                where += f" and ({quoted} is null or list_contains({users}, {quoted}))"
            name = ".".join(exp.to_identifier(n).sql("duckdb") for n in (schema, table))
            (count,) = con.execute(f"select count(*) from {name} where {where}").fetchone() or (0,)
            if count:
                con.execute(f"delete from {name} where {where}")
                deleted[f"{schema}.{table}"] = int(count)
            blanked = _blank_in_others_rows(con, name, columns, wanted)
            if blanked:
                deleted[f"{schema}.{table} (blanked)"] = blanked
        con.execute("commit")
        con.execute("checkpoint")
        if deleted or rewrite:
            rewrite_file(con, warehouse)  # while this connection keeps every writer out
    finally:
        con.close()
    return Purged(deleted, before, warehouse.stat().st_size)


def _blank_in_others_rows(
    con: duckdb.DuckDBPyConnection, name: str, columns: list[str], wanted: dict[str, set[str]]
) -> int:
    """Her emails and phones blanked where another user's row holds them; rows so changed."""
    texts = {v.strip().lower() for v in wanted.get("redact", set()) if v.strip()}
    user_columns = [c for c in columns if c.lower() in USER_COLUMNS]
    targets = [c for c in columns if c.lower() in REDACTED]
    if not texts or not user_columns or not targets:
        return 0
    user = exp.to_identifier(user_columns[0]).sql("duckdb")
    needles = _array(texts)
    holds = " or ".join(
        f"len(list_filter({needles}, lambda x: contains(lower(cast("
        f"{exp.to_identifier(c).sql('duckdb')} as varchar)), x))) > 0"
        for c in targets
    )
    users = _array(wanted.get("user_ids", set()))
    where = f"{user} is not null and not list_contains({users}, {user}) and ({holds})"
    (count,) = con.execute(f"select count(*) from {name} where {where}").fetchone() or (0,)
    if count:
        blank = ", ".join(f"{exp.to_identifier(c).sql('duckdb')} = null" for c in targets)
        con.execute(f"update {name} set {blank} where {where}")
    return int(count)


def _tables(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str, list[str]]]:
    rows = con.execute(
        """
        select c.table_schema, c.table_name, list(c.column_name order by c.ordinal_position)
        from information_schema.columns as c
        join information_schema.tables as t using (table_catalog, table_schema, table_name)
        where t.table_type = 'BASE TABLE' and t.table_catalog = current_database()
        group by all order by all
        """
    ).fetchall()
    return [(s, t, list(cs)) for s, t, cs in rows]


def _node_ids(con: duckdb.DuckDBPyConnection, person_ids: set[str]) -> set[str]:
    if not person_ids:
        return set()
    try:
        rows = con.execute(
            f"select distinct cast(node_id as varchar) from dim_identities "
            f"where list_contains({_array(person_ids)}, person_id)"
        ).fetchall()
    except duckdb.CatalogException:
        return set()
    return {r[0] for r in rows}


def _condition(column: str, values: dict[str, set[str]]) -> str | None:
    kind = COLUMNS[column.lower()]
    wanted = values.get(kind, set())
    if not wanted:
        return None
    quoted = exp.to_identifier(column).sql("duckdb")
    if kind in LOWERED:
        lowered = {v.strip().lower() for v in wanted}
        return f"list_contains({_array(lowered)}, lower(trim(cast({quoted} as varchar))))"
    return f"list_contains({_array(wanted)}, cast({quoted} as varchar))"


def _array(values: set[str]) -> str:
    return exp.Array(expressions=[exp.Literal.string(v) for v in sorted(values)]).sql("duckdb")


def rewrite_file(con: duckdb.DuckDBPyConnection, warehouse: Path) -> None:
    """The database copied into a fresh file that replaces it (freed blocks are not copied),
    through `con`, which holds the file: no writer gets in between the copy and the rename."""
    fresh = warehouse.with_name(f".{warehouse.stem}-forget-{uuid.uuid4().hex[:8]}.duckdb")
    (current,) = con.execute("select current_database()").fetchone() or ("",)
    try:
        con.execute(f"attach {exp.Literal.string(str(fresh)).sql('duckdb')} as forget_copy")
        con.execute(f"copy from database {exp.to_identifier(current).sql('duckdb')} to forget_copy")
        con.execute("detach forget_copy")
        with fresh.open("rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(fresh, warehouse)
        landing.fsync_dir(warehouse.parent)
    finally:
        fresh.unlink(missing_ok=True)
        Path(f"{fresh}.wal").unlink(missing_ok=True)
