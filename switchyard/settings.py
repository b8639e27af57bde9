"""Where things live, read from the environment at call time (never at import time)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Paths:
    """The embedded default's files: a DuckDB file and landing folders, all under one home."""

    home: Path
    landing: Path
    duckdb: Path

    @classmethod
    def from_env(cls) -> Paths:
        """A relative path is relative to the project folder, where dbt runs and resolves it too
        (profiles.yml and the sources read the same variables with the same defaults)."""

        def at(variable: str, default: Path) -> Path:
            value = os.environ.get(variable)
            return (PROJECT_DIR / value).resolve() if value else default.resolve()

        home = at("SWITCHYARD_HOME", PROJECT_DIR / "var")
        landing = at("SWITCHYARD_LANDING_DIR", home / "landing")
        duckdb = at("SWITCHYARD_DUCKDB_PATH", home / "switchyard.duckdb")
        return cls(home=home, landing=landing, duckdb=duckdb)

    def export(self) -> None:
        """Pin these paths in the environment so dbt subprocesses and Dagster steps agree."""
        os.environ["SWITCHYARD_HOME"] = str(self.home)
        os.environ["SWITCHYARD_LANDING_DIR"] = str(self.landing)
        os.environ["SWITCHYARD_DUCKDB_PATH"] = str(self.duckdb)
