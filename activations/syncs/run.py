"""One run of a sync: read the model, diff it against what the destination acknowledged, stop
if it would remove too much, send the changes in full batches, land every row's outcome."""

from __future__ import annotations

import fcntl
import json
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from sqlglot import exp

from activations.arrow_warehouse import ArrowWarehouse, DuckDBWarehouse, read_table, relation
from activations.syncs import results
from activations.syncs.braze import BrazeDestination, RowResult
from activations.syncs.declaration import Sync
from activations.syncs.diff import Diff, compute_diff

CHUNK = 10_000  # rows sent between two landed files: a crash loses at most this much progress


class MassRemovalError(RuntimeError):
    """The run would remove more of the destination's rows than the sync allows."""


@dataclass(frozen=True)
class SyncSummary:
    sync: str
    run_id: str
    added: int
    changed: int
    removed: int
    unchanged: int
    rejected: int  # refused by the destination this run (kept, tried again next run)
    gave_up: int  # refused for the last allowed time this run
    held: int  # given up on in an earlier run, unchanged since: not sent
    failed: int  # no usable answer after retries: sent again next run
    duplicates: int  # keys the model holds more than once: not sent
    null_keys: int
    rows_sent: int
    requests: int
    diff_seconds: float
    sync_seconds: float

    def as_metadata(self) -> dict[str, Any]:
        return asdict(self)


def _read_model(source: ArrowWarehouse, sync: Sync) -> pa.Table:
    columns = list(dict.fromkeys([sync.key, *sync.columns]))
    query = exp.select(*(exp.column(c, quoted=True) for c in columns)).from_(relation(sync.model))
    return read_table(source, query)


def _lock(landing_dir: Path, sync: str) -> Any:
    """Held for a run: a second run of the same sync waits, then diffs against what this one
    landed, so no row is sent twice by overlapping runs."""
    locks = landing_dir / "syncs" / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    handle = (locks / f"{sync}.lock").open("ab")
    fcntl.flock(handle, fcntl.LOCK_EX)
    return handle


def run_sync(
    sync: Sync,
    source: ArrowWarehouse | Path,
    landing_dir: Path,
    destination: BrazeDestination,
    confirm_removals: bool = False,
    run_id: str | None = None,
) -> SyncSummary:
    """`confirm_removals`: go on even when more than `sync.max_removal_share` of the rows the
    destination holds would be removed (an upstream model that came back empty would do that)."""
    run_id = run_id or uuid.uuid4().hex[:12]
    warehouse = DuckDBWarehouse(source) if isinstance(source, Path) else source
    with _lock(landing_dir, sync.name), duckdb.connect() as con:
        started = time.monotonic()
        diff = compute_diff(con, sync, _read_model(warehouse, sync), landing_dir)
        diff_seconds = time.monotonic() - started
        removed = diff.count("removed")
        if removed and not confirm_removals and removed > sync.max_removal_share * diff.live:
            raise MassRemovalError(
                f"sync {sync.name!r} would remove {removed} of the {diff.live} rows "
                f"{sync.destination} holds ({removed / diff.live:.0%}), more than its "
                f"max_removal_share of {sync.max_removal_share:.0%}. Check {sync.model!r} "
                "(did it come back empty?); if the removals are meant, run again with "
                "--confirm-removals"
            )
        requests_before = destination.requests
        sent_started = time.monotonic()
        counts = _send(con, sync, diff, destination, landing_dir, run_id)
        sync_seconds = time.monotonic() - sent_started
    return SyncSummary(
        sync=sync.name,
        run_id=run_id,
        added=diff.count("added"),
        changed=diff.count("changed"),
        removed=removed,
        unchanged=diff.unchanged,
        rejected=counts["rejected"],
        gave_up=counts["gave_up"],
        held=diff.held,
        failed=counts["failed"],
        duplicates=diff.duplicates.num_rows,
        null_keys=diff.null_keys,
        rows_sent=counts["sent"],
        requests=destination.requests - requests_before,
        diff_seconds=round(diff_seconds, 3),
        sync_seconds=round(sync_seconds, 3),
    )


