from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import stamina

from orchestration.dbt_project import ensure_manifest
from sandbox import Sandbox
from switchyard import landing
from switchyard.settings import Paths


@pytest.fixture(scope="session", autouse=True)
def dbt_manifest() -> Path:
    """dbt parse once per session (a no-op when the manifest is fresh)."""
    return ensure_manifest()


@pytest.fixture(autouse=True)
def sandbox_channels(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests choose the local sandbox explicitly, as `make demo` does; nothing else sets it."""
    monkeypatch.setenv("SWITCHYARD_CHANNELS", "sandbox")
    monkeypatch.delenv("SWITCHYARD_CHANNELS_BASE_URL", raising=False)


@pytest.fixture(autouse=True)
def fast_retries() -> Iterator[None]:
    # Backoffs off, attempts as configured: retry behaviour is tested, not waited for.
    with stamina.set_testing(True, attempts=5, cap=True):
        yield


def private_home(root: Path, monkeypatch: pytest.MonkeyPatch) -> Paths:
    """A private home: its own DuckDB file and landing folders, pinned in the environment."""
    p = Paths(home=root, landing=root / "landing", duckdb=root / "switchyard.duckdb")
    monkeypatch.setenv("SWITCHYARD_HOME", str(p.home))
    monkeypatch.setenv("SWITCHYARD_LANDING_DIR", str(p.landing))
    monkeypatch.setenv("SWITCHYARD_DUCKDB_PATH", str(p.duckdb))
    landing.ensure_layout(p.landing)
    return p


@pytest.fixture
def paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Paths:
    return private_home(tmp_path, monkeypatch)


@pytest.fixture(scope="module")
def module_paths(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Paths]:
    """One home shared by a module's tests, for fixtures that are slow to build."""
    with pytest.MonkeyPatch.context() as mp:
        yield private_home(tmp_path_factory.mktemp("home"), mp)


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    with Sandbox() as sb:
        monkeypatch.setenv("SWITCHYARD_CHANNELS_BASE_URL", sb.base_url)
        yield sb
