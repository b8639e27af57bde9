"""Resources read their configuration at run time, so one code base serves the embedded default
and production by environment alone."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg

from activations.channels import ChannelSettings
from sandbox import Sandbox
from switchyard.settings import Paths


class WarehouseResource(dg.ConfigurableResource):
    """Where the DuckDB file and landing folders are; unset fields fall back to SWITCHYARD_* env."""

    home: str | None = None
    landing_dir: str | None = None
    duckdb_path: str | None = None

    def paths(self) -> Paths:
        base = Paths.from_env()
        return Paths(
            home=Path(self.home) if self.home else base.home,
            landing=Path(self.landing_dir) if self.landing_dir else base.landing,
            duckdb=Path(self.duckdb_path) if self.duckdb_path else base.duckdb,
        )


class ChannelsResource(dg.ConfigurableResource):
    """Provider endpoints from SWITCHYARD_*_BASE_URL; with none set, a run starts the local
    sandbox for its duration and records what it accepted under the home folder."""

    @contextmanager
    def settings(self, record_dir: Path) -> Iterator[ChannelSettings]:
        configured = ChannelSettings.from_env()
        if configured is not None:
            yield configured
            return
        with Sandbox(record_file=record_dir / "received.jsonl") as sandbox:
            yield ChannelSettings.for_sandbox(sandbox.base_url)


def resources() -> dict[str, object]:
    return {"warehouse": WarehouseResource(), "channels": ChannelsResource()}
