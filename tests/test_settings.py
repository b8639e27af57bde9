"""Configuration that decides where messages go and when a run is: explicit, or a clear error."""

from __future__ import annotations

import json
import os
import re
import subprocess
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from activations.channels import Message
from activations.channels.settings import (
    ChannelSettings,
    ChannelSettingsError,
    DeliveryLimits,
    channel_mode,
    open_channels,
)
from orchestration.defs.resources import ChannelsResource, WarehouseResource
from switchyard import cli
from switchyard.clock import parse_utc
from switchyard.settings import PROJECT_DIR, Paths
from tests.dbt_helpers import DBT

PROVIDERS = {
    "SWITCHYARD_CHANNELS": "providers",
    "SWITCHYARD_SENDGRID_API_KEY": "SG.live",
    "SWITCHYARD_EMAIL_FROM": "hello@shop.example",
    "SWITCHYARD_TWILIO_ACCOUNT_SID": "AC" + "1" * 32,
    "SWITCHYARD_TWILIO_AUTH_TOKEN": "token",
    "SWITCHYARD_TWILIO_FROM": "+14155550100",
    "SWITCHYARD_FCM_PROJECT_ID": "shop",
    "SWITCHYARD_FCM_ACCESS_TOKEN": "ya29.live",
    "SWITCHYARD_WEBHOOK_URL": "https://hooks.shop.example/switchyard",
    "SWITCHYARD_WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
}


def test_without_a_channel_mode_a_run_stops_naming_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ChannelSettingsError, match="SWITCHYARD_CHANNELS is not set"):
        channel_mode({})
    # Neither the resource Dagster runs with nor a stray sandbox URL starts a sandbox silently.
    env_without_mode = {"SWITCHYARD_CHANNELS_BASE_URL": "http://127.0.0.1:8025"}
    with (
        pytest.raises(ChannelSettingsError, match="SWITCHYARD_CHANNELS"),
        open_channels(tmp_path / "r.jsonl", env=env_without_mode),
    ):
        pass


def test_the_resource_refuses_to_run_without_a_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SWITCHYARD_CHANNELS")
    with (
        pytest.raises(ChannelSettingsError, match="SWITCHYARD_CHANNELS"),
        ChannelsResource().settings(tmp_path, {"email"}),
    ):
        pass


def test_demo_without_a_mode_exits_before_doing_anything(
    paths: Paths, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("SWITCHYARD_CHANNELS")
    with pytest.raises(SystemExit) as stopped:
        cli.main(["demo", "--people", "10"])
    assert stopped.value.code == 2
    assert "SWITCHYARD_CHANNELS is not set" in capsys.readouterr().err
    assert not list(paths.landing.glob("segment/events/sample*"))


def test_the_demo_never_sends_its_sample_people_to_real_providers(
    paths: Paths, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in PROVIDERS.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as stopped:
        cli.main(["demo", "--people", "10"])
    assert stopped.value.code == 2
    assert "the demo sends to the local sandbox only" in capsys.readouterr().err
    assert not list(paths.landing.glob("segment/events/sample*"))


def test_providers_mode_names_every_missing_variable() -> None:
    with pytest.raises(ChannelSettingsError) as missing:
        ChannelSettings.from_env({"SWITCHYARD_CHANNELS": "providers"})
    for name in ("SENDGRID_API_KEY", "EMAIL_FROM", "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN",
                 "TWILIO_FROM", "FCM_SERVICE_ACCOUNT_FILE", "FCM_ACCESS_TOKEN", "WEBHOOK_URL",
                 "WEBHOOK_SECRET"):  # fmt: skip
        assert f"SWITCHYARD_{name}" in str(missing.value)
    # Only what the journey's channels need is asked for.
    with pytest.raises(ChannelSettingsError) as email_only:
        ChannelSettings.from_env({"SWITCHYARD_SENDGRID_API_KEY": "SG.x"}, channels={"email"})
    assert "SWITCHYARD_EMAIL_FROM" in str(email_only.value)
    assert "TWILIO" not in str(email_only.value)


def test_providers_mode_talks_to_the_providers_hosts() -> None:
    settings = ChannelSettings.from_env(PROVIDERS)
    requests = {
        channel: client.build_request(httpx.Client(), _message(channel))
        for channel, client in settings.clients().items()
    }
    assert {c: r.url.host for c, r in requests.items()} == {
        "email": "api.sendgrid.com",
        "sms": "api.twilio.com",
        "push": "fcm.googleapis.com",
        "webhook": "hooks.shop.example",
    }
    assert requests["email"].headers["authorization"] == "Bearer SG.live"


def test_a_webhook_secret_that_is_not_whsec_base64_is_refused_by_name() -> None:
    for secret in ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_not base64!"):
        with pytest.raises(ChannelSettingsError, match="SWITCHYARD_WEBHOOK_SECRET: .*whsec_"):
            ChannelSettings.from_env({**PROVIDERS, "SWITCHYARD_WEBHOOK_SECRET": secret})


def test_a_sandbox_url_with_providers_mode_is_a_contradiction() -> None:
    with pytest.raises(ChannelSettingsError, match="SWITCHYARD_CHANNELS=sandbox"):
        ChannelSettings.from_env({**PROVIDERS, "SWITCHYARD_CHANNELS_BASE_URL": "http://x"})


def test_sandbox_mode_uses_the_named_sandbox_or_starts_one(tmp_path: Path) -> None:
    named = {"SWITCHYARD_CHANNELS": "sandbox", "SWITCHYARD_CHANNELS_BASE_URL": "http://127.0.0.1:1"}
    with open_channels(tmp_path / "r.jsonl", env=named) as settings:
        assert settings.email and settings.email.base_url == "http://127.0.0.1:1"
    with open_channels(tmp_path / "r.jsonl", env={"SWITCHYARD_CHANNELS": "sandbox"}) as settings:
        assert settings.email
        assert httpx.get(f"{settings.email.base_url}/_sandbox/messages").json() == []


def _message(channel: str) -> Message:
    recipient = {"email": "a@example.com", "sms": "+14155550123", "push": "tok", "webhook": "p-1"}[
        channel
    ]
    return Message("k", channel, recipient, "body", subject="s", title="t")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2026-11-24T10:00", datetime(2026, 11, 24, 10, 0)),
        ("2026-11-24T10:00Z", datetime(2026, 11, 24, 10, 0)),
        ("2026-11-24T12:30+02:00", datetime(2026, 11, 24, 10, 30)),
        ("2026-11-24 05:00:00-05:00", datetime(2026, 11, 24, 10, 0)),
    ],
)
def test_any_iso_time_is_read_as_utc(text: str, expected: datetime) -> None:
    assert parse_utc(text) == expected
    assert cli._utc_time(text) == expected


