"""A Braze sync of N profiles with 1% changed, against the sandbox's Braze.

    python benchmarks/sync.py [--size N] [--changed-share S]
    (N profiles, default 1,000,000; S the share changed since the last sync, default 0.01)

In a scratch folder: a DuckDB warehouse with a `people` model of N rows (user id and five
attributes), and the state of a sync that acknowledged every row (landed as one sync would land
it, without sending: sending N rows first is not what is measured). Then S x N rows change and
one run of activations.syncs.run_sync sends what changed to the sandbox's Braze, over HTTP on
127.0.0.1, at Braze's default rate limit for /users/track (3,000 requests per 3 s).

Baseline, in the same run: `floor_seconds`, one bare DuckDB statement over the same files that
hashes every model row and anti-joins the acknowledged hashes (what the diff cannot beat), and
`full_requests`, the requests a sync without a diff would send (every row, 75 a request).

Prints one `name=value unit` line per figure: diff_seconds (the model read through the
warehouse interface and the diff), rows_sent, requests, sync_seconds (the sends and the landed
outcomes), full_batches (1 when every request but the last held 75 objects), floor_seconds,
diff_vs_floor, full_requests, rows_changed, rate_limited (429s from the sandbox), and the
targets' verdicts: diff_under_3s, only_changed_sent.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import duckdb

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))

from activations.arrow_warehouse import DuckDBWarehouse  # noqa: E402
from activations.syncs import (  # noqa: E402
    Sync,
    results,  # noqa: E402
    run_sync,
)
from activations.syncs.braze import MAX_ATTRIBUTES, BrazeDestination  # noqa: E402
from activations.syncs.diff import compute_diff  # noqa: E402
from activations.syncs.results import glob  # noqa: E402
from activations.syncs.run import _read_model  # noqa: E402
from sandbox import Sandbox  # noqa: E402
from sandbox.credentials import SANDBOX_CREDENTIALS  # noqa: E402

ATTRIBUTES = {
    "email": "email", "first_name": "first_name", "rfm_segment": "rfm_segment",
    "churn_risk_score": "churn_risk_score", "most_engaged_channel": "most_engaged_channel",
}  # fmt: skip
SYNC = Sync.from_meta(
    "people",
    {"name": "braze_people", "destination": "braze", "key": "user_id", "attributes": ATTRIBUTES},
    {"user_id", *ATTRIBUTES.values()},
)


def build_warehouse(path: Path, size: int) -> None:
    with duckdb.connect(str(path)) as con:
        con.execute(
            f"""
            create table people as
            select 'user-' || i as user_id, 'user' || i || '@example.com' as email,
                'Name' || i as first_name,
                (['champions', 'loyal', 'at_risk', 'lost'])[1 + i % 4] as rfm_segment,
                round((i * 37 % 100) / 100.0, 2) as churn_risk_score,
                (['email', 'push', 'sms'])[1 + i % 3] as most_engaged_channel
            from range({size}) t(i)
            """
        )


def seed_state(warehouse: Path, landing: Path) -> None:
    """The results a sync that acknowledged every row would have landed."""
    with duckdb.connect() as con:
        diff = compute_diff(con, SYNC, _read_model(DuckDBWarehouse(warehouse), SYNC), landing)
        con.register("seed", diff.changes)
        con.execute(
            "create temp table seeded as select 'braze_people' as sync, 'braze' as destination, "
            "key, change, 'upsert' as op, row_hash, payload, 'synced' as outcome, "
            "null as reason, 1 as attempt, 'seed' as run_id, "
            "now()::timestamp - interval 1 hour as recorded_at from seed"
        )
        results.append(con, "seeded", landing, "seed")


def floor_seconds(warehouse: Path, landing: Path) -> float:
    fields = ", ".join(f"{a} := {c}" for a, c in ATTRIBUTES.items())
    started = time.monotonic()
    with duckdb.connect() as con:
        con.execute(f"attach '{warehouse}' as wh (read_only)")
        con.execute(
            f"""
            select count(*) from wh.main.people m
            anti join read_parquet('{glob(landing)}', union_by_name = true) s
                on s.key = m.user_id and s.row_hash = md5(to_json(struct_pack({fields})))
            """
        ).fetchall()
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--changed-share", type=float, default=0.01)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="switchyard-sync-bench-") as scratch:
        warehouse, landing = Path(scratch) / "warehouse.duckdb", Path(scratch) / "landing"
        build_warehouse(warehouse, args.size)
        seed_state(warehouse, landing)
        every = max(1, round(1 / args.changed_share))
        with duckdb.connect(str(warehouse)) as con:
            con.execute(
                "update people set rfm_segment = 'reactivated' "
                f"where cast(substr(user_id, 6) as bigint) % {every} = 0"
            )
            ((changed,),) = con.execute(
                "select count(*) from people where rfm_segment = 'reactivated'"
            ).fetchall()
        floor = floor_seconds(warehouse, landing)
        with (
            Sandbox() as sandbox,
            BrazeDestination(sandbox.base_url, SANDBOX_CREDENTIALS.braze_api_key) as braze,
        ):
            summary = run_sync(SYNC, warehouse, landing, braze)
            rate_limited = sandbox.braze.rate_limited
            largest = sandbox.braze.largest_request
    full_batches = summary.requests == math.ceil(summary.rows_sent / MAX_ATTRIBUTES) and (
        summary.rows_sent <= MAX_ATTRIBUTES or largest == MAX_ATTRIBUTES
    )
    print(f"diff_seconds={summary.diff_seconds:.3f} s")
    print(f"rows_sent={summary.rows_sent} rows")
    print(f"requests={summary.requests} count")
    print(f"sync_seconds={summary.sync_seconds:.3f} s")
    print(f"full_batches={int(full_batches)} bool")
    print(f"floor_seconds={floor:.3f} s")
    print(f"diff_vs_floor={summary.diff_seconds / floor:.2f} x")
    print(f"full_requests={math.ceil(args.size / MAX_ATTRIBUTES)} count")
    print(f"rows_changed={changed} rows")
    print(f"rate_limited={rate_limited} count")
    print(f"diff_under_3s={int(summary.diff_seconds < 3)} bool")
    print(f"only_changed_sent={int(summary.rows_sent == changed)} bool")


if __name__ == "__main__":
    main()
