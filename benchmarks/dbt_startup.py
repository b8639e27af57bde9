"""What a dbt invocation spends around its models, as each dbt step of a tier run pays it: `dbt run`
of one model as a subprocess (what dagster-dbt starts for a step, after `dbt --version`), beside
the same model through `switchyard-dbt` and its long-lived server (orchestration/dbt_server, what
the steps run now), and run by an in-process dbtRunner handed the manifest (the floor), measured
in the same run on the same warehouse file.

    python benchmarks/dbt_startup.py [--repeat N]

Prints, each the median of N invocations after one to warm up (default 5):
  cli_seconds             dbt's CLI as a subprocess, from start to exit;
  served_seconds          switchyard-dbt as a subprocess, its server already running;
  runner_seconds          the in-process invocation with the manifest given;
  model_seconds           the model's own time, as dbt reports it (the same in all three);
  startup_seconds         cli_seconds - runner_seconds: what a dbt CLI step pays around its models;
  served_startup_seconds  served_seconds - runner_seconds: what a served step still pays;
  version_cli_seconds     `dbt --version` (dagster-dbt asks it before each step);
  version_served_seconds  `switchyard-dbt --version`;
  import_seconds          `python -c "import dbt.cli.main"` alone: the part any new process pays.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))

from switchyard import landing  # noqa: E402

MODEL = "stg_preferences__consents"  # a view over landing files: no upstream table to build


def figure(name: str, value: float) -> None:
    print(f"{name}={value:.2f} s", flush=True)


def timed(work: Any) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def version_seconds(executable: Path) -> float:
    return timed(lambda: subprocess.run([str(executable), "--version"], check=True,
                                        capture_output=True))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed invocations of each kind")
    args = parser.parse_args()
    bin_dir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory(prefix="dbt-startup-") as tmp:
        home = Path(tmp)
        landing.ensure_layout(home / "landing")
        os.environ["SWITCHYARD_HOME"] = str(home)
        os.environ["SWITCHYARD_DBT_SERVER_IDLE_SECONDS"] = "30"  # the home is gone after this
        for name in ("SWITCHYARD_DUCKDB_PATH", "SWITCHYARD_LANDING_DIR"):
            os.environ.pop(name, None)
        flags = ["--project-dir", str(PROJECT_DIR), "--profiles-dir", str(PROJECT_DIR),
                 "--target-path", str(home / "target"), "--quiet"]  # fmt: skip
        command = [str(bin_dir / "dbt"), "run", "--select", MODEL, *flags]

        def cli() -> None:
            subprocess.run(command, check=True, cwd=PROJECT_DIR, capture_output=True)

        cli()  # writes the partial-parse file the later ones start from, as a tier's first does
        cli_seconds = [timed(cli) for _ in range(args.repeat)]

        def served() -> None:
            served_command = [str(bin_dir / "switchyard-dbt"), *command[1:]]
            subprocess.run(served_command, check=True, cwd=PROJECT_DIR, capture_output=True)

        served()  # starts this home's server
        served_seconds = [timed(served) for _ in range(args.repeat)]
        versions = {
            name: statistics.median(version_seconds(bin_dir / name) for _ in range(args.repeat))
            for name in ("dbt", "switchyard-dbt")
        }

        from dbt.cli.main import dbtRunner

        parsed = dbtRunner().invoke(["parse", *flags])
        if not parsed.success:
            raise RuntimeError(f"dbt parse failed: {parsed.exception}")
        runner = dbtRunner(manifest=parsed.result)
        model_seconds: list[float] = []

        def in_process() -> None:
            result = runner.invoke(["run", "--select", MODEL, *flags])
            if not result.success:
                raise RuntimeError(f"dbt run failed: {result.exception}")
            model_seconds.append(result.result.results[0].execution_time)

        in_process()
        runner_seconds = [timed(in_process) for _ in range(args.repeat)]
        import_seconds = [
            timed(
                lambda: subprocess.run([sys.executable, "-c", "import dbt.cli.main"], check=True)
            )  # fmt: skip
            for _ in range(args.repeat)
        ]
    cli_median = statistics.median(cli_seconds)
    runner_median = statistics.median(runner_seconds)
    served_median = statistics.median(served_seconds)
    figure("cli_seconds", cli_median)
    figure("served_seconds", served_median)
    figure("runner_seconds", runner_median)
    figure("model_seconds", statistics.median(model_seconds))
    figure("startup_seconds", cli_median - runner_median)
    figure("served_startup_seconds", served_median - runner_median)
    figure("version_cli_seconds", versions["dbt"])
    figure("version_served_seconds", versions["switchyard-dbt"])
    figure("import_seconds", statistics.median(import_seconds))


if __name__ == "__main__":
    main()
