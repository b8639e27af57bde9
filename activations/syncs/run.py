"""One run of a sync: read the model, diff it against what the destination acknowledged, stop
if it would remove too much, send the changes in full batches, land every row's outcome."""

from __future__ import annotations

import fcntl
import json
import time
import uuid
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from sqlglot import exp

from activations.arrow_warehouse import ArrowWarehouse, DuckDBWarehouse, read_table, relation
from activations.syncs import results
from activations.syncs.declaration import Sync
from activations.syncs.destination import (
    Change,
    Destination,
    DestinationAuthError,
    Op,
    RowResult,
)
from activations.syncs.diff import Diff, compute_diff
from switchyard.privacy.tombstones import Forgotten

# rows sent between two landed files (rounded up to whole requests): a crash loses at most this
# much progress
CHUNK = 10_000


LOCK_WAIT_SECONDS = 600.0


class MassRemovalError(RuntimeError):
    """The run would remove more of the destination's rows than the sync allows."""


class SyncLockedError(RuntimeError):
    """Another run of the same sync held its lock for longer than a run waits."""


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
    # events a platform that does not de-duplicate them may or may not have recorded (a lost
    # answer): not sent again, so never recorded twice
    unknown: int
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


def _lock(landing_dir: Path, sync: str, wait_seconds: float = LOCK_WAIT_SECONDS) -> Any:
    """Held for a run: a second run of the same sync waits, then diffs against what this one
    landed, so no row is sent twice by overlapping runs."""
    locks = landing_dir / "syncs" / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    path = locks / f"{sync}.lock"
    handle = path.open("ab")
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return handle
        except BlockingIOError:
            if time.monotonic() >= deadline:
                handle.close()
                raise SyncLockedError(
                    f"another run of sync {sync!r} has held {path} for {wait_seconds:.0f} s: "
                    "let it finish (or stop it) and run again; the lock goes with its process"
                ) from None
            time.sleep(0.2)