def _removal_op(sync: Sync) -> str:
    if sync.is_audience:
        return "membership_off"
    return sync.on_remove if sync.on_remove != "keep" else "keep"


def _send(
    con: duckdb.DuckDBPyConnection,
    sync: Sync,
    diff: Diff,
    destination: BrazeDestination,
    landing_dir: Path,
    run_id: str,
) -> dict[str, int]:
    counts = {"sent": 0, "rejected": 0, "gave_up": 0, "failed": 0}
    rows = diff.changes.to_pylist()
    nulled = dict.fromkeys((attr for attr, _ in sync.attributes), None)
    for start in range(0, len(rows), CHUNK):
        chunk = rows[start : start + CHUNK]
        upserts: list[tuple[dict[str, Any], dict[str, Any]]] = []  # (row, object sent)
        deletes: list[dict[str, Any]] = []
        kept: list[dict[str, Any]] = []
        for row in chunk:
            if row["change"] != "removed":
                row["op"] = "upsert"
                upserts.append((row, {"external_id": row["key"], **json.loads(row["payload"])}))
                continue
            row["op"] = _removal_op(sync)
            if row["op"] == "delete":
                deletes.append(row)
            elif row["op"] == "keep":
                kept.append(row)
            elif row["op"] == "membership_off":
                assert sync.membership_attribute is not None
                upserts.append((row, {"external_id": row["key"], sync.membership_attribute: False}))
            else:
                upserts.append((row, {"external_id": row["key"], **nulled}))
        answered: list[tuple[dict[str, Any], RowResult, str | None]] = []
        outcomes = destination.track_attributes([sent for _, sent in upserts])
        for (row, sent), result in zip(upserts, outcomes, strict=True):
            answered.append((row, result, json.dumps(sent, separators=(",", ":"))))
        for row, result in zip(
            deletes, destination.delete_users([r["key"] for r in deletes]), strict=True
        ):
            answered.append((row, result, None))
        answered += [
            (row, RowResult("synced", "removed from the model; kept there"), None) for row in kept
        ]
        counts["sent"] += len(upserts) + len(deletes)
        landed = []
        now = datetime.now(UTC).replace(tzinfo=None)
        for row, result, payload in answered:
            outcome = result.outcome
            if outcome == "rejected" and row["attempt"] >= sync.max_attempts:
                outcome = "gave_up"
            if outcome in counts:
                counts[outcome] += 1
            landed.append(
                {
                    "sync": sync.name,
                    "destination": sync.destination,
                    "key": row["key"],
                    "change": row["change"],
                    "op": row["op"],
                    "row_hash": row["row_hash"],
                    "payload": payload,
                    "outcome": outcome,
                    "reason": result.reason,
                    "attempt": row["attempt"],
                    "run_id": run_id,
                    "recorded_at": now,
                }
            )
        _land(con, landed, landing_dir, run_id)
    if diff.duplicates.num_rows:
        now = datetime.now(UTC).replace(tzinfo=None)
        _land(
            con,
            [
                {
                    "sync": sync.name, "destination": sync.destination, "key": d["key"],
                    "change": None, "op": None, "row_hash": None, "payload": None,
                    "outcome": "rejected", "attempt": None, "run_id": run_id, "recorded_at": now,
                    "reason": f"the key appears {d['rows']} times in {sync.model}: not sent",
                }
                for d in diff.duplicates.to_pylist()
            ],
            landing_dir,
            run_id,
        )  # fmt: skip
        counts["rejected"] += diff.duplicates.num_rows
    return counts


_SCHEMA = pa.schema(
    [
        (
            name,
            pa.timestamp("us")
            if kind == "TIMESTAMP"
            else pa.int32()
            if kind == "INTEGER"
            else pa.string(),
        )
        for name, kind in results.COLUMNS.items()
    ]
)


def _land(
    con: duckdb.DuckDBPyConnection, rows: list[dict[str, Any]], landing_dir: Path, run_id: str
) -> None:
    if not rows:
        return
    con.register("landed_rows", pa.Table.from_pylist(rows, schema=_SCHEMA))
    try:
        results.append(con, "landed_rows", landing_dir, run_id)
    finally:
        con.unregister("landed_rows")
