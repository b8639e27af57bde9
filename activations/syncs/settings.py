"""Where a sync's destination is and how fast it may be called, from the environment at run time.

SWITCHYARD_CHANNELS chooses, as for the channels: `sandbox` (the local sandbox plays Braze, at
SWITCHYARD_CHANNELS_BASE_URL or one started for the run) or `providers`:
  SWITCHYARD_BRAZE_REST_ENDPOINT  your instance's REST endpoint (https://rest.iad-01.braze.com, ...)
  SWITCHYARD_BRAZE_API_KEY        a REST API key with users.track and users.delete
  SWITCHYARD_BRAZE_RATE_LIMIT     requests per window, as N/SECONDS (default 3000/3, Braze's
                                  default for /users/track; raise it only with Braze's consent)
  SWITCHYARD_BRAZE_CONCURRENCY    requests in flight at once (default 4)
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from activations.channels.settings import (
    SANDBOX_URL_VARIABLE,
    ChannelSettingsError,
    channel_mode,
)
from activations.syncs.braze import BrazeDestination
from activations.syncs.destination import RequestWindow
from sandbox.credentials import SANDBOX_CREDENTIALS


def request_window(env: Mapping[str, str]) -> RequestWindow:
    value = env.get("SWITCHYARD_BRAZE_RATE_LIMIT", "").strip() or "3000/3"
    try:
        limit, seconds = value.split("/")
        return RequestWindow(int(limit), float(seconds))
    except ValueError as exc:
        raise ChannelSettingsError(
            f"SWITCHYARD_BRAZE_RATE_LIMIT is {value!r}: write requests per window as N/SECONDS, "
            "for example 3000/3"
        ) from exc


def _concurrency(env: Mapping[str, str]) -> int:
    value = env.get("SWITCHYARD_BRAZE_CONCURRENCY", "").strip() or "4"
    if not value.isdigit() or int(value) < 1:
        raise ChannelSettingsError(
            f"SWITCHYARD_BRAZE_CONCURRENCY is {value!r}: a whole number of requests, 1 or more"
        )
    return int(value)


@contextmanager
def open_destination(
    destination: str, record_dir: Path, env: Mapping[str, str] | None = None
) -> Iterator[BrazeDestination]:
    env = os.environ if env is None else env
    if destination != "braze":
        raise ChannelSettingsError(f"no settings for destination {destination!r}")
    window, concurrency = request_window(env), _concurrency(env)
    if channel_mode(env) == "providers":
        missing = [
            name
            for name in ("SWITCHYARD_BRAZE_REST_ENDPOINT", "SWITCHYARD_BRAZE_API_KEY")
            if not env.get(name)
        ]
        if missing:
            raise ChannelSettingsError(f"a Braze sync needs {', '.join(missing)} set")
        with BrazeDestination(
            env["SWITCHYARD_BRAZE_REST_ENDPOINT"],
            env["SWITCHYARD_BRAZE_API_KEY"],
            window,
            concurrency=concurrency,
        ) as braze:
            yield braze
        return
    key = SANDBOX_CREDENTIALS.braze_api_key
    if shared := env.get(SANDBOX_URL_VARIABLE):
        with BrazeDestination(shared, key, window, concurrency=concurrency) as braze:
            yield braze
        return
    from sandbox import Sandbox

    with (
        Sandbox(record_file=record_dir / "received.jsonl") as sandbox,
        BrazeDestination(sandbox.base_url, key, window, concurrency=concurrency) as braze,
    ):
        yield braze
