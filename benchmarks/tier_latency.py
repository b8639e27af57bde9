"""The seconds tier's promise, end to end: an event posted to the collector, to the provider
request arriving at the sandbox, with `dagster dev` (webserver and daemon) running the tier.

    python benchmarks/tier_latency.py [--size N] [--rate R] [--dbt-server on|off]
    (N people, each posting one cart_updated, default 40; R events/s, default 0.5; `off`: the dbt
    steps run dbt's CLI each, not the long-lived dbt of orchestration/dbt_server)

Set-up, as a user would run it: a copy of the project whose cart journey waits 0 minutes
instead of 60 (`within_minutes`; nothing else differs), `switchyard collect` as its own process,
the channel sandbox on 127.0.0.1, and `dagster dev -w workspace.yaml` with the seconds tier's
sensor turned on through the GraphQL API (as the UI's toggle does). N people are seeded
(identified, email consent) and a first run, started by the sensor, builds the warehouse. Then
each person posts one cart_updated at R events/s; latency is from the collector's answer to the
sandbox recording the reminder email.

Prints latency_p50_s, latency_p95_s, latency_max_s and count (reminders that arrived), and, from
the same run's Dagster records, the floor under them: run_p50_s (a tier run, start to end),
queue_p50_s (a run's request to its start), runs (tier runs after the first), and each step's
median: models_p50_s, send_step_p50_s, metrics_p50_s, publish_p50_s. The floor under the
latency is the sensor's interval plus a run's models and send step; a run started just before an
event lands adds its whole length (the queue).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))

from orchestration.dev_server import DagsterDev, dagster_dev, free_port  # noqa: E402
from sandbox import Sandbox  # noqa: E402
from switchyard import events, landing  # noqa: E402

WRITE_KEY = "wk_bench"
SENSOR = "tier_seconds_on_landed_files"
RUNS_QUERY = """
{ runsOrError(filter: {pipelineName: "tier_seconds"}) { ... on Runs { results {
    runId status creationTime startTime endTime stepStats { stepKey startTime endTime }
} } } }
"""


def figure(name: str, value: float | int, unit: str) -> None:
    shown = f"{value:.1f}" if isinstance(value, float) else str(value)
    print(f"{name}={shown} {unit}", flush=True)


def copy_project(target: Path) -> None:
    """The project's tracked files as they are now, the cart journey's wait cut to 0 minutes."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=PROJECT_DIR, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    for name in listed:
        source = PROJECT_DIR / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    audiences = target / "models" / "audiences" / "_audiences__models.yml"
    text = audiences.read_text()
    assert "within_minutes: 60" in text, "the cart journey's declaration changed: update this"
    audiences.write_text(text.replace("within_minutes: 60", "within_minutes: 0", 1))


def seed(landing_dir: Path, people: int) -> None:
    landing.ensure_layout(landing_dir)
    then = datetime.now(UTC) - timedelta(days=1)
    who = [f"bench{i}" for i in range(people)]
    landing.write_batch(
        landing_dir, "segment", "events",
        [events.identify(then, user_id=u, traits={"email": f"{u}@example.com",
                                                  "first_name": u}) for u in who],
    )  # fmt: skip
    landing.write_batch(
        landing_dir, "preferences", "consents",
        [events.consent(u, "email", "subscribed", then) for u in who],
    )  # fmt: skip


def start_sensor(dev: DagsterDev) -> None:
    answer = dev.graphql(
        """mutation($s: SensorSelector!) { startSensor(sensorSelector: $s) { __typename
            ... on Sensor { sensorState { status } } ... on PythonError { message } } }""",
        {"s": {"repositoryLocationName": dev.location(), "repositoryName": "__repository__",
               "sensorName": SENSOR}},
    )["startSensor"]  # fmt: skip
    if answer.get("sensorState", {}).get("status") != "RUNNING":
        raise RuntimeError(f"could not start {SENSOR}: {answer}")


def runs(dev: DagsterDev) -> list[dict[str, Any]]:
    return list(dev.graphql(RUNS_QUERY)["runsOrError"]["results"])


def wait_for(what: str, done: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout} s")
        time.sleep(0.5)


