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

import contextlib
import hashlib
import os
import re
import sys
import tempfile
from pathlib import Path

# The environment a parse depends on (env_var() in the project, the profile): a server holds the
# manifest of one such environment. Everything else a step sets (its target path, log format,
# indirect selection) is applied per invocation.
PARSE_ENV_PREFIXES = ("SWITCHYARD_",)
# dbt's: the secrets by prefix, the rest by exact name (DBT_TARGET_PATH, a folder of each step's
# own, must not key a server; DBT_ENGINE_*: dbt 1.11's names of the same settings)
PARSE_ENV_PREFIXES_DBT = ("DBT_ENV_SECRET_",)
PARSE_ENV_NAMES = frozenset(
    {
        "DBT_PROFILES_DIR",
        "DBT_PROJECT_DIR",
        "DBT_TARGET",
        "DBT_PROFILE",
        "DBT_ENGINE_PROFILES_DIR",
        "DBT_ENGINE_PROJECT_DIR",
        "DBT_ENGINE_TARGET",
        "DBT_ENGINE_PROFILE",
    }
)
# Arguments that change what the parse gives (or which project it is): dbt itself runs those.
PARSE_ARGS = ("--vars", "--target", "-t", "--profile", "--project-dir", "--profiles-dir")
# The project's files a parse reads: its folders (dbt's defaults, or dbt_project.yml's
# `<kind>-paths`), its own files and the profile.
DEFAULT_FOLDERS = {
    "model": ["models"],
    "macro": ["macros"],
    "test": ["tests"],
    "seed": ["seeds"],
    "snapshot": ["snapshots"],
    "analysis": ["analyses"],
    "function": ["functions"],
    "docs": [],
    "packages": ["dbt_packages"],
}
PROJECT_FILES = (
    "dbt_project.yml",
    "profiles.yml",
    "packages.yml",
    "dependencies.yml",
    "package-lock.yml",
)
# `<kind>-paths: [a, "b"]` in flow style (a block-style list is not read: dbt's defaults stand)
_PATHS = re.compile(r"^(\w+)-paths:\s*\[(.*)\]", re.M)
_INSTALL = re.compile(r"^packages-install-path:\s*[\"']?([^\"'\s#]+)", re.M)
IDLE_ENV = "SWITCHYARD_DBT_SERVER_IDLE_SECONDS"
SWITCH_ENV = "SWITCHYARD_DBT_SERVER"  # "off": every step runs the dbt executable itself
DEFAULT_IDLE_SECONDS = 600.0


def parse_env(env: dict[str, str]) -> dict[str, str]:
    return {
        k: v
        for k, v in env.items()
        if k.startswith(PARSE_ENV_PREFIXES)
        and k not in (IDLE_ENV, SWITCH_ENV)
        or k.startswith(PARSE_ENV_PREFIXES_DBT)
        or k in PARSE_ENV_NAMES
    }


def server_paths(project_dir: Path, env: dict[str, str]) -> tuple[Path, Path]:
    """(socket, lock) of the server for this project, interpreter and parse environment. In a
    folder of the temporary one that only this user can enter (a socket's path must be short,
    108 bytes, and a request carries the step's environment)."""
    key = repr((str(project_dir.resolve()), sys.executable, sorted(parse_env(env).items())))
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    folder = Path(tempfile.gettempdir()) / f"switchyard-dbt-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    if folder.stat().st_uid != os.getuid() or folder.stat().st_mode & 0o077:
        raise PermissionError(f"{folder} must be this user's alone (mode 700)")
    return folder / f"{digest}.sock", folder / f"{digest}.lock"


def project_fingerprint(project_dir: Path, profiles_dir: Path) -> tuple[tuple[str, int, int], ...]:
    """Every file a parse reads, with its size and time: a file added, changed, renamed or
    deleted gives another fingerprint."""
    files = [project_dir / name for name in PROJECT_FILES]
    files.append(profiles_dir / "profiles.yml")
    folders = dict(DEFAULT_FOLDERS)
    with contextlib.suppress(FileNotFoundError):
        text = (project_dir / "dbt_project.yml").read_text()
        for kind, listed in _PATHS.findall(text):
            folders[kind] = [i.strip().strip("\"'") for i in listed.split(",") if i.strip()]
        if installed := _INSTALL.search(text):
            folders["packages"] = [installed.group(1)]
    for folder in (f for listed in folders.values() for f in listed):
        files.extend(p for p in (project_dir / folder).rglob("*") if p.is_file())
    found = []
    for path in sorted(set(files)):
        try:
            stat = path.stat()
        except FileNotFoundError:
            continue
        found.append((str(path), stat.st_size, stat.st_mtime_ns))
    return tuple(found)


def real_dbt() -> Path:
    """The dbt executable installed beside this interpreter."""
    return Path(sys.executable).parent / "dbt"
