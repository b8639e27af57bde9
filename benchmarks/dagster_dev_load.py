"""How long `dagster dev -w workspace.yaml` takes to serve the project's code location, beside the
same command serving an empty code location (Dagster's own start-up) in the same run.

    python benchmarks/dagster_dev_load.py [--size N]   (N launches of each, default 3; medians)

Each launch is what `make dev` runs, in a fresh DAGSTER_HOME: the clock starts at launch and stops
when the webserver's GraphQL API reports every code location LOADED. Also timed: importing the
code location alone (`python -c "import orchestration.definitions"`), and the same for an empty
one. Prints dagster_dev_ready_seconds, empty_dagster_dev_ready_seconds, code_location_cost_seconds
(the difference), location_import_seconds and empty_import_seconds.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))

from orchestration.dev_server import dagster_dev  # noqa: E402

EMPTY_LOCATION = "import dagster as dg\n\ndefs = dg.Definitions()\n"


def figure(name: str, value: float, unit: str) -> None:
    print(f"{name}={value:.2f} {unit}", flush=True)


def ready_seconds(workspace: Path, home: Path) -> float:
    with tempfile.TemporaryDirectory(dir=home) as dagster_home:
        env = {"SWITCHYARD_HOME": str(home / "switchyard"), "SWITCHYARD_CHANNELS": "sandbox"}
        with dagster_dev(Path(dagster_home), env=env, workspace=workspace) as dev:
            return dev.ready_seconds


def import_seconds(module: str, cwd: Path) -> float:
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", f"import {module}"], cwd=cwd, check=True)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=3, help="launches of each (medians)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        empty = home / "empty"
        empty.mkdir()
        (empty / "empty_location.py").write_text(EMPTY_LOCATION)
        (empty / "workspace.yaml").write_text(
            "load_from:\n  - python_module:\n      module_name: empty_location\n"
            "      working_directory: .\n"
        )
        project, bare, project_import, bare_import = [], [], [], []
        for _ in range(args.size):  # alternated, so drift hits both alike
            project.append(ready_seconds(PROJECT_DIR / "workspace.yaml", home))
            bare.append(ready_seconds(empty / "workspace.yaml", home))
            project_import.append(import_seconds("orchestration.definitions", PROJECT_DIR))
            bare_import.append(import_seconds("empty_location", empty))
    figure("dagster_dev_ready_seconds", statistics.median(project), "s")
    figure("empty_dagster_dev_ready_seconds", statistics.median(bare), "s")
    figure("code_location_cost_seconds", statistics.median(project) - statistics.median(bare), "s")
    figure("location_import_seconds", statistics.median(project_import), "s")
    figure("empty_import_seconds", statistics.median(bare_import), "s")


if __name__ == "__main__":
    main()
