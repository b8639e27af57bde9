"""Identity resolution at scale: the dbt identity models against scipy and networkx on one graph.

    python benchmarks/identity_graph.py [--size N]   (N identifiers, default 1,000,000)

Builds a synthetic identifier graph in a scratch DuckDB file (people with one or two devices, most
with a user_id and an email, a few in-store devices shared by many customers), runs the identity
models on it through dbt, then runs scipy's and networkx's connected_components on the same
mergeable graph (the baselines, measured in the same run) and checks the partitions agree.
Prints one `name=value unit` line per figure.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np

PROJECT_DIR = Path(__file__).resolve().parent.parent
DBT = str(Path(sys.executable).parent / "dbt")
IDENTIFIERS_PER_PERSON = (
    4.7  # see make_graph: 0.8 user + 1.5 anon + 1.5 device + 0.6 email + chains
)

BENCH_SOURCE = {
    "relation": "bench_occurrences",
    "occurrence_id": "occurrence_id",
    "occurred_at": "occurred_at",
    "identifiers": {
        "user_id": "user_id",
        "anonymous_id": "anonymous_id",
        "device_id": "device_id",
        "email": "email",
    },
}


def emit(name: str, value: object, unit: str = "") -> None:
    print(f"{name}={value} {unit}".rstrip(), flush=True)


def make_graph(con: duckdb.DuckDBPyConnection, identifiers: int) -> None:
    people = max(10, int(identifiers / IDENTIFIERS_PER_PERSON))
    con.execute(f"""
        create or replace table bench_occurrences as
        with people as (
            select i, hash(i) as h from range({people}) t(i)
        ),
        devices as (
            select i, h, k from people, range(1 + (h % 2)::int) d(k)
        ),
        logins as (
            select
                'o' || i || '_' || k as occurrence_id,
                timestamp '2026-01-01' + to_seconds((i * 3 + k)::bigint) as occurred_at,
                case when h % 10 < 8 then 'u' || i end as user_id,
                'a' || i || '_' || k as anonymous_id,
                'd' || i || '_' || k as device_id,
                case when (h // 10) % 10 < 6 then 'e' || i || '@x.com' end as email
            from devices
        ),
        shared_devices as (
            -- one person in a thousand also logs in on one of a few in-store tablets
            select
                'shared' || i as occurrence_id,
                timestamp '2026-06-01' + to_seconds(i::bigint) as occurred_at,
                'u' || i as user_id,
                null as anonymous_id,
                'tablet' || (i % 50) as device_id,
                null as email
            from people where h % 1000 = 0 and h % 10 < 8
        ),
        chains as (
            -- one person in a hundred rotates cookies on one device: a long chain, the case that
            -- needs the most propagation rounds
            select
                'chain' || i || '_' || j || '_' || side as occurrence_id,
                timestamp '2026-03-01' + to_seconds((i * 40 + j)::bigint) as occurred_at,
                null as user_id,
                'c' || i || '_' || (j + side) as anonymous_id,
                'x' || i || '_' || j as device_id,
                null as email
            from people, range(16) c(j), range(2) s(side)
            where h % 100 = 1
        )
        select * from logins
        union all
        select * from shared_devices
        union all
        select * from chains
    """)


def run_dbt(paths: dict[str, str], *args: str) -> tuple[float, str]:
    env = {**os.environ, **paths}
    cmd = [DBT, *args, "--project-dir", str(PROJECT_DIR), "--profiles-dir", str(PROJECT_DIR)]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=PROJECT_DIR, env=env)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"dbt failed:\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}")
    return elapsed, done.stdout


def step_times(home: Path) -> dict[str, float]:
    results = json.loads((home / "target" / "run_results.json").read_text())
    return {r["unique_id"].split(".")[-1]: r["execution_time"] for r in results["results"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=1_000_000, help="identifiers in the graph")
    parser.add_argument(
        "--networkx-max",
        type=int,
        default=2_000_000,
        help="skip networkx above this many identifiers (it needs ~1 KB each)",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="switchyard-bench-") as tmp:
        home = Path(tmp)
        db = home / "bench.duckdb"
        paths = {
            "SWITCHYARD_HOME": str(home),
            "SWITCHYARD_DUCKDB_PATH": str(db),
            "SWITCHYARD_LANDING_DIR": str(home / "landing"),
        }
        con = duckdb.connect(str(db))
        t = time.perf_counter()
        make_graph(con, args.size)
        emit("generate_graph", f"{time.perf_counter() - t:.2f}", "s")
        con.close()

        identity = json.loads(
            json.dumps(
                __import__("yaml").safe_load((PROJECT_DIR / "dbt_project.yml").read_text())["vars"][
                    "identity"
                ]
            )
        )
        identity["sources"] = [BENCH_SOURCE]
        dbt_vars = json.dumps({"identity": identity})
        selection = [
            "--select",
            "path:models/identity",
            "--exclude",
            "int_events_stitched",
            "fct_identity_audit",
        ]
        # Its own target path: the project's manifest must not pick up the benchmark's vars.
        target = ["--target-path", str(home / "target")]
        wall, out = run_dbt(paths, "run", *selection, *target, "--vars", dbt_vars)
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        iterations = int(re.search(r"converged after (\d+) iterations", out).group(1))
        steps = step_times(home)

        con = duckdb.connect(str(db), read_only=True)
        identifiers, people = con.execute(
            "select count(*), count(distinct person_id) from dim_identities"
        ).fetchone()
        nodes = con.execute(
            "select node_id from int_identity_nodes where is_mergeable order by node_id"
        ).fetchnumpy()["node_id"]
        edges = con.execute("select src_id, dst_id from int_identity_edges").fetchnumpy()
        ours = con.execute(
            "select node_id, component_id from int_identity_components order by node_id"
        ).fetchnumpy()
        con.close()

        emit("identifiers", identifiers, "count")
        emit("people", people, "count")
        emit("mergeable_nodes", len(nodes), "count")
        emit("edges", len(edges["src_id"]) // 2, "count")
        emit("iterations", iterations, "count")
        emit("dbt_identity_wall", f"{wall:.2f}", "s")
        for model, seconds in steps.items():
            emit(f"dbt_step_{model}", f"{seconds:.2f}", "s")
        emit("dbt_peak_rss", f"{peak_kib / 1024:.0f}", "MiB")

        # Baselines on the same mergeable graph, in memory.
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        size = int(nodes.max()) + 1 if len(nodes) else 1
        src, dst = edges["src_id"].astype(np.int64), edges["dst_id"].astype(np.int64)
        t = time.perf_counter()
        matrix = coo_matrix(
            (np.ones(len(src), dtype=np.int8), (src, dst)), shape=(size, size)
        ).tocsr()
        n_components, labels = connected_components(matrix, directed=False)
        scipy_time = time.perf_counter() - t
        emit("scipy_connected_components", f"{scipy_time:.2f}", "s")

        # Same partition? Name each scipy component by its smallest mergeable node, as ours does.
        smallest = np.full(n_components, np.iinfo(np.int64).max)
        np.minimum.at(smallest, labels[nodes], nodes)
        matches = bool(
            np.array_equal(smallest[labels[ours["node_id"]]], ours["component_id"])
            and np.array_equal(ours["node_id"], nodes)
        )
        emit("partition_matches_scipy", int(matches), "bool")

        if identifiers <= args.networkx_max:
            import networkx as nx

            t = time.perf_counter()
            graph = nx.Graph()
            graph.add_nodes_from(nodes.tolist())
            graph.add_edges_from(zip(src.tolist(), dst.tolist(), strict=True))
            nx_components = sum(1 for _ in nx.connected_components(graph))
            emit("networkx_connected_components", f"{time.perf_counter() - t:.2f}", "s")
            emit(
                "networkx_components_agree",
                int(nx_components == len(set(ours["component_id"]))),
                "bool",
            )
        else:
            emit("networkx_connected_components", "skipped", "(over --networkx-max)")

        emit(
            "target_60s_at_10M",
            "pass" if wall < 60 * max(1, identifiers / 10_000_000) else "miss",
            "(scaled to size)",
        )


if __name__ == "__main__":
    main()
