"""Identity resolution at scale: the dbt identity models against scipy and networkx on one graph.

    python benchmarks/identity_graph.py [--size N]   (N identifiers, default 1,000,000)

Builds a synthetic identifier graph in a scratch DuckDB file (people with one or two devices, most
with a user_id and an email, a few in-store devices shared by many customers), runs the identity
models on it through dbt, then runs scipy's and networkx's connected_components on the same
mergeable graph (the baselines, measured in the same run) and checks the partitions agree. Then
appends a later batch (--delta) and runs the models incrementally. After each run, the models'
dbt tests run too (dbt build, as Dagster runs it, does both), timed apart.
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
from typing import Any

import duckdb
import numpy as np
import yaml  # type: ignore[import-untyped]

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


def add_delta(con: duckdb.DuckDBPyConnection, identifiers: int, share: float) -> int:
    """Append a later batch of about share * identifiers new identifiers: new people, known people
    on a new device, new cookies on known devices. Returns the occurrences added."""
    people = max(10, int(identifiers / IDENTIFIERS_PER_PERSON))
    new_rows = max(1, int(identifiers * share / 2.6))  # ~2.6 new identifiers per new row
    count = "select count(*) from bench_occurrences"
    before = con.execute(count).fetchall()[0][0]
    con.execute(f"""
        insert into bench_occurrences
        with latest as (select max(occurred_at) as at from bench_occurrences),
        batch as (select i, hash(i + 7919) as h from range({new_rows}) t(i))
        select
            'delta' || i as occurrence_id,
            latest.at + interval 1 hour + to_seconds(i::bigint) as occurred_at,
            case
                when h % 10 < 6 then 'nu' || i                    -- a new person
                when h % 10 < 9 then 'u' || (h // 10) % {people}  -- a known person, new device
            end as user_id,
            'na' || i as anonymous_id,
            case
                when h % 10 < 9 then 'nd' || i
                else 'd' || (h // 10) % {people} || '_0'          -- new cookie on a known device
            end as device_id,
            case when h % 10 < 6 and (h // 10) % 2 = 0 then 'ne' || i || '@x.com' end as email
        from batch, latest
    """)
    return int(con.execute(count).fetchall()[0][0] - before)


def run_dbt(paths: dict[str, str], *args: str) -> tuple[float, str]:
    env = {**os.environ, **paths}
    cmd = [DBT, *args, "--project-dir", str(PROJECT_DIR), "--profiles-dir", str(PROJECT_DIR)]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=PROJECT_DIR, env=env)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"dbt failed:\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}")
    return elapsed, done.stdout


def converged_after(dbt_output: str) -> int:
    found = re.search(r"converged after (\d+) iterations", dbt_output)
    return int(found.group(1)) if found else 0


def step_times(home: Path) -> dict[str, float]:
    results = json.loads((home / "target" / "run_results.json").read_text())
    return {r["unique_id"].split(".")[-1]: r["execution_time"] for r in results["results"]}


def emit_run(kind: str, wall: float, dbt_output: str, home: Path) -> float:
    """A dbt run's figures; returns the seconds spent in the models themselves."""
    prefix = f"{kind}_" if kind else ""
    emit(f"{prefix}iterations", converged_after(dbt_output), "count")
    emit(f"dbt_identity_{prefix}wall", f"{wall:.2f}", "s")
    steps = step_times(home)
    for model, seconds in steps.items():
        emit(f"dbt_{prefix}step_{model}", f"{seconds:.2f}", "s")
    # The rest of the wall time is dbt's own start-up (imports, parse), the same every run.
    models = sum(steps.values())
    emit(f"dbt_identity_{prefix}models", f"{models:.2f}", "s")
    emit(f"dbt_{prefix}startup_and_overhead", f"{wall - models:.2f}", "s")
    return models


def read_graph(db: Path) -> dict[str, Any]:
    """The mergeable graph the models saw, and the components they found."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        mergeable = "select node_id from int_identity_nodes where is_mergeable"
        return {
            "nodes": con.execute(f"{mergeable} order by node_id").fetchnumpy()["node_id"],
            "edges": con.execute(f"""
                select src_id, dst_id from int_identity_edges
                where src_id in ({mergeable}) and dst_id in ({mergeable})
            """).fetchnumpy(),
            "ours": con.execute(
                "select node_id, component_id from int_identity_components order by node_id"
            ).fetchnumpy(),
            "counts": np.array(
                con.execute(
                    "select count(*), count(distinct person_id) from dim_identities"
                ).fetchone()
            ),
        }
    finally:
        con.close()


def scipy_components(graph: dict[str, Any]) -> tuple[float, bool]:
    """scipy's connected_components on the same graph: seconds, and same partition as ours?"""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    nodes, edges, ours = graph["nodes"], graph["edges"], graph["ours"]
    size = int(nodes.max()) + 1 if len(nodes) else 1
    src, dst = edges["src_id"].astype(np.int64), edges["dst_id"].astype(np.int64)
    t = time.perf_counter()
    matrix = coo_matrix((np.ones(len(src), dtype=np.int8), (src, dst)), shape=(size, size)).tocsr()
    _, labels = connected_components(matrix, directed=False)
    seconds = time.perf_counter() - t
    # Same partition: every (scipy label, our label) pair is one component of each.
    scipy_labels, our_labels = labels[ours["node_id"]], ours["component_id"]
    pairs = len(np.unique(np.stack([scipy_labels, our_labels]), axis=1)[0])
    matches = bool(
        np.array_equal(ours["node_id"], nodes)
        and pairs == len(np.unique(scipy_labels)) == len(np.unique(our_labels))
    )
    return seconds, matches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=1_000_000, help="identifiers in the graph")
    parser.add_argument(
        "--delta", type=float, default=0.01, help="share of new identifiers in the later batch"
    )
    parser.add_argument(
        "--networkx-max",
        type=int,
        default=2_000_000,
        help="skip networkx above this many identifiers (it needs ~1 KB each)",
    )
    parser.add_argument(
        "--keep", metavar="DIR", help="build in DIR and keep its bench.duckdb for inspection"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="switchyard-bench-") as tmp:
        home = Path(args.keep or tmp)
        home.mkdir(parents=True, exist_ok=True)
        (home / "bench.duckdb").unlink(missing_ok=True)
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

        project = yaml.safe_load((PROJECT_DIR / "dbt_project.yml").read_text())
        identity = {**project["vars"]["identity"], "sources": [BENCH_SOURCE]}
        selection = [
            "--select",
            "path:models/identity",
            "--exclude",
            "int_events_stitched",
            "fct_identity_audit",
            "--vars",
            json.dumps({"identity": identity}),
            # Its own target path: the project's manifest must not pick up the benchmark's vars.
            "--target-path",
            str(home / "target"),
        ]

        # 1. Full build.
        wall, out = run_dbt(paths, "run", *selection, "--full-refresh")
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        graph = read_graph(db)
        identifiers, people = graph["counts"]
        emit("identifiers", identifiers, "count")
        emit("people", people, "count")
        emit("mergeable_nodes", len(graph["nodes"]), "count")
        emit("edges", len(graph["edges"]["src_id"]) // 2, "count")
        models = emit_run("", wall, out, home)
        emit("dbt_peak_rss", f"{peak_kib / 1024:.0f}", "MiB")
        # dbt build (as Dagster runs it) also tests every model after it is built.
        tests = run_dbt(paths, "test", *selection)[0]
        emit("dbt_identity_tests_wall", f"{tests:.2f}", "s")

        # 2. Baselines on the same mergeable graph, in memory.
        scipy_time, matches = scipy_components(graph)
        emit("scipy_connected_components", f"{scipy_time:.2f}", "s")
        emit("partition_matches_scipy", int(matches), "bool")
        if identifiers <= args.networkx_max:
            import networkx as nx

            src, dst = graph["edges"]["src_id"].tolist(), graph["edges"]["dst_id"].tolist()
            t = time.perf_counter()
            nx_graph = nx.Graph()
            nx_graph.add_nodes_from(graph["nodes"].tolist())
            nx_graph.add_edges_from(zip(src, dst, strict=True))
            nx_components = sum(1 for _ in nx.connected_components(nx_graph))
            emit("networkx_connected_components", f"{time.perf_counter() - t:.2f}", "s")
            agree = nx_components == len(set(graph["ours"]["component_id"].tolist()))
            emit("networkx_components_agree", int(agree), "bool")
        else:
            emit("networkx_connected_components", "skipped", "(over --networkx-max)")

        # 3. A later batch, incrementally: only what it touches is recomputed.
        con = duckdb.connect(str(db))
        emit("delta_occurrences", add_delta(con, int(identifiers), args.delta), "count")
        con.close()
        delta_wall, out = run_dbt(paths, "run", *selection)
        after = read_graph(db)
        emit("delta_identifiers", int(after["counts"][0] - identifiers), "count")
        delta_models = emit_run("delta", delta_wall, out, home)
        emit("delta_partition_matches_scipy", int(scipy_components(after)[1]), "bool")
        delta_tests = run_dbt(paths, "test", *selection)[0]
        emit("dbt_identity_delta_tests_wall", f"{delta_tests:.2f}", "s")
        emit("delta_vs_full", f"{delta_wall / wall:.3f}", "ratio")
        emit(
            "delta_vs_full_models",
            f"{delta_models / models:.3f}",
            "ratio",
        )

        scale = max(1, identifiers / 10_000_000)
        emit("target_60s_at_10M", "pass" if wall < 60 * scale else "miss", "(scaled to size)")
        emit("target_delta_under_tenth", "pass" if delta_wall < wall / 10 else "miss", "")
        emit(
            "target_delta_under_tenth_models",
            "pass" if delta_models < models / 10 else "miss",
            "(time inside the models, without dbt's start-up)",
        )


if __name__ == "__main__":
    main()
