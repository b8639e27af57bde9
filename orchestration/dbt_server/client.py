"""`switchyard-dbt`: what dagster-dbt runs as its dbt executable. The invocation goes to the
project's dbt server (started here if none answers); its JSON log lines come back on stdout and
its exit code is ours. Where the server cannot serve (it will not start, or the command is about
the parse or the project's files: `--vars`, parse, deps, init, clean, debug) the real dbt runs
instead."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

from orchestration.dbt_server import PARSE_ARGS, SWITCH_ENV, real_dbt, server_paths

START_SECONDS = 60.0  # for a server to answer once started
STOP_SECONDS = 20.0  # for a stopped invocation to let go of the warehouse (dagster-dbt waits 25)
# commands the server leaves to the real dbt (parse: its point is the files it writes, the
# manifest and the partial-parse file, which a served invocation, handed the manifest, skips)
OWN_PROCESS = ("parse", "deps", "init", "clean", "--help", "-h")


def main() -> None:
    args = sys.argv[1:]
    if (
        os.environ.get(SWITCH_ENV) == "off"
        or set(args) & set(OWN_PROCESS)
        or any(a.startswith(PARSE_ARGS) for a in args)  # (--vars=..., -tprod as well)
    ):
        _run_real(args)
    if "--version" in args or "-v" in args[:1]:
        # what dagster-dbt asks each step (the real one takes ~1.7 s to import dbt to say it)
        print(f"Core:\n  - installed: {version('dbt-core')}")
        sys.exit(0)
    env = dict(os.environ)
    project = Path(env.get("DBT_PROJECT_DIR") or os.getcwd())
    try:
        conn = _connect(project, env)
    except OSError as failed:
        print(f"switchyard-dbt: no dbt server ({failed}); running dbt itself", file=sys.stderr)
        _run_real(args)
    code = _relay(conn, {"args": args, "env": env, "cwd": os.getcwd()})
    if code is None:  # the server was stopping and never took it: nothing ran
        _run_real(args)
    sys.exit(code)


class Stopping:
    """A SIGINT or SIGTERM (the step cancelled): the server asked once to stop the invocation,
    and STOP_SECONDS given for it to say it has."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn
        self.asked = False
        signal.signal(signal.SIGINT, self.ask)
        signal.signal(signal.SIGTERM, self.ask)

    def ask(self, signum: int, frame: object) -> None:
        if self.asked:
            return
        self.asked = True
        with contextlib.suppress(OSError):
            self.conn.sendall(b"C")
        signal.signal(signal.SIGALRM, lambda *_: os._exit(2))
        signal.alarm(int(STOP_SECONDS))


def _run_real(args: list[str]) -> None:
    os.execv(real_dbt(), [str(real_dbt()), *args])


def _connect(project: Path, env: dict[str, str]) -> socket.socket:
    path, lock_path = server_paths(project, env)
    try:
        return _open(path)
    except OSError:
        pass
    with lock_path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one client starts it; the others wait, then connect
        try:
            return _open(path)
        except OSError:
            pass
        # its own messages only: dbt's log lines go to each client and each invocation's log
        log = path.with_suffix(".log").open("ab")
        subprocess.Popen(
            [sys.executable, "-m", "orchestration.dbt_server.server", str(path), str(project)],
            cwd=project, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=log, start_new_session=True,  # outlives this step: the next ones use it
        )  # fmt: skip
        deadline = time.monotonic() + START_SECONDS
        while True:
            try:
                return _open(path)
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)


def _open(path: Path) -> socket.socket:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(str(path))
    except OSError:
        conn.close()
        raise
    return conn


def _relay(conn: socket.socket, request: dict[str, object]) -> int | None:
    """Send the invocation, print its log lines as they come: its exit code (2 if the server
    went away before saying it, as dbt's own for an error it did not handle; None if it went
    away without a word and was not asked to stop: it never ran it). A SIGINT or SIGTERM (the
    step cancelled) asks the server to stop the invocation, and its end is still waited for
    (Stopping): the step ends once the warehouse is let go of, not before."""
    heard = False
    with conn, conn.makefile("rb") as answers:
        conn.sendall(json.dumps(request).encode() + b"\n")
        stopping = Stopping(conn)
        try:
            for raw in answers:
                heard = True
                line = raw.decode()
                if line.startswith("X "):
                    return int(line[2:])
                sys.stdout.write(line[2:])
                sys.stdout.flush()
        except OSError:  # the server ended (reset)
            pass
    signal.alarm(0)
    if not heard and not stopping.asked:
        return None
    print("switchyard-dbt: the dbt server stopped before the invocation ended", file=sys.stderr)
    return 2


if __name__ == "__main__":
    main()
