"""The dbt server: dbt imported once, the manifest parsed once (again when a file of the project
changes), each invocation run in-process by a dbtRunner handed that manifest.

    python -m orchestration.dbt_server.server SOCKET PROJECT_DIR

One invocation at a time (dbt in-process is not made for two; the warehouse pool runs one dbt
step at a time anyway), each under the environment and working folder its client sent. The
client's JSON log lines go back as dbt's CLI would print them (`L <line>`), then `X <exit code>`
(0 success, 1 a model or test failed, 2 an error, as dbt's CLI). A client that asks to stop (its
step cancelled: `C`) or goes away stops the invocation as Ctrl-C stops dbt's CLI: the running
queries are cancelled, and the warehouse is let go of before the client hears the exit code (an
invocation still going STOP_GRACE_SECONDS later ends the server's process, which frees it).
The server stops after IDLE seconds without a request, or when its socket file is gone.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import shutil
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from orchestration.dbt_server import (
    DEFAULT_IDLE_SECONDS,
    IDLE_ENV,
    parse_env,
    project_fingerprint,
)

LEVELS = {"debug": 0, "info": 1, "warn": 2, "error": 3}


STOP_GRACE_SECONDS = 10.0  # for a stopped invocation to end before the process does


class Invocation:
    """One client's invocation: what it asked for and how it stands."""

    def __init__(self, conn: socket.socket, answers: Any) -> None:
        self.conn, self.answers = conn, answers
        self.disconnected = threading.Event()  # the client went away: nothing more to send
        self.stop = threading.Event()  # asked to stop (`C`), or went away
        self.done = threading.Event()  # ended, the warehouse let go of

    def send(self, line: str) -> None:
        if not self.disconnected.is_set():
            try:
                self.conn.sendall(line.encode())
            except OSError:
                self.disconnected.set()


class Server:
    def __init__(self, socket_path: Path, project_dir: Path) -> None:
        from dbt.cli.main import dbtRunner  # the import every step would otherwise pay

        self.runner_class = dbtRunner
        self.socket_path = socket_path
        self.target = socket_path.with_suffix(".target")  # the server's own parse
        self.project_dir = project_dir
        self.manifest: Any = None
        self.parsed: tuple[Any, dict[str, str]] | None = None  # (project files, parse env)
        self.idle_seconds = float(os.environ.get(IDLE_ENV, DEFAULT_IDLE_SECONDS))
        # The invocation in dbt's hands now, if any: only it may be stopped (never the cleanup
        # after it, nor the next one).
        self.running: Invocation | None = None
        self.running_lock = threading.Lock()

    def serve(self) -> None:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.socket_path.unlink(missing_ok=True)  # a server that died left it
        listener.bind(str(self.socket_path))
        listener.listen(16)
        listener.settimeout(1.0)
        inode = self.socket_path.stat().st_ino
        last = time.monotonic()
        try:
            while time.monotonic() - last < self.idle_seconds and _same(self.socket_path, inode):
                try:
                    conn, _ = listener.accept()
                except TimeoutError:
                    continue
                with conn:
                    conn.settimeout(None)
                    try:
                        self.handle(conn)
                    except (Exception, KeyboardInterrupt) as failed:  # the next one is served
                        print(f"a request failed: {failed!r}", file=sys.stderr)
                last = time.monotonic()
        finally:
            # Gone from the path first: a client connecting now starts a new server (one waiting
            # in the backlog hears nothing and runs dbt itself).
            if _same(self.socket_path, inode):
                self.socket_path.unlink(missing_ok=True)
            listener.close()
            shutil.rmtree(self.target, ignore_errors=True)

    def handle(self, conn: socket.socket) -> None:
        answers = conn.makefile("rb")
        try:
            request = json.loads(answers.readline())
            args: list[str] = request["args"]
            env: dict[str, str] = request["env"]
            cwd: str = request["cwd"]
        except (ValueError, KeyError, TypeError, OSError):
            return  # a client that left before asking, or not one of ours
        os.environ.clear()
        os.environ.update(env)
        os.chdir(cwd)
        debug = "--debug" in args or "debug" in args
        invocation = Invocation(conn, answers)

        def emit(msg: Any) -> None:
            from dbt_common.events.functions import msg_to_json

            if debug or LEVELS.get(msg.info.level, 1) >= LEVELS["info"]:
                invocation.send("L " + msg_to_json(msg).replace("\n", " ") + "\n")

        threading.Thread(target=self._stop_when_asked, args=(invocation,), daemon=True).start()
        code = 2
        try:
            code = self._invoke(args, emit, invocation)
        finally:
            with self.running_lock:
                self.running = None
            _let_go_of_the_warehouse()
            invocation.done.set()
        invocation.send(f"X {code}\n")

    def _invoke(self, args: list[str], emit: Any, invocation: Invocation) -> int:
        """The invocation's exit code. Nothing of it (its result, an exception's frames) outlives
        this call: a DuckDB connection they still held would keep the file locked."""
        try:
            runner = self.runner_class(manifest=self.current_manifest(), callbacks=[emit])
            with self.running_lock:
                if invocation.stop.is_set():  # stopped while the project was parsed
                    print(f"invocation {args} stopped before it ran", file=sys.stderr)
                    return 2
                self.running = invocation
            result = runner.invoke(args)
            with self.running_lock:
                self.running = None
            if result.exception is not None:
                print(f"invocation {args} failed: {result.exception!r}", file=sys.stderr)
            return 0 if result.success else (2 if result.exception is not None else 1)
        except BaseException as failed:  # a parse error, a stop: the client hears of it
            print(f"invocation {args} failed: {failed!r}", file=sys.stderr)
            return 2

    def _stop_when_asked(self, invocation: Invocation) -> None:
        """The client sends nothing after its request but a stop (`C`, its step cancelled), or
        goes away (killed). Either stops the invocation as Ctrl-C stops dbt's CLI, and more
        surely: its queries cancelled (again and again: a node may open its connection after
        the first time), dbt interrupted (a SIGINT to this process), and past STOP_GRACE_SECONDS
        (Python work nothing interrupts) this process ended, which frees the warehouse."""
        with contextlib.suppress(OSError, ValueError):
            if not invocation.answers.read(1):
                invocation.disconnected.set()
        if invocation.done.is_set():
            return
        invocation.stop.set()
        deadline = None
        while not invocation.done.wait(0.2):
            with self.running_lock:
                if self.running is not invocation:
                    continue  # not in dbt's hands yet (parsing), or out of them already
                _cancel_queries()
                if deadline is None:
                    deadline = time.monotonic() + STOP_GRACE_SECONDS
                    os.kill(os.getpid(), signal.SIGINT)
            if time.monotonic() > deadline:
                print("a stopped invocation went on: the server ends", file=sys.stderr, flush=True)
                os._exit(3)

    def current_manifest(self) -> Any:
        """The project parsed under this environment; parsed again when a file of the project
        or the profile was added, changed, renamed or deleted, or the parse environment differs
        (a server serves one, but it is checked)."""
        profiles = Path(os.environ.get("DBT_PROFILES_DIR") or self.project_dir)
        state = (project_fingerprint(self.project_dir, profiles), parse_env(dict(os.environ)))
        if self.manifest is None or self.parsed != state:
            parsed = self.runner_class().invoke(
                ["parse", "--target-path", str(self.target), "--quiet"]
            )
            if not parsed.success:
                raise RuntimeError(f"dbt parse failed: {parsed.exception}")
            self.manifest, self.parsed = parsed.result, state
        return self.manifest


