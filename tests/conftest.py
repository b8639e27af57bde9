from __future__ import annotations

import os
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import stamina

from orchestration.dbt_project import ensure_manifest, switchyard_dbt
from orchestration.dbt_server import IDLE_ENV
from sandbox import Sandbox
from switchyard import landing
from switchyard.settings import PROJECT_DIR, Paths
from tests import parity_build
from tests.dbt_helpers import TESTS_TARGET_PREFIX


def is_worker(config: pytest.Config) -> bool:
    """One of pytest-xdist's workers (`make test` runs two, `-n 2`), not the session leading
    them or a session without workers."""
    return hasattr(config, "workerinput")


def pytest_sessionstart(session: pytest.Session) -> None:
    """Once per `pytest`, before any worker starts: the target folders an earlier session's
    tests left (tests/dbt_helpers.py) cleared, and dbt parse (a no-op when the manifest is
    fresh). A worker doing it would clear the folders the other's tests are using."""
    if is_worker(session.config):
        return
    for old in (PROJECT_DIR / "target").glob(f"{TESTS_TARGET_PREFIX}*"):
        shutil.rmtree(old, ignore_errors=True)
    ensure_manifest()


@pytest.fixture(scope="session", autouse=True)
def dbt_manifest() -> Path:
    return switchyard_dbt.manifest_path  # parsed before any test ran (pytest_sessionstart)


@pytest.fixture(scope="session", autouse=True)
def no_dbt_log_file() -> None:
    """dbt's debug log file (logs/dbt.log) off in tests: writing it was about a seventh of a
    test dbt server's busy time (py-spy), on a suite bound by its two cores. Set
    DBT_LOG_LEVEL_FILE=debug to have it back while looking into a failure."""
    os.environ.setdefault("DBT_LOG_LEVEL_FILE", "none")


@pytest.fixture(scope="session", autouse=True)
def short_lived_dbt_servers() -> None:
    """A test home's dbt server (orchestration/dbt_server) stops soon after its last step, not
    the ten minutes an operator's does."""
    os.environ[IDLE_ENV] = "30"


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


@pytest.fixture(scope="session")
def homes_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("homes")


def fresh_home(root: Path, slot: str) -> Path:
    """An empty home at the path `slot` reuses. dbt parses the whole project again (about 5 s
    here) whenever the profile's DuckDB path differs from its last run's: tests that take turns
    in one folder keep its partial parse."""
    folder = root / slot
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def private_home(root: Path, monkeypatch: pytest.MonkeyPatch) -> Paths:
    """A private home: its own DuckDB file and landing folders, pinned in the environment."""
    p = Paths(home=root, landing=root / "landing", duckdb=root / "switchyard.duckdb")
    monkeypatch.setenv("SWITCHYARD_HOME", str(p.home))
    monkeypatch.setenv("SWITCHYARD_LANDING_DIR", str(p.landing))
    monkeypatch.setenv("SWITCHYARD_DUCKDB_PATH", str(p.duckdb))
    landing.ensure_layout(p.landing)
    return p


@pytest.fixture
def paths(homes_root: Path, monkeypatch: pytest.MonkeyPatch) -> Paths:
    return private_home(fresh_home(homes_root, "test"), monkeypatch)


def is_parity(item: pytest.Item) -> bool:
    return item.path.name == parity_build.MODULE


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The engine parity tests' Spark build (parity_build) runs beside other tests. Without
    workers, the session starts it and runs the parity tests last. With workers (`--dist
    loadfile`: a file's tests on one worker), they go first: the worker that takes them builds
    and waits while the other runs the rest. Then the files with the most tests marked `slow`,
    then the most tests, so that the long ones do not start last (the order must be the same on
    every worker)."""
    if not is_worker(config):
        items.sort(key=is_parity)
        return
    sizes = Counter(item.path for item in items)
    slow = Counter(item.path for item in items if item.get_closest_marker("slow"))
    items.sort(
        key=lambda item: (not is_parity(item), -slow[item.path], -sizes[item.path], str(item.path))
    )


@pytest.fixture(scope="session", autouse=True)
def parity_started(request: pytest.FixtureRequest) -> None:
    if not is_worker(request.config) and any(is_parity(i) for i in request.session.items):
        request.getfixturevalue("parity")


@pytest.fixture(scope="session")
def parity(
    dbt_manifest: Path, homes_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[parity_build.ParityBuild]:
    with pytest.MonkeyPatch.context() as mp:
        paths = private_home(fresh_home(homes_root, "parity"), mp)
        build = parity_build.start(paths, tmp_path_factory.mktemp("parity"))
    yield build
    if build.spark.poll() is None:  # the session ended before the parity tests waited
        build.spark.kill()
        build.spark.communicate()


@pytest.fixture(scope="module")
def module_paths(homes_root: Path) -> Iterator[Paths]:
    """One home shared by a module's tests, for fixtures that are slow to build."""
    with pytest.MonkeyPatch.context() as mp:
        yield private_home(fresh_home(homes_root, "module"), mp)


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    with Sandbox() as sb:
        monkeypatch.setenv("SWITCHYARD_CHANNELS_BASE_URL", sb.base_url)
        yield sb


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium (Debian's package, which `make test` installs) driven by Playwright."""
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        if os.environ.get("CI"):
            pytest.fail("Chromium is missing: `make test` installs Debian's chromium package")
        pytest.skip("no chromium on PATH (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield launched
        launched.close()
