"""Where a sync's destination is and how fast it may be called, from the environment at run time.

SWITCHYARD_CHANNELS chooses, as for the channels: `sandbox` (the local sandbox plays every
platform, at SWITCHYARD_CHANNELS_BASE_URL or one started for the run) or `providers`, with:

  braze       SWITCHYARD_BRAZE_REST_ENDPOINT (your instance's, https://rest.iad-01.braze.com, ...)
              SWITCHYARD_BRAZE_API_KEY (a REST API key with users.track and users.delete)
  customerio  SWITCHYARD_CUSTOMERIO_SITE_ID, SWITCHYARD_CUSTOMERIO_API_KEY (Track API);
              SWITCHYARD_CUSTOMERIO_TRACK_URL (default https://track.customer.io; EU:
              https://track-eu.customer.io)
  iterable    SWITCHYARD_ITERABLE_API_KEY (server-side); SWITCHYARD_ITERABLE_BASE_URL (default
              https://api.iterable.com; EU: https://api.eu.iterable.com)
  airship     SWITCHYARD_AIRSHIP_TOKEN (a bearer token); SWITCHYARD_AIRSHIP_BASE_URL (default
              https://go.urbanairship.com; EU: https://go.airship.eu)

and for each, SWITCHYARD_<DESTINATION>_RATE_LIMIT (requests per window as N/SECONDS; defaults:
Braze 3000/3, its /users/track default; Iterable 10/1; Customer.io and Airship 100/1; the
endpoints a platform limits apart keep their own windows, braze.py and iterable.py) and
SWITCHYARD_<DESTINATION>_CONCURRENCY (requests in flight, default 4).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from activations.channels.settings import (
    SANDBOX_URL_VARIABLE,
    ChannelSettingsError,
    channel_mode,
)
from activations.syncs.airship import AirshipDestination
from activations.syncs.braze import BrazeDestination
from activations.syncs.customerio import CustomerIoDestination
from activations.syncs.destination import HttpDestination, RequestWindow
from activations.syncs.iterable import IterableDestination
from sandbox.credentials import SANDBOX_CREDENTIALS

Factory = Callable[[str, dict[str, str], RequestWindow, int], HttpDestination]


@dataclass(frozen=True)
class DestinationSettings:
    default_rate: str
    default_url: str | None  # None: the URL is the user's own (Braze's instance)
    url_variable: str
    needs: tuple[str, ...]  # credentials, by variable
    sandbox: dict[str, str]  # the same credentials, as the sandbox accepts them
    build: Factory


DESTINATIONS: dict[str, DestinationSettings] = {
    "braze": DestinationSettings(
        "3000/3",
        None,
        "SWITCHYARD_BRAZE_REST_ENDPOINT",
        ("SWITCHYARD_BRAZE_API_KEY",),
        {"SWITCHYARD_BRAZE_API_KEY": SANDBOX_CREDENTIALS.braze_api_key},
        lambda url, c, w, n: BrazeDestination(url, c["SWITCHYARD_BRAZE_API_KEY"], w, concurrency=n),
    ),
    "customerio": DestinationSettings(
        "100/1",
        "https://track.customer.io",
        "SWITCHYARD_CUSTOMERIO_TRACK_URL",
        ("SWITCHYARD_CUSTOMERIO_SITE_ID", "SWITCHYARD_CUSTOMERIO_API_KEY"),
        {
            "SWITCHYARD_CUSTOMERIO_SITE_ID": SANDBOX_CREDENTIALS.customerio_site_id,
            "SWITCHYARD_CUSTOMERIO_API_KEY": SANDBOX_CREDENTIALS.customerio_api_key,
        },
        lambda url, c, w, n: CustomerIoDestination(
            url,
            c["SWITCHYARD_CUSTOMERIO_SITE_ID"],
            c["SWITCHYARD_CUSTOMERIO_API_KEY"],
            w,
            concurrency=n,
        ),  # fmt: skip
    ),
    "iterable": DestinationSettings(
        "10/1",
        "https://api.iterable.com",
        "SWITCHYARD_ITERABLE_BASE_URL",
        ("SWITCHYARD_ITERABLE_API_KEY",),
        {"SWITCHYARD_ITERABLE_API_KEY": SANDBOX_CREDENTIALS.iterable_api_key},
        lambda url, c, w, n: IterableDestination(
            url, c["SWITCHYARD_ITERABLE_API_KEY"], w, concurrency=n
        ),
    ),
    "airship": DestinationSettings(
        "100/1",
        "https://go.urbanairship.com",
        "SWITCHYARD_AIRSHIP_BASE_URL",
        ("SWITCHYARD_AIRSHIP_TOKEN",),
        {"SWITCHYARD_AIRSHIP_TOKEN": SANDBOX_CREDENTIALS.airship_token},
        lambda url, c, w, n: AirshipDestination(
            url, c["SWITCHYARD_AIRSHIP_TOKEN"], w, concurrency=n
        ),
    ),
}


def request_window(env: Mapping[str, str], destination: str) -> RequestWindow:
    name = f"SWITCHYARD_{destination.upper()}_RATE_LIMIT"
    value = env.get(name, "").strip() or DESTINATIONS[destination].default_rate
    try:
        limit, seconds = value.split("/")
        return RequestWindow(int(limit), float(seconds))
    except ValueError as exc:
        raise ChannelSettingsError(
            f"{name} is {value!r}: write requests per window as N/SECONDS, for example 3000/3"
        ) from exc


def _concurrency(env: Mapping[str, str], destination: str) -> int:
    name = f"SWITCHYARD_{destination.upper()}_CONCURRENCY"
    value = env.get(name, "").strip() or "4"
    if not value.isdigit() or int(value) < 1:
        raise ChannelSettingsError(f"{name} is {value!r}: a whole number of requests, 1 or more")
    return int(value)


@contextmanager
def open_destination(
    destination: str, record_dir: Path, env: Mapping[str, str] | None = None
) -> Iterator[HttpDestination]:
    env = os.environ if env is None else env
    settings = DESTINATIONS.get(destination)
    if settings is None:
        raise ChannelSettingsError(f"no destination {destination!r}; known: {sorted(DESTINATIONS)}")
    window, concurrency = request_window(env, destination), _concurrency(env, destination)
    if channel_mode(env) == "providers":
        url = env.get(settings.url_variable) or settings.default_url
        missing = [n for n in settings.needs if not env.get(n)]
        missing += [settings.url_variable] if not url else []
        if missing:
            raise ChannelSettingsError(f"a {destination} sync needs {', '.join(missing)} set")
        assert url is not None
        credentials = {n: env[n] for n in settings.needs}
        with settings.build(url, credentials, window, concurrency) as client:
            yield client
        return
    if shared := env.get(SANDBOX_URL_VARIABLE):
        with settings.build(shared, settings.sandbox, window, concurrency) as client:
            yield client
        return
    from sandbox import Sandbox

    with (
        Sandbox(record_file=record_dir / "received.jsonl") as sandbox,
        settings.build(sandbox.base_url, settings.sandbox, window, concurrency) as client,
    ):
        yield client