def _cancel_queries() -> None:
    """Cancel every query dbt's adapters are running (DuckDB: interrupted)."""
    from dbt.adapters.factory import FACTORY

    for adapter in list(FACTORY.adapters.values()):
        manager = adapter.connections
        for connection in list(manager.thread_connections.values()):
            try:
                manager.cancel(connection)
            except Exception as failed:  # noqa: BLE001 - a connection not open, gone: go on
                print(f"could not cancel {connection.name}: {failed!r}", file=sys.stderr)


def _let_go_of_the_warehouse() -> None:
    """Close what the invocation opened, as the end of dbt's process would: dbt-duckdb keeps its
    database open for the process (a leftover handle keeps it from closing at the end of an
    invocation), which would hold DuckDB's file lock against the activations and readers
    between steps (docs/architecture.md, rule 6). A stop arriving meanwhile does not cut it
    short."""
    while True:
        try:
            _close_connections()
            gc.collect()  # what a stopped invocation's exception kept (its frames' connections)
            return
        except KeyboardInterrupt:
            continue


def _close_connections() -> None:
    from dbt.adapters.factory import cleanup_connections, reset_adapters

    cleanup_connections()
    reset_adapters()
    try:
        from dbt.adapters.duckdb.connections import DuckDBConnectionManager
    except ImportError:  # another adapter: its connections closed above
        return
    with DuckDBConnectionManager._LOCK:
        environment, DuckDBConnectionManager._ENV = DuckDBConnectionManager._ENV, None
    if environment is not None:
        environment.close()


def _same(path: Path, inode: int) -> bool:
    try:
        return path.stat().st_ino == inode
    except FileNotFoundError:
        return False


def main() -> None:
    socket_path, project_dir = Path(sys.argv[1]), Path(sys.argv[2])
    Server(socket_path, project_dir).serve()


if __name__ == "__main__":
    main()
