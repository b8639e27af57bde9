"""The Spark session of the Spark dbt targets, for readers beside dbt (activations, tests).

`spark`: a session in this process. Its settings are the profile's (profiles.yml,
outputs.spark.server_side_parameters), read with the same environment variables, so a reader
opens the metastore and warehouse folder dbt writes. In one process, dbt-spark (method: session)
and these readers share one session; a second process cannot open the embedded metastore.
`spark_connect`: a session on a Spark Connect server (SWITCHYARD_SPARK_REMOTE), which dbt,
Dagster's runs and readers in any number of processes share. `serve_command` starts a local
one with the `spark` output's settings (`switchyard spark-connect`).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
import yaml  # type: ignore[import-untyped]

from switchyard.processes import stop_group
from switchyard.settings import PROJECT_DIR

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

TARGET_VARIABLE = "SWITCHYARD_TARGET"
REMOTE_VARIABLE = "SWITCHYARD_SPARK_REMOTE"
CONNECT_TARGET = "spark_connect"
SPARK_TARGETS = ("spark", CONNECT_TARGET)


def target(environ: Mapping[str, str] = os.environ) -> str:
    """The dbt target this process builds and reads: duckdb (the default) or spark."""
    return environ.get(TARGET_VARIABLE, "duckdb")


def require_shared_warehouse(what: str, environ: Mapping[str, str] = os.environ) -> None:
    """Stop `what` (a Dagster asset reading the warehouse beside dbt, in a process of its own)
    on the in-process `spark` target, whose embedded metastore one process holds at a time."""
    if target(environ) == "spark":
        raise RuntimeError(
            f"{what} reads the warehouse in a process of its own, and {TARGET_VARIABLE}=spark "
            "opens Spark inside one process only (an embedded metastore): serve Spark with "
            f"`switchyard spark-connect` and set {TARGET_VARIABLE}={CONNECT_TARGET} (and "
            f"{REMOTE_VARIABLE} if it is not at sc://127.0.0.1:15002), or use duckdb"
        )


def session_settings(
    environ: Mapping[str, str] = os.environ, output: str = "spark"
) -> dict[str, str]:
    """The `output`'s server_side_parameters, rendered as dbt renders them."""
    profile = yaml.safe_load((PROJECT_DIR / "profiles.yml").read_text())
    raw: dict[str, Any] = profile["switchyard"]["outputs"][output]["server_side_parameters"]

    def env_var(name: str, default: str | None = None) -> str:
        if name in environ:
            return environ[name]
        if default is None:
            raise KeyError(f"profiles.yml needs the environment variable {name}")
        return default

    render = jinja2.Environment(undefined=jinja2.StrictUndefined)
    settings = {k: render.from_string(str(v)).render(env_var=env_var) for k, v in raw.items()}
    # dbt-spark turns ANSI mode off on every statement; readers must parse SQL the same way.
    settings["spark.sql.ansi.enabled"] = "false"
    return settings


def spark_session(environ: Mapping[str, str] = os.environ) -> SparkSession:
    """The process's Spark session (created with the profile's settings if there is none): on
    the Spark Connect server for `spark_connect`, in this process otherwise."""
    from pyspark.sql import SparkSession

    output = CONNECT_TARGET if target(environ) == CONNECT_TARGET else "spark"
    builder = SparkSession.builder.enableHiveSupport()
    for key, value in session_settings(environ, output).items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def serve_command(port: int, environ: Mapping[str, str] = os.environ) -> list[str]:
    """A Spark Connect server on 127.0.0.1:`port`, in the foreground, with the `spark` output's
    settings (the same master, warehouse folder and metastore as the in-process session)."""
    import pyspark

    settings = session_settings(environ) | {
        "spark.sql.catalogImplementation": "hive",
        "spark.connect.grpc.binding.address": "127.0.0.1",
        "spark.connect.grpc.binding.port": str(port),
        # a client that ended without closing its session (a Dagster step's process) frees it
        "spark.connect.session.manager.defaultSessionTimeout": "15min",
    }
    submit = Path(pyspark.__file__).parent / "bin" / "spark-submit"
    confs = [part for key, value in settings.items() for part in ("--conf", f"{key}={value}")]
    return [str(submit), "--class", "org.apache.spark.sql.connect.service.SparkConnectServer",
            "--name", "switchyard-spark-connect", *confs, "spark-internal"]  # fmt: skip


@contextmanager
def serving(
    port: int, environ: Mapping[str, str] = os.environ, log: Path | None = None
) -> Iterator[str]:
    """A local Spark Connect server (serve_command) for the duration: its sc:// address, once
    it takes connections. Its output goes to `log` (else nowhere)."""
    address = f"sc://127.0.0.1:{port}"
    with open(log or os.devnull, "ab") as out:
        server = subprocess.Popen(
            serve_command(port, environ), env=dict(environ), stdout=out, stderr=out,
            start_new_session=True,  # spark-submit's children go with it
        )  # fmt: skip
    try:
        deadline = time.monotonic() + SERVER_START_SECONDS
        while not _listening(port):
            if server.poll() is not None:
                raise RuntimeError(
                    f"the Spark Connect server ended (exit code {server.returncode}) before it "
                    f"took connections on {address}" + (f"; its log: {log}" if log else "")
                )
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the Spark Connect server took no connections on {address} within "
                    f"{SERVER_START_SECONDS:g} s" + (f"; its log: {log}" if log else "")
                )
            time.sleep(0.2)
        yield address
    finally:
        _stop_remote_sessions()
        stop_group(server)


SERVER_START_SECONDS = 180.0  # a JVM on a busy two-core machine


def _stop_remote_sessions() -> None:
    """This process's sessions on a Spark Connect server, before the server stops: a client
    left open retries reaching it for minutes when the process exits."""
    try:
        from pyspark.sql.connect.session import SparkSession as RemoteSession
    except ImportError:  # the connect client is not installed: no session was opened
        return
    # the thread's active session, and the one getOrCreate made first (no public accessor)
    sessions = {RemoteSession.getActiveSession(), RemoteSession._get_default_session()}
    for session in sessions - {None}:
        session.stop()  # type: ignore[union-attr]


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0
