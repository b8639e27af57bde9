"""The dbt project as Dagster sees it: manifest prepared once, not on every code-location load."""

from __future__ import annotations

import logging
import os
import shutil
import sys
import uuid
from pathlib import Path

from dagster_dbt import DbtCliResource, DbtProject

from switchyard.settings import PROJECT_DIR

log = logging.getLogger(__name__)
switchyard_dbt = DbtProject(project_dir=PROJECT_DIR, profiles_dir=PROJECT_DIR)

# A tier's run builds a subset of the models. dbt's default (eager) would also run every test
# touching one of them, such as a test of another tier's audience against dim_people, on a
# table that run never builds (missing in a fresh warehouse). `buildable`: a test runs when
# each model it reads is selected or upstream of the selection. dagster-dbt passes this on,
# and overrides it where it selects tests one by one.
os.environ.setdefault("DBT_INDIRECT_SELECTION", "buildable")


def _newest_source_mtime(root: Path) -> float:
    files = [root / "dbt_project.yml", *root.glob("models/**/*"), *root.glob("macros/**/*")]
    return max(f.stat().st_mtime for f in files if f.is_file())


def manifest_is_stale() -> bool:
    path = switchyard_dbt.manifest_path
    return not path.exists() or path.stat().st_mtime < _newest_source_mtime(PROJECT_DIR)


def dbt_resource() -> DbtCliResource:
    # The long-lived dbt's client (orchestration/dbt_server) installed beside this interpreter,
    # so a venv works without being activated; else the dbt there, else dbt on the PATH.
    bin_dir = Path(sys.executable).parent
    found = [p for p in (bin_dir / "switchyard-dbt", bin_dir / "dbt") if p.exists()]
    return DbtCliResource(
        project_dir=switchyard_dbt, dbt_executable=str(found[0]) if found else "dbt"
    )


PARTIAL_PARSE_FILE = "partial_parse.msgpack"


def keep_partial_parse(invocation_target: Path) -> None:
    """dagster-dbt starts each dbt invocation from the project's partial-parse file, but never
    writes one back. dbt parses the whole project again (5 to 10 s here) when that file was saved
    under another profile (the DuckDB path is part of its check), so the first invocation in a
    new environment leaves its file for the next ones, replaced atomically."""
    fresh = invocation_target / PARTIAL_PARSE_FILE
    if not fresh.is_file():
        return
    # Where dagster-dbt looks for it: the project's target folder, whatever the working folder.
    kept = PROJECT_DIR / switchyard_dbt.target_path / PARTIAL_PARSE_FILE
    staged = kept.with_name(f".{PARTIAL_PARSE_FILE}.{uuid.uuid4().hex}")
    try:
        kept.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(fresh, staged)
        os.replace(staged, kept)
    except OSError as exc:  # only a cache: the next invocation parses in full, the build stands
        log.warning("could not keep dbt's partial-parse file for the next run: %s", exc)
        staged.unlink(missing_ok=True)


def ensure_manifest() -> Path:
    """`dbt parse` when the manifest is missing or older than the models (~5 s, then cached)."""
    if manifest_is_stale():
        dbt_resource().cli(["--quiet", "parse"], target_path=switchyard_dbt.target_path).wait()
    return switchyard_dbt.manifest_path
