"""Child processes run in a group of their own (`start_new_session=True`): stopping one stops
whatever it started too (a launcher script's JVM, a server's workers)."""

from __future__ import annotations

import os
import signal
import subprocess
from typing import Any


def stop_group(
    process: subprocess.Popen[Any], first: signal.Signals = signal.SIGTERM, grace: float = 30.0
) -> None:
    """`first` to the process's group, then SIGKILL if it has not ended within `grace` s."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, first)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
