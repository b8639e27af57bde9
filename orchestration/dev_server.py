"""`dagster dev` (webserver and daemon) as a child process that has loaded the code location: what
`make dev` runs, started the same way by the smoke test and the benchmarks."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from switchyard.processes import stop_group
from switchyard.settings import PROJECT_DIR

LOCATION_QUERY = """
{ workspaceOrError { ... on Workspace { locationEntries {
    name loadStatus
    locationOrLoadError { ... on PythonError { message } }
} } } }
"""


@dataclass
class DagsterDev:
    url: str
    process: subprocess.Popen[bytes]
    ready_seconds: float  # from launch to the code location loaded and served

    def graphql(self, query: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
        answer = httpx.post(
            f"{self.url}/graphql",
            json={"query": query, "variables": dict(variables or {})},
            timeout=60,  # a loaded machine (runs going on) answers slowly, not never
        )
        answer.raise_for_status()
        body: dict[str, Any] = answer.json()
        if body.get("errors"):
            raise RuntimeError(f"GraphQL errors: {body['errors']}")
        return body["data"]

    def location(self) -> str:
        (entry,) = self.graphql(LOCATION_QUERY)["workspaceOrError"]["locationEntries"]
        return str(entry["name"])

    def launch(self, job: str) -> str:
        """Launch a run of `job` (through the run queue, as the UI's button does): its id."""
        selector = {"repositoryLocationName": self.location(),
                    "repositoryName": "__repository__", "jobName": job}  # fmt: skip
        answer = self.graphql(LAUNCH_MUTATION, {"p": {"selector": selector}})["launchRun"]
        if answer["__typename"] != "LaunchRunSuccess":
            raise RuntimeError(f"could not launch {job}: {answer}")
        return str(answer["run"]["runId"])

    def runs(self, run_ids: list[str]) -> list[dict[str, Any]]:
        """Each run's status and steps (key, status, start and end, epoch seconds)."""
        answer = self.graphql(RUNS_QUERY, {"ids": run_ids})["runsOrError"]
        return list(answer["results"])


LAUNCH_MUTATION = """
mutation($p: ExecutionParams!) { launchRun(executionParams: $p) { __typename
    ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
    ... on InvalidSubsetError { message } ... on RunConfigValidationInvalid { errors { message } }
} }
"""
RUNS_QUERY = """
query($ids: [String!]) { runsOrError(filter: {runIds: $ids}) { ... on Runs { results {
    runId jobName status startTime endTime
    stepStats { stepKey status startTime endTime }
} } } }
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def dagster_dev(
    dagster_home: Path,
    env: Mapping[str, str] | None = None,
    workspace: Path = PROJECT_DIR / "workspace.yaml",
    timeout: float = 180.0,
) -> Iterator[DagsterDev]:
    """Start `dagster dev -w workspace` with the project's instance settings in `dagster_home`,
    wait until its code location is loaded, yield it, and stop it (SIGINT, as Ctrl-C does)."""
    # A SIGTERM (timeout, kill) must run the `finally` below: dagster dev's daemon and code
    # server live in their own session and would outlive us, still running tier runs.
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
    dagster_home.mkdir(parents=True, exist_ok=True)
    shutil.copy(PROJECT_DIR / "orchestration" / "dagster.yaml", dagster_home / "dagster.yaml")
    port = free_port()
    bin_dir = str(Path(sys.executable).parent)
    full_env = {
        **os.environ,
        "DAGSTER_HOME": str(dagster_home),
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),  # dbt, as `make dev` sets
        **(env or {}),
    }
    log = (dagster_home / "dagster_dev.log").open("wb")
    started = time.monotonic()
    process = subprocess.Popen(
        [str(Path(bin_dir) / "dagster"), "dev", "-w", str(workspace), "-h", "127.0.0.1",
         "-p", str(port)],
        cwd=workspace.parent,
        env=full_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its webserver, daemon and code server stop with it
    )  # fmt: skip
    server = DagsterDev(f"http://127.0.0.1:{port}", process, 0.0)
    try:
        server.ready_seconds = _wait_loaded(server, started, timeout, dagster_home)
        yield server
    finally:
        _stop(process)
        log.close()


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _wait_loaded(server: DagsterDev, started: float, timeout: float, home: Path) -> float:
    while time.monotonic() - started < timeout:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"dagster dev exited with {server.process.returncode}; its log: "
                f"{home / 'dagster_dev.log'}"
            )
        try:
            entries = server.graphql(LOCATION_QUERY)["workspaceOrError"]["locationEntries"]
        except (httpx.HTTPError, RuntimeError, KeyError):
            time.sleep(0.1)
            continue
        if entries and all(e["loadStatus"] == "LOADED" for e in entries):
            errors = [e["locationOrLoadError"]["message"] for e in entries
                      if (e["locationOrLoadError"] or {}).get("message")]  # fmt: skip
            if errors:
                raise RuntimeError(f"the code location failed to load: {errors}")
            return time.monotonic() - started
        time.sleep(0.1)
    raise TimeoutError(f"dagster dev did not load within {timeout} s; log: {home}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    stop_group(process, signal.SIGINT)
