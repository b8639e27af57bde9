"""The dbt server: dbt imported once, the manifest parsed once (again when the project's files
change), each invocation run in-process by a dbtRunner handed that manifest.

    python -m orchestration.dbt_server.server SOCKET PROJECT_DIR

One invocation at a time (dbt in-process is not made for two; the warehouse pool runs one dbt
step at a time anyway), each under the environment and working folder its client sent. The
client's JSON log lines go back as dbt's CLI would print them (`L <line>`), then `X <exit code>`
(0 success, 1 a model or test failed, 2 an error, as dbt's CLI). A client that goes away (its
step cancelled) interrupts the invocation as Ctrl-C would, so that dbt lets go of the warehouse.
The server stops after IDLE seconds without a request, or when its socket file is gone.
"""

from __future__ import annotations

import _thread
import contextlib
import json
import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from orchestration.dbt_server import DEFAULT_IDLE_SECONDS, IDLE_ENV, parse_env

LEVELS = {"debug": 0, "info": 1, "warn": 2, "error": 3}


class Server:
    def __init__(self, socket_path: Path, project_dir: Path) -> None:
        from dbt.cli.main import dbtRunner  # the import every step would otherwise pay

        self.runner_class = dbtRunner
        self.socket_path = socket_path
        self.project_dir = project_dir
        self.manifest: Any = None
        self.parsed: tuple[float, dict[str, str]] | None = None  # (source mtime, parse env)
        self.idle_seconds = float(os.environ.get(IDLE_ENV, DEFAULT_IDLE_SECONDS))

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
                    # (an interrupt for a client that left just as its invocation ended)
                    with contextlib.suppress(KeyboardInterrupt):
                        self.handle(conn)
                last = time.monotonic()
        finally:
            listener.close()
            if _same(self.socket_path, inode):
                self.socket_path.unlink(missing_ok=True)

    def handle(self, conn: socket.socket) -> None:
        with conn.makefile("rb") as requests:
            request = json.loads(requests.readline())
        args: list[str] = request["args"]
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        debug = "--debug" in args or "debug" in args
        gone = threading.Event()

        def send(line: str) -> None:
            if not gone.is_set():
                try:
                    conn.sendall(line.encode())
                except OSError:
                    gone.set()

        def emit(msg: Any) -> None:
            from dbt_common.events.functions import msg_to_json

            if debug or LEVELS.get(msg.info.level, 1) >= LEVELS["info"]:
                send("L " + msg_to_json(msg).replace("\n", " ") + "\n")

        watcher = threading.Thread(target=_interrupt_when_gone, args=(conn, gone), daemon=True)
        watcher.start()
        try:
            manifest = self.current_manifest()
            result = self.runner_class(manifest=manifest, callbacks=[emit]).invoke(args)
            code = 0 if result.success else (2 if result.exception is not None else 1)
            if result.exception is not None:
                print(f"invocation {args} failed: {result.exception!r}", file=sys.stderr)
        except BaseException as failed:  # a parse error, an interrupt: the client hears of it
            print(f"invocation {args} failed: {failed!r}", file=sys.stderr)
            code = 2
        finally:
            _let_go_of_the_warehouse()
        send(f"X {code}\n")
        gone.set()  # the watcher's interrupt is for a running invocation only

    def current_manifest(self) -> Any:
        """The project parsed under this environment; parsed again when a file of the project
        changed or the parse environment differs (a server serves one, but it is checked)."""
        from orchestration.dbt_project import newest_source_mtime

        state = (newest_source_mtime(self.project_dir), parse_env(dict(os.environ)))
        if self.manifest is None or self.parsed != state:
            target = str(self.socket_path.with_suffix(".target"))
            parsed = self.runner_class().invoke(["parse", "--target-path", target, "--quiet"])
            if not parsed.success:
                raise RuntimeError(f"dbt parse failed: {parsed.exception}")
            self.manifest, self.parsed = parsed.result, state
        return self.manifest


def _let_go_of_the_warehouse() -> None:
    """Close what the invocation opened, as the end of dbt's process would: dbt-duckdb keeps its
    database open for the process (a leftover handle keeps it from closing at the end of an
    invocation), which would hold DuckDB's file lock against the activations and readers
    between steps (docs/architecture.md, rule 6)."""
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


def _interrupt_when_gone(conn: socket.socket, gone: threading.Event) -> None:
    """The client sends nothing after its request: end of stream means it went away (its step
    was cancelled or killed). dbt then stops as on Ctrl-C, closing its connections."""
    with contextlib.suppress(OSError):
        conn.recv(1)
    if not gone.is_set():
        gone.set()
        _thread.interrupt_main()


def main() -> None:
    socket_path, project_dir = Path(sys.argv[1]), Path(sys.argv[2])
    Server(socket_path, project_dir).serve()


if __name__ == "__main__":
    main()