def received_at(record: Path) -> dict[str, float]:
    """recipient -> when the sandbox recorded its first message (epoch seconds)."""
    first: dict[str, float] = {}
    if record.exists():
        for line in record.read_text().splitlines():
            row = json.loads(line)
            at = datetime.fromisoformat(row["received_at"])
            at = at if at.tzinfo else at.replace(tzinfo=UTC)
            first.setdefault(row["recipient"], at.timestamp())
    return first


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=40, help="people, one event each")
    parser.add_argument("--rate", type=float, default=0.5, help="events per second")
    parser.add_argument("--dbt-server", choices=("on", "off"), default="on",
                        help="off: each dbt step runs dbt itself (the comparison)")  # fmt: skip
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        project, home = tmp / "project", tmp / "home"
        copy_project(project)
        record = home / "received.jsonl"
        with Sandbox(record_file=record) as sandbox:
            env = {
                k: v for k, v in os.environ.items()
                if k not in ("SWITCHYARD_LANDING_DIR", "SWITCHYARD_DUCKDB_PATH")
            } | {
                "PYTHONPATH": str(project),  # the copy's modules and dbt project, not these
                "SWITCHYARD_HOME": str(home),
                "SWITCHYARD_CHANNELS": "sandbox",
                "SWITCHYARD_CHANNELS_BASE_URL": sandbox.base_url,
                "SWITCHYARD_WRITE_KEYS": f"segment:{WRITE_KEY}",
                "SWITCHYARD_DBT_SERVER": args.dbt_server,
                "SWITCHYARD_DBT_SERVER_IDLE_SECONDS": "30",  # its home is gone after this
            }  # fmt: skip
            bin_dir = Path(sys.executable).parent
            subprocess.run([str(bin_dir / "switchyard"), "prepare"], cwd=project, env=env,
                           check=True, capture_output=True)  # fmt: skip
            seed(home / "landing", args.size)
            port = free_port()
            collector = subprocess.Popen(
                [str(bin_dir / "switchyard"), "collect", "--port", str(port)],
                cwd=project, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            try:
                with dagster_dev(tmp / "dagster_home", env=env,
                                 workspace=project / "workspace.yaml") as dev:  # fmt: skip
                    start_sensor(dev)
                    # The seeded files start the first run: it builds the warehouse.
                    wait_for("the first tier run", lambda: any(
                        r["status"] == "SUCCESS" for r in runs(dev)), 900)  # fmt: skip
                    warm = {r["runId"] for r in runs(dev)}
                    acked = post_events(port, args.size, args.rate)
                    wait_for("every reminder", lambda: len(
                        set(received_at(record)) & set(acked)) == len(acked), 600)  # fmt: skip
                    # The runs that sent them go on (metrics, publish): let them finish.
                    wait_for("the tier's runs", lambda: all(
                        r["endTime"] for r in runs(dev)), 600)  # fmt: skip
                    # (a time-started run may have begun since: only finished ones count)
                    later = [r for r in runs(dev) if r["runId"] not in warm and r["endTime"]]
            finally:
                collector.terminate()
                collector.wait()
        arrived = received_at(record)
    latencies = [arrived[who] - at for who, at in acked.items() if who in arrived]
    figure("latency_p50_s", statistics.median(latencies), "s")
    figure("latency_p95_s", percentile(latencies, 0.95), "s")
    figure("latency_max_s", max(latencies), "s")
    figure("count", len(latencies), "messages")
    figure("run_p50_s", statistics.median(r["endTime"] - r["startTime"] for r in later), "s")
    figure("queue_p50_s", statistics.median(r["startTime"] - r["creationTime"] for r in later), "s")
    figure("runs", len(later), "runs")
    # Where a run's time goes, step by step (its steps take turns in the warehouse pool).
    for step, name in (("dbt_models", "models"), ("journey__cart_abandonment", "send_step"),
                       ("dbt_metrics", "metrics"), ("published_warehouse", "publish")):  # fmt: skip
        took = [
            s["endTime"] - s["startTime"]
            for r in later for s in r["stepStats"]
            if s["stepKey"] == step and s["startTime"] and s["endTime"]
        ]  # fmt: skip
        if took:
            figure(f"{name}_p50_s", statistics.median(took), "s")


def post_events(port: int, people: int, rate: float) -> dict[str, float]:
    """Each person's cart_updated, paced at `rate`: recipient -> when the collector answered."""
    acked: dict[str, float] = {}
    started = time.monotonic()
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", auth=(WRITE_KEY, "")) as client:
        wait_for("the collector", lambda: _up(client), 60)
        for i in range(people):
            time.sleep(max(0.0, started + i / rate - time.monotonic()))
            event = events.track("cart_updated", datetime.now(UTC), user_id=f"bench{i}",
                                 properties={"sku": "sku-tee", "quantity": 1})  # fmt: skip
            client.post("/v1/track", json=event).raise_for_status()
            acked[f"bench{i}@example.com"] = time.time()
    return acked


def _up(client: httpx.Client) -> bool:
    try:
        client.get("/")
    except httpx.HTTPError:
        return False
    return True


if __name__ == "__main__":
    main()
