"""One journey engine tick at scale, against the floor of a bare DuckDB anti-join.

    python benchmarks/journey_tick.py [--size N] [--ledger-lines L]
    (N active entries, default 1,000,000; L ledger lines, default 10 x N)

Writes, in a scratch folder: a journey's transitions history of N open entries (each its entry
row and its latest row) spread over every node type (send, waits for a time, a clock time, an
event and an engagement, branch, split, exit), N profiles, app events and email opens, an
audience of those entries and 1% new ones (each naming its former entry id), 1% of people with
an id they had before a merge, and a delivery ledger of L lines landed as a run's file and
compacted, as the sender and the ledger's upkeep leave it (half the keys of the entries at send
steps sent, the rest other journeys').
Then, each in a fresh process so that its peak memory is its own:
  tick   activations.tick.run_tick with a run's ledger reader (the decided keys of the open
         entries, activations/inputs.py): new entries, exits, every round of moves, due sends,
         and the new transitions file written;
  floor  the bare anti-join of the same send keys against the ledger's lines.
Each is run --repeat times (default 3), the two alternating: the median run counts, and the
highest peak memory.
Prints one `name=value unit` line per figure: tick_seconds (the tick, its ledger read within),
floor_seconds, tick_vs_floor, peak_rss_mib (the tick's process), tick_ledger_seconds (the part of
tick_seconds spent reading the decided keys) and what the tick did.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))

from activations import transitions  # noqa: E402
from activations.inputs import decided_reader  # noqa: E402
from activations.journeys import Journey  # noqa: E402
from activations.ledger.compact import compact  # noqa: E402
from activations.tick import lit, run_tick, send_key_sql  # noqa: E402
from switchyard import landing as landed  # noqa: E402

NOW = datetime(2026, 11, 26, 12, 0)
EMAIL = {"email": {"subject": "s", "body": "b"}}
DECLARATION: dict[str, Any] = {
    "name": "bench",
    "entry": {"event": "cart_updated"},
    "exit_on": ["purchase_completed"],
    "steps": [
        {"name": "by_value", "type": "branch", "otherwise": "pause",
         "branches": [{"when": "churn_risk_score >= 50 and revenue >= 100", "next": "offer"}]},
        {"name": "offer", "channels": ["email"], "templates": EMAIL},
        {"name": "opened", "type": "wait", "until_event": "open", "of_step": "offer",
         "timeout_hours": 48, "on_timeout": "reminder", "next": "morning"},
        {"name": "reminder", "channels": ["email"], "templates": EMAIL},
        {"name": "morning", "type": "wait", "until_time": "09:00"},
        {"name": "ab", "type": "split", "paths": [
            {"name": "a", "percent": 50, "next": "variant_a"},
            {"name": "b", "percent": 50, "next": "for_app"}]},
        {"name": "variant_a", "channels": ["email"], "templates": EMAIL, "next": "bye"},
        {"name": "for_app", "type": "wait", "until_event": "app_opened", "timeout_hours": 24,
         "on_timeout": "variant_b", "next": "bye"},
        {"name": "variant_b", "channels": ["email"], "templates": EMAIL, "next": "bye"},
        {"name": "pause", "type": "wait", "hours": 2},
        {"name": "one_email", "channels": ["email"], "templates": EMAIL},
        {"name": "bye", "type": "exit"},
    ],
}  # fmt: skip
PROFILE_COLUMNS = ("person_id", "timezone", "usual_active_hour_utc", "churn_risk_score", "revenue")
JOURNEY = Journey.from_meta("audience_bench", DECLARATION, profile_columns=PROFILE_COLUMNS)
NODES = [n.name for n in JOURNEY.nodes]
WAIT_HOURS = {"opened": 48, "for_app": 24, "pause": 2}


def emit(name: str, value: object, unit: str = "") -> None:
    print(f"{name}={value} {unit}".rstrip(), flush=True)


def generate(folder: Path, entries: int, ledger_lines: int) -> None:
    """Every input as Parquet under `folder` (history in its landing layout)."""
    landing = folder / "landing"
    landed.ensure_layout(landing)
    transitions.ensure_folder(landing)
    con = duckdb.connect()
    con.execute("set preserve_insertion_order = false")
    node_list = "[" + ", ".join(lit(n) for n in NODES) + "]"
    j = lit(JOURNEY.name)
    # Open entries: each at one node, reached up to three days ago.
    con.execute(
        f"""
        create table history as
        select
            {j} as journey, 'e' || i as entry_id, 'p' || i as person_id, 1 as seq,
            'by_value' as from_node, {node_list}[1 + (hash(i) % {len(NODES)})::int] as node,
            timestamp '{NOW}' - to_minutes((hash(i * 7) % 4320)::bigint) as reached_at,
            timestamp '{NOW}' - to_minutes((hash(i * 7) % 4320)::bigint + 4320) as entered_at,
            case when hash(i * 3) % 10 = 0 then 'holdout' else 'treatment' end as arm,
            'waited' as reason, null::varchar as detail, null::varchar as properties,
            'bench' as run_id, timestamp '{NOW}' as recorded_at,
            null::varchar as journey_version
        from range({entries}) t(i)
        """
    )
    waits = " ".join(f"when node = {lit(n)} then {h}" for n, h in WAIT_HOURS.items())
    con.execute(
        f"""
        create table history_out as
        select * replace (
            coalesce(reached_at + to_hours((case {waits} end)::bigint), reached_at) as next_at
        ) from (select *, null::timestamp as next_at from history)
        """
    )
    # Each entry's own row first (seq 0, at the first node, with the entry's properties): a
    # tick finds the latest of several rows per entry, as in a journey that has run a while.
    con.execute(
        """
        create table entry_rows as
        select * replace (
            0 as seq, null::varchar as from_node, 'by_value' as node, entered_at as reached_at,
            entered_at as next_at, 'entered' as reason, '{"sku": "tee"}' as properties
        ) from history_out
        """
    )
    transitions.append(con, "entry_rows", landing, prefix="bench-entries")
    transitions.append(con, "history_out", landing, prefix="bench")
    con.execute(
        f"""
        copy (
            select 'p' || i as person_id,
                ['Europe/Berlin', 'America/New_York', 'Asia/Tokyo', null][1 + (i % 4)::int]
                    as timezone,
                case when i % 3 = 0 then (i % 24)::int end as usual_active_hour_utc,
                (hash(i * 5) % 100)::int as churn_risk_score,
                (hash(i * 11) % 400)::double as revenue
            from range({entries}) t(i)
        ) to '{folder}/profiles.parquet' (format parquet)
        """
    )
    new = max(1, entries // 100)
    con.execute(
        f"""
        copy (
            select 'e' || i as entry_id, 'p' || i as person_id,
                timestamp '{NOW}' - to_minutes((hash(i) % 4320)::bigint) as enters_at,
                '{{"sku": "tee"}}' as entry_properties, null::timestamp as exited_at,
                md5({lit(JOURNEY.name + ":")} || 'p' || i || ':ev' || i) as former_entry_id,
                'ev' || i as entry_event_id
            from range({entries + new}) t(i)
        ) to '{folder}/audience.parquet' (format parquet)
        """
    )
    # 1% of people merged with an id of theirs from before (none with entries under it)
    con.execute(
        f"""
        copy (
            select 'old' || i as alias_person_id, 'p' || i as person_id, true as is_primary
            from range({entries}) t(i) where i % 100 = 7
        ) to '{folder}/aliases.parquet' (format parquet)
        """
    )
    con.execute(
        f"""
        copy (
            select 'p' || (hash(i) % {entries}) as person_id,
                case when i % 10 = 0 then 'purchase_completed' else 'app_opened' end
                    as event_name,
                timestamp '{NOW}' - to_minutes((hash(i * 13) % 4320)::bigint) as occurred_at
            from range({entries // 2}) t(i)
        ) to '{folder}/events.parquet' (format parquet)
        """
    )
    offer_key = send_key_sql(j, "'offer'", "'p' || i", "'e' || i")
    con.execute(
        f"""
        copy (
            select {offer_key} as send_key, 'open' as feedback_event,
                timestamp '{NOW}' - to_minutes((hash(i * 17) % 4320)::bigint) as occurred_at
            from range({entries}) t(i) where i % 5 = 0
        ) to '{folder}/feedback.parquet' (format parquet)
        """
    )
    # The ledger, landed as a run's lines and compacted, as the sender and upkeep leave it: the
    # keys of entries at a send step, half decided (sent, its attempt before it); other journeys'
    # lines fill it up to `ledger_lines` (a `limit` over the union would keep an arbitrary part
    # of each).
    sends = ", ".join(lit(n.name) for n in JOURNEY.steps)
    key = send_key_sql(j, "node", "person_id", "entry_id")
    stamp = "strftime({}, '%Y-%m-%dT%H:%M:%S.%f')"
    con.execute(
        f"""
        create table own_lines as
        select {key} as send_key, {j} as journey, node as step, person_id, entry_id,
            status, null::varchar as reason, {stamp.format("reached_at + to_seconds(s.n)")}
                as recorded_at
        from history, (values (0, 'attempted'), (1, 'sent')) s(n, status)
        where node in ({sends}) and hash(entry_id) % 2 = 0
        """
    )
    (own,) = con.execute("select count(*) from own_lines").fetchone() or (0,)
    deliveries = landed.table_dir(landing, "ledger", "deliveries")
    con.execute(
        f"""
        copy (
            select * from own_lines
            union all
            select md5('other' || i), 'other_' || (i % 7), 's', 'p' || (i % 100000),
                'x' || (i // 2), ['attempted', 'sent', 'skipped'][1 + (i % 3)::int],
                case when i % 3 = 2 then 'no_consent' end,
                {stamp.format(f"timestamp '{NOW}' - to_minutes((i % 40000)::bigint)")}
            from range({max(0, ledger_lines - own)}) t(i)
        ) to '{deliveries}/run-bench-history.jsonl' (format json)
        """
    )
    con.close()
    compact(landing)


def open_inputs(con: duckdb.DuckDBPyConnection, folder: Path) -> None:
    for name in ("profiles", "audience", "events", "feedback", "aliases"):
        con.execute(f"create view {name} as select * from '{folder}/{name}.parquet'")
    transitions.create_history_view(con, folder / "landing")


def worker(folder: Path, mode: str) -> None:
    con = duckdb.connect()
    open_inputs(con, folder)
    landing = folder / "landing"
    started = time.perf_counter()
    if mode == "tick":
        # What a run's tick reads from the ledger: the decided keys of its open entries.
        reader = decided_reader(landing, JOURNEY, {})
        decided_seconds = 0.0

        def read_decided(con: duckdb.DuckDBPyConnection, entries: str) -> None:
            nonlocal decided_seconds
            at = time.perf_counter()
            reader(con, entries)
            decided_seconds = time.perf_counter() - at

        result = run_tick(con, JOURNEY, NOW, "bench-tick", landing, read_decided)
        figures = {"decided_seconds": decided_seconds,
                   "transitions": result.transitions, "entered": result.entered,
                   "due": result.due_table.num_rows, "rounds": result.rounds}  # fmt: skip
    else:
        sends = ", ".join(lit(n.name) for n in JOURNEY.steps)
        key = send_key_sql(lit(JOURNEY.name), "node", "person_id", "entry_id")
        lines = lit(str(landing / "ledger" / "compacted" / "lines-*.parquet"))  # every line
        (count,) = con.execute(
            f"""
            select count(*) from (
                select {key} as send_key from history where node in ({sends})
            ) anti join read_parquet({lines}) l using (send_key)
            """
        ).fetchone() or (0,)
        figures = {"undecided": count}
    seconds = time.perf_counter() - started
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "rss": rss, **figures}))


def measure(folder: Path, modes: tuple[str, ...], repeat: int) -> dict[str, dict[str, Any]]:
    """Per mode, the run of median time among `repeat` runs (the modes alternating, so that
    the machine's background load falls on both), with `rss` the highest of its runs. Every run
    reads the same inputs: what a tick wrote is removed before the next run."""
    landed = transitions.folder(folder / "landing")
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in modes}
    for _ in range(repeat):
        for mode in modes:
            before = set(landed.iterdir())
            out = subprocess.run(
                [sys.executable, __file__, "--worker", str(folder), "--mode", mode],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            for written in set(landed.iterdir()) - before:
                written.unlink()
            runs[mode].append(json.loads(out.strip().splitlines()[-1]))
    result = {}
    for mode, measured in runs.items():
        measured.sort(key=lambda run: float(run["seconds"]))
        result[mode] = {**measured[len(measured) // 2], "rss": max(r["rss"] for r in measured)}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=1_000_000, help="active entries")
    parser.add_argument("--ledger-lines", type=int, default=None, help="default: 10 x size")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each; the median counts")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=["tick", "floor", "generate"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    lines = args.ledger_lines or 10 * args.size
    if args.worker:
        if args.mode == "generate":
            generate(args.worker, args.size, lines)
        else:
            worker(args.worker, args.mode)
        return
    with tempfile.TemporaryDirectory(prefix="journey-tick-") as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        # In a process of its own: the workers' peak memory counts from their parent's (Linux
        # keeps ru_maxrss across exec), which must not hold the generation's.
        subprocess.run(
            [sys.executable, __file__, "--worker", str(folder), "--mode", "generate",
             "--size", str(args.size), "--ledger-lines", str(lines)],
            check=True,
        )  # fmt: skip
        emit("entries", args.size, "entries")
        emit("ledger_lines", lines, "lines")
        emit("generate_seconds", f"{time.perf_counter() - started:.2f}", "s")
        os.sync()  # the inputs' write-back would otherwise compete with the first runs
        measured = measure(folder, ("floor", "tick"), args.repeat)
        floor, tick = measured["floor"], measured["tick"]
        emit("tick_seconds", f"{tick['seconds']:.2f}", "s")
        emit("floor_seconds", f"{floor['seconds']:.2f}", "s")
        emit("tick_vs_floor", f"{tick['seconds'] / floor['seconds']:.2f}", "x")
        emit("peak_rss_mib", f"{tick['rss']:.0f}", "MiB")
        # of tick_seconds: reading the open entries' decided keys from the ledger
        emit("tick_ledger_seconds", f"{tick['decided_seconds']:.2f}", "s")
        emit("floor_peak_rss_mib", f"{floor['rss']:.0f}", "MiB")
        for name in ("transitions", "entered", "due", "rounds"):
            emit(f"tick_{name}", tick[name], "rows" if name != "rounds" else "rounds")
        emit("floor_undecided", floor["undecided"], "keys")


if __name__ == "__main__":
    main()