def run_sync(
    sync: Sync,
    source: ArrowWarehouse | Path,
    landing_dir: Path,
    destination: Destination,
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
        diff = _without_forgotten(diff, Forgotten(landing_dir))
        diff_seconds = time.monotonic() - started
        removed = diff.count("removed")
        # a removal the sync keeps at the destination removes nothing there
        removing = 0 if sync.on_remove == "keep" else removed
        if removing and not confirm_removals and removing > sync.max_removal_share * diff.live:
            raise MassRemovalError(
                f"sync {sync.name!r} would remove {removing} of the {diff.live} rows "
                f"{sync.destination} holds ({removing / diff.live:.0%}), more than its "
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
        unknown=counts["unknown"],
        duplicates=diff.duplicates.num_rows,
        null_keys=diff.null_keys,
        rows_sent=counts["sent"],
        requests=destination.requests - requests_before,
        diff_seconds=round(diff_seconds, 3),
        sync_seconds=round(sync_seconds, 3),
    )


def _change(sync: Sync, row: dict[str, Any]) -> Change | None:
    """What a diffed row asks of the destination; None: nothing (a removal the sync keeps)."""
    key, membership = row["key"], sync.membership
    if sync.event is not None:
        payload = json.loads(row["payload"])
        bought = sync.event.purchase
        return Change(
            "purchase" if bought else "event",
            row["user_key"],
            payload["properties"] if bought else payload,
            event_name=row["event_name"],
            event_time=row["event_time"],
            event_id=key,
            purchase=payload["purchase"] if bought else {},
        )
    joins: Op = "subscribe" if sync.subscription_group else "join"
    leaves: Op = "unsubscribe" if sync.subscription_group else "leave"
    if row["change"] != "removed":
        if membership is not None:
            return Change(joins, key, membership=membership)
        return Change("upsert", key, json.loads(row["payload"]))
    if sync.on_remove == "keep":
        return None
    if membership is not None:
        return Change(leaves, key, membership=membership)
    if sync.on_remove == "unset":
        return Change("unset", key, dict.fromkeys(attr for attr, _ in sync.attributes))
    if sync.on_remove == "delete":
        return Change("delete", key)
    return None


def _sent_payload(change: Change) -> str | None:
    if change.op == "delete":
        return None
    if change.op in ("join", "leave", "subscribe", "unsubscribe"):
        return json.dumps({change.membership: change.op in ("join", "subscribe")})
    if change.op in ("event", "purchase"):
        event = {"name": change.event_name, "time": change.event_time, "user": change.key}
        bought = {"purchase": change.purchase} if change.op == "purchase" else {}
        sent = {**event, **bought, "properties": change.attributes}
        return json.dumps(sent, separators=(",", ":"), default=str)
    return json.dumps(change.attributes, separators=(",", ":"))


def _send(
    con: duckdb.DuckDBPyConnection,
    sync: Sync,
    diff: Diff,
    destination: Destination,
    landing_dir: Path,
    run_id: str,
) -> dict[str, int]:
    counts = {"sent": 0, "rejected": 0, "gave_up": 0, "failed": 0, "unknown": 0}
    rows = diff.changes.to_pylist()
    kept = RowResult("synced", "removed from the model; kept at the destination (on_remove: keep)")
    size = -(-CHUNK // destination.batch_rows) * destination.batch_rows
    for start in range(0, len(rows), size):
        chunk = rows[start : start + size]
        changes = [_change(sync, row) for row in chunk]
        to_send = [c for c in changes if c is not None]
        if not destination.dedupes_events:
            once = [
                _landed_row(sync, row, change, RowResult("attempted"), run_id)
                for row, change in zip(chunk, changes, strict=True)
                if change is not None and change.op in ("event", "purchase")
            ]
            _land(con, once, landing_dir, run_id)
        try:
            answers = iter(destination.send(to_send))
        except DestinationAuthError as refused:
            # refused credentials: nothing was taken, so the attempted events are not unknown
            failed = RowResult("failed", f"credentials refused: {refused}")
            _land(con, [_landed_row(sync, row, change, failed, run_id)
                        for row, change in zip(chunk, changes, strict=True)
                        if change is not None], landing_dir, run_id)  # fmt: skip
            raise
        counts["sent"] += len(to_send)
        landed = []
        for row, change in zip(chunk, changes, strict=True):
            result = next(answers) if change is not None else kept
            if result.outcome == "rejected" and row["attempt"] >= sync.max_attempts:
                result = RowResult("gave_up", result.reason)
            if result.outcome in counts:
                counts[result.outcome] += 1
            landed.append(_landed_row(sync, row, change, result, run_id))
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


def _without_forgotten(diff: Diff, forgotten: Forgotten) -> Diff:
    """The changes, without those that would send a person a deletion request names back to
    the platform (switchyard forget): they count as held. Removals still go."""
    if not forgotten.any() or not diff.changes.num_rows:
        return diff
    users = diff.changes.column("user_key").to_pylist()
    people = [u or k for u, k in zip(users, diff.changes.column("key").to_pylist(), strict=True)]
    keep = [
        change == "removed" or not forgotten.names([f"user_id:{p}", f"person_id:{p}"])
        for p, change in zip(people, diff.changes.column("change").to_pylist(), strict=True)
    ]
    held = keep.count(False)
    return replace(diff, changes=diff.changes.filter(pa.array(keep)), held=diff.held + held)


def _landed_row(
    sync: Sync, row: dict[str, Any], change: Change | None, result: RowResult, run_id: str
) -> dict[str, Any]:
    return {
        "sync": sync.name,
        "destination": sync.destination,
        "key": row["key"],
        "change": row["change"],
        "op": change.op if change is not None else "keep",
        "row_hash": row["row_hash"],
        "payload": _sent_payload(change) if change is not None else None,
        "outcome": result.outcome,
        "reason": result.reason,
        "attempt": row["attempt"],
        "run_id": run_id,
        "recorded_at": datetime.now(UTC).replace(tzinfo=None),
    }


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
