"""The dbt project as Dagster sees it: manifest prepared once, not on every code-location load."""

from __future__ import annotations

from pathlib import Path

from dagster_dbt import DbtProject

from switchyard.settings import PROJECT_DIR

switchyard_dbt = DbtProject(project_dir=PROJECT_DIR, profiles_dir=PROJECT_DIR)


def _newest_source_mtime(root: Path) -> float:
    files = [root / "dbt_project.yml", *root.glob("models/**/*"), *root.glob("macros/**/*")]
    return max(f.stat().st_mtime for f in files if f.is_file())


def manifest_is_stale() -> bool:
    path = switchyard_dbt.manifest_path
    return not path.exists() or path.stat().st_mtime < _newest_source_mtime(PROJECT_DIR)


def ensure_manifest() -> Path:
    """`dbt parse` when the manifest is missing or older than the models (~5 s, then cached)."""
    if manifest_is_stale():
        switchyard_dbt.preparer.prepare(switchyard_dbt)
    return switchyard_dbt.manifest_path
