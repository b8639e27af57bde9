"""Which provider endpoints and credentials to use: the real providers, or the local sandbox.

The sandbox is a choice (`SWITCHYARD_CHANNELS=sandbox`, set by `make demo` and the tests), never
what happens when configuration is missing: with `SWITCHYARD_CHANNELS=providers` every channel a
run needs must have its credentials, or the run stops naming the variables to set.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from activations.channels.core import ChannelClient
from activations.channels.fcm import FcmClient
from activations.channels.sendgrid import SendGridClient
from activations.channels.twilio import TwilioClient
from activations.journeys import CHANNELS
from sandbox.credentials import SANDBOX_CREDENTIALS

MODE_VARIABLE = "SWITCHYARD_CHANNELS"
SANDBOX_URL_VARIABLE = "SWITCHYARD_CHANNELS_BASE_URL"
ChannelMode = Literal["sandbox", "providers"]

# The providers' own hosts: a base URL variable only needs setting to go through a proxy.
DEFAULT_BASE_URLS = {
    "SENDGRID": "https://api.sendgrid.com",
    "TWILIO": "https://api.twilio.com",
    "FCM": "https://fcm.googleapis.com",
}


class ChannelSettingsError(ValueError):
    """Channel configuration is missing or contradictory; the message names what to set."""


@dataclass(frozen=True)
class SendGridSettings:
    base_url: str
    api_key: str
    from_email: str

    def client(self) -> SendGridClient:
        return SendGridClient(self.base_url, self.api_key, self.from_email)


@dataclass(frozen=True)
class TwilioSettings:
    base_url: str
    account_sid: str
    auth_token: str
    from_number: str | None = None
    messaging_service_sid: str | None = None
    status_callback_url: str | None = None

    def client(self) -> TwilioClient:
        return TwilioClient(
            self.base_url,
            self.account_sid,
            self.auth_token,
            from_number=self.from_number,
            messaging_service_sid=self.messaging_service_sid,
            status_callback_url=self.status_callback_url,
        )


@dataclass(frozen=True)
class FcmSettings:
    base_url: str
    project_id: str
    access_token: str  # an OAuth2 access token for the service account

    def client(self) -> FcmClient:
        return FcmClient(self.base_url, self.project_id, self.access_token)


@dataclass(frozen=True)
class ChannelSettings:
    """One provider per channel; a channel left None has no client (a run that needs it fails)."""

    email: SendGridSettings | None = None
    sms: TwilioSettings | None = None
    push: FcmSettings | None = None

    @classmethod
    def for_sandbox(cls, base_url: str) -> ChannelSettings:
        c = SANDBOX_CREDENTIALS
        return cls(
            email=SendGridSettings(base_url, c.sendgrid_api_key, "hello@switchyard.example"),
            sms=TwilioSettings(
                base_url,
                c.twilio_account_sid,
                c.twilio_auth_token,
                from_number="+14155550100",
                status_callback_url=f"{base_url.rstrip('/')}/_sandbox/twilio/status",
            ),
            push=FcmSettings(base_url, c.fcm_project_id, c.fcm_access_token),
        )

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, channels: Iterable[str] = CHANNELS
    ) -> ChannelSettings:
        """The real providers for `channels`, from SWITCHYARD_* variables; every missing
        variable is named in one error."""
        env = os.environ if env is None else env
        if env.get(SANDBOX_URL_VARIABLE):
            raise ChannelSettingsError(
                f"{SANDBOX_URL_VARIABLE} points every channel at one sandbox: set "
                f"{MODE_VARIABLE}=sandbox to use it, or unset it and configure each provider"
            )
        wanted = set(channels)
        missing: list[str] = []

        def need(name: str) -> str:
            value = env.get(name, "").strip()
            if not value:
                missing.append(name)
            return value

        def optional(name: str) -> str | None:
            return env.get(name, "").strip() or None

        def base_url(provider: str) -> str:
            return optional(f"SWITCHYARD_{provider}_BASE_URL") or DEFAULT_BASE_URLS[provider]

        email = sms = push = None
        if "email" in wanted:
            email = SendGridSettings(
                base_url("SENDGRID"),
                need("SWITCHYARD_SENDGRID_API_KEY"),
                need("SWITCHYARD_EMAIL_FROM"),
            )
        if "sms" in wanted:
            from_number = optional("SWITCHYARD_TWILIO_FROM")
            service = optional("SWITCHYARD_TWILIO_MESSAGING_SERVICE_SID")
            if not (from_number or service):
                missing.append(
                    "SWITCHYARD_TWILIO_FROM (or SWITCHYARD_TWILIO_MESSAGING_SERVICE_SID)"
                )
            sms = TwilioSettings(
                base_url("TWILIO"),
                need("SWITCHYARD_TWILIO_ACCOUNT_SID"),
                need("SWITCHYARD_TWILIO_AUTH_TOKEN"),
                from_number=from_number,
                messaging_service_sid=service,
                status_callback_url=optional("SWITCHYARD_TWILIO_STATUS_CALLBACK_URL"),
            )
        if "push" in wanted:
            push = FcmSettings(
                base_url("FCM"),
                need("SWITCHYARD_FCM_PROJECT_ID"),
                need("SWITCHYARD_FCM_ACCESS_TOKEN"),
            )
        if missing:
            raise ChannelSettingsError(
                f"{MODE_VARIABLE}=providers, but these are not set: {', '.join(missing)} "
                f"(channels needed: {', '.join(sorted(wanted))})"
            )
        return cls(email=email, sms=sms, push=push)

    def clients(self) -> dict[str, ChannelClient]:
        configured = (self.email, self.sms, self.push)
        clients: list[ChannelClient] = [s.client() for s in configured if s is not None]
        return {c.channel: c for c in clients}


def channel_mode(env: Mapping[str, str] | None = None) -> ChannelMode:
    env = os.environ if env is None else env
    value = env.get(MODE_VARIABLE, "").strip().lower()
    if value == "sandbox":
        return "sandbox"
    if value == "providers":
        return "providers"
    raise ChannelSettingsError(
        f"{MODE_VARIABLE} is {repr(value) if value else 'not set'}: set it to 'providers' to send "
        f"through SendGrid, Twilio and FCM with the SWITCHYARD_* credentials, or to 'sandbox' for "
        "the local channel sandbox (what `make demo` and the tests use)"
    )


@contextmanager
def open_channels(
    record_file: Path, channels: Iterable[str] = CHANNELS, env: Mapping[str, str] | None = None
) -> Iterator[ChannelSettings]:
    """Settings for a run. In sandbox mode: the sandbox at SWITCHYARD_CHANNELS_BASE_URL, or one
    started for the run that records what it accepted to `record_file`."""
    env = os.environ if env is None else env
    if channel_mode(env) == "providers":
        yield ChannelSettings.from_env(env, channels)
        return
    shared = env.get(SANDBOX_URL_VARIABLE)
    if shared:
        yield ChannelSettings.for_sandbox(shared)
        return
    from sandbox import Sandbox

    with Sandbox(record_file=record_file) as sandbox:
        yield ChannelSettings.for_sandbox(sandbox.base_url)