def test_a_bad_time_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        cli.main(["demo", "--now", "next tuesday"])
    assert stopped.value.code == 2
    assert "not an ISO 8601 time: 'next tuesday'" in capsys.readouterr().err


def test_warehouse_paths_are_the_ones_dbt_reads(paths: Paths) -> None:
    # Nothing configurable on the resource could point it elsewhere than dbt's profile.
    assert WarehouseResource.model_fields == {}
    assert WarehouseResource().paths() == paths == Paths.from_env()


def test_switchyard_home_alone_points_python_and_dbt_at_the_same_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A relative home, and Python started from another folder: dbt (run in the project folder,
    # as Dagster runs it) and the activations still agree on both files.
    for name in ("SWITCHYARD_DUCKDB_PATH", "SWITCHYARD_LANDING_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SWITCHYARD_HOME", "var/test-relative-home")
    monkeypatch.chdir(tmp_path)
    paths = WarehouseResource().paths()
    assert paths.home == PROJECT_DIR / "var" / "test-relative-home"
    env = {**os.environ, "DBT_TARGET_PATH": str(tmp_path / "target")}  # not the project's manifest

    def dbt(*args: str, check: bool = True) -> str:
        done = subprocess.run(
            [DBT, *args, "--project-dir", str(PROJECT_DIR), "--profiles-dir", str(PROJECT_DIR)],
            capture_output=True, text=True, cwd=PROJECT_DIR, env=env, check=check,
        )  # fmt: skip
        return done.stdout

    # (its connection check fails: the folder does not exist; the profile is what matters)
    debug = dbt("debug", check=False)
    (printed,) = re.findall(r"^\S*\s+path: (\S+)$", debug, flags=re.MULTILINE)
    assert (PROJECT_DIR / printed).resolve() == paths.duckdb
    listed = dbt("ls", "-s", "source:preferences.consents", "--output", "json",
                 "--output-keys", "meta", "--quiet")  # fmt: skip
    location = json.loads(listed.strip().splitlines()[-1])["meta"]["external_location"]
    (folder,) = re.findall(r"read_json\('([^']+)/preferences/consents/\*\.jsonl'", location)
    assert (PROJECT_DIR / folder).resolve() == paths.landing


def test_delivery_limits_per_channel_from_settings() -> None:
    limits = DeliveryLimits.from_env(
        {"SWITCHYARD_SMS_RATE_PER_SECOND": "1", "SWITCHYARD_PUSH_CONCURRENCY": "32"}
    )
    assert (limits.rate_per_second, limits.concurrency) == ({"sms": 1.0}, {"push": 32})
    handoff = DeliveryLimits.from_env({"SWITCHYARD_HANDOFF_BRAZE_RATE_PER_SECOND": "50"})
    assert handoff.rate_per_second == {"handoff_braze": 50.0}  # a hand-off route's own limit
    for name, value in (("SMS_RATE_PER_SECOND", "fast"), ("SMS_RATE_PER_SECOND", "0"),
                        ("EMAIL_CONCURRENCY", "0"), ("EMAIL_CONCURRENCY", "2.5")):  # fmt: skip
        with pytest.raises(ChannelSettingsError, match=f"SWITCHYARD_{name} must be"):
            DeliveryLimits.from_env({f"SWITCHYARD_{name}": value})
