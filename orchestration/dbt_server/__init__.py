"""A long-lived dbt for the tiers' dbt steps: one server process per project and environment keeps
dbt imported and the manifest parsed; `switchyard-dbt` (the executable dagster-dbt starts for
each step) hands it the invocation and relays dbt's JSON log lines and exit code, so that a step
pays a small client's start instead of dbt's imports, `dbt --version` and the manifest load
(benchmarks/dbt_startup.py). Kept apart from dagster (stdlib only): the client must start fast.

    client.py   the executable: answers --version, else asks the server (starting it if none
                answers), or runs the real dbt when the server cannot be used
    server.py   one invocation at a time, in-process (dbtRunner with the manifest it holds)
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from pathlib import Path

# The environment a parse depends on (env_var() in the project, the profile): a server holds the
# manifest of one such environment. Everything else a step sets (its target path, log format,
# indirect selection) is applied per invocation.
PARSE_ENV_PREFIXES = ("SWITCHYARD_",)
PARSE_ENV_NAMES = ("DBT_PROFILES_DIR", "DBT_PROJECT_DIR", "DBT_ENV_SECRET_")
IDLE_ENV = "SWITCHYARD_DBT_SERVER_IDLE_SECONDS"
SWITCH_ENV = "SWITCHYARD_DBT_SERVER"  # "off": every step runs the dbt executable itself
DEFAULT_IDLE_SECONDS = 600.0


def parse_env(env: dict[str, str]) -> dict[str, str]:
    return {
        k: v
        for k, v in env.items()
        if k.startswith(PARSE_ENV_PREFIXES)
        and k not in (IDLE_ENV, SWITCH_ENV)
        or k.startswith(PARSE_ENV_NAMES)
    }


def server_paths(project_dir: Path, env: dict[str, str]) -> tuple[Path, Path]:
    """(socket, lock) of the server for this project, interpreter and parse environment. In the
    temporary folder: a socket's path must be short (108 bytes)."""
    key = repr((str(project_dir.resolve()), sys.executable, sorted(parse_env(env).items())))
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    base = Path(tempfile.gettempdir()) / f"switchyard-dbt-{os.getuid()}-{digest}"
    return base.with_suffix(".sock"), base.with_suffix(".lock")


def real_dbt() -> Path:
    """The dbt executable installed beside this interpreter."""
    return Path(sys.executable).parent / "dbt"
