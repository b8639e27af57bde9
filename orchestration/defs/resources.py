"""Resources read their configuration at run time, so one code base serves the embedded default
and production by environment alone."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg

from activations.channels.settings import ChannelSettings, open_channels
from switchyard.settings import Paths


class WarehouseResource(dg.ConfigurableResource):
    """Where the DuckDB file and landing folders are: SWITCHYARD_HOME, SWITCHYARD_DUCKDB_PATH and
    SWITCHYARD_LANDING_DIR, the same variables dbt's profiles.yml and sources read. There is
    deliberately nothing to configure here: a path set only in Dagster would point the
    activations at one file and dbt at another. Set the variables for the code location instead.
    """

    def paths(self) -> Paths:
        return Paths.from_env()


class ChannelsResource(dg.ConfigurableResource):
    """Provider endpoints and credentials from SWITCHYARD_* (see activations/channels/settings.py):
    SWITCHYARD_CHANNELS=providers sends through SendGrid, Twilio and FCM; =sandbox through the
    local sandbox, which a run starts for its duration unless SWITCHYARD_CHANNELS_BASE_URL names
    one already running. Unset, a run stops with an error that says so."""

    @contextmanager
    def settings(self, record_dir: Path, channels: Iterable[str]) -> Iterator[ChannelSettings]:
        with open_channels(record_dir / "received.jsonl", channels) as settings:
            yield settings


def resources() -> dict[str, object]:
    return {"warehouse": WarehouseResource(), "channels": ChannelsResource()}
