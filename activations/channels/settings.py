"""Which provider endpoints and credentials to use: the real providers, or the local sandbox.

The sandbox is a choice (`SWITCHYARD_CHANNELS=sandbox`, set by `make demo` and the tests), never
what happens when configuration is missing: with `SWITCHYARD_CHANNELS=providers` every channel a
run needs must have its credentials, or the run stops naming the variables to set.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from activations.channels.core import ChannelClient
from activations.channels.fcm import FcmClient
from activations.channels.google_auth import ServiceAccountError, ServiceAccountTokens
from activations.channels.handoff import (
    AirshipPushClient,
    BrazeHandoffClient,
    CustomerIoHandoffClient,
    IterableHandoffClient,
)
from activations.channels.sendgrid import SendGridClient
from activations.channels.smtp import SmtpClient
from activations.channels.twilio import TwilioClient
from activations.channels.webhook import WebhookClient
from activations.graph import HANDOFF_DESTINATIONS
from activations.journeys import CHANNELS
from sandbox import google
from sandbox.credentials import SANDBOX_CREDENTIALS
from switchyard import preference_links
from switchyard.preference_links import LinkSigner

if TYPE_CHECKING:
    from sandbox.smtp import SmtpSandbox

MODE_VARIABLE = "SWITCHYARD_CHANNELS"
SANDBOX_URL_VARIABLE = "SWITCHYARD_CHANNELS_BASE_URL"
EMAIL_PROVIDER_VARIABLE = "SWITCHYARD_EMAIL_PROVIDER"
SANDBOX_FROM = "hello@switchyard.example"
ChannelMode = Literal["sandbox", "providers"]

# The providers' own hosts: a base URL variable only needs setting to go through a proxy.
DEFAULT_BASE_URLS = {
    "SENDGRID": "https://api.sendgrid.com",
    "TWILIO": "https://api.twilio.com",
    "FCM": "https://fcm.googleapis.com",
}


Handoff = BrazeHandoffClient | CustomerIoHandoffClient | IterableHandoffClient | AirshipPushClient


class ChannelSettingsError(ValueError):
    """Channel configuration is missing or contradictory; the message names what to set."""


@dataclass(frozen=True)
class ChannelSettings:
    """One provider client per channel (each client is its own settings: endpoint, credentials);
    a channel left None has none, and a run that needs it fails."""

    email: SendGridClient | SmtpClient | None = None
    sms: TwilioClient | None = None
    push: FcmClient | None = None
    webhook: WebhookClient | None = None
    # signs each message's unsubscribe and preference-center links; None: messages carry none
    links: LinkSigner | None = None
    # engagement platforms that journey steps hand messages to, by route (handoff_braze, ...)
    handoffs: tuple[Handoff, ...] = ()

    @classmethod
    def for_sandbox(cls, base_url: str, smtp: SmtpSandbox | None = None) -> ChannelSettings:
        """Every channel at the sandbox; email over SMTP to `smtp` if given, else SendGrid's API."""
        c = SANDBOX_CREDENTIALS
        email: SendGridClient | SmtpClient = SendGridClient(
            base_url, c.sendgrid_api_key, SANDBOX_FROM
        )
        if smtp is not None:
            email = SmtpClient(
                smtp.host,
                smtp.port,
                SANDBOX_FROM,
                c.smtp_username,
                c.smtp_password,
                ca_file=str(smtp.ca_file),
            )
        return cls(
            email=email,
            sms=TwilioClient(
                base_url,
                c.twilio_account_sid,
                c.twilio_auth_token,
                from_number="+14155550100",
                status_callback_url=f"{base_url.rstrip('/')}/_sandbox/twilio/status",
            ),
            # a service account's key, its tokens minted at the sandbox's token endpoint
            push=FcmClient(
                base_url,
                c.fcm_project_id,
                tokens=ServiceAccountTokens.from_info(
                    google.service_account_info(base_url, c.fcm_project_id)
                ),
            ),
            webhook=WebhookClient(f"{base_url.rstrip('/')}/_sandbox/webhook", c.webhook_secret),
            # the sandbox plays the collector's unsubscribe endpoint (sandbox.unsubscribed)
            links=LinkSigner(f"{base_url.rstrip('/')}/_sandbox", c.link_secret),
            handoffs=(
                BrazeHandoffClient(
                    base_url,
                    c.braze_api_key,
                    app_id=c.braze_app_id,
                    email_from="Switchyard <hello@example.com>",
                    sms_subscription_group=c.braze_sms_subscription_group,
                ),  # fmt: skip
                CustomerIoHandoffClient(base_url, c.customerio_app_api_key),
                IterableHandoffClient(base_url, c.iterable_api_key),
                AirshipPushClient(base_url, c.airship_token),
            ),
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

        email: SendGridClient | SmtpClient | None = None
        sms = push = webhook = None
        if "email" in wanted:
            provider = email_provider(env)
            from_address = need("SWITCHYARD_EMAIL_FROM")
            if optional("SWITCHYARD_UNSUBSCRIBE_URL"):
                raise ChannelSettingsError(
                    "SWITCHYARD_UNSUBSCRIBE_URL is no longer read: unsubscribe links are signed "
                    f"now; set {preference_links.SECRET_VARIABLE} and "
                    f"{preference_links.URL_VARIABLE} (the collector serves them) instead"
                )
            if provider == "smtp":
                port = optional("SWITCHYARD_SMTP_PORT") or "587"
                starttls = (optional("SWITCHYARD_SMTP_STARTTLS") or "true").lower()
                if not port.isdigit() or starttls not in ("true", "false"):
                    raise ChannelSettingsError(
                        "SWITCHYARD_SMTP_PORT must be a port number and SWITCHYARD_SMTP_STARTTLS "
                        f"true or false, not {port!r} and {starttls!r}"
                    )
                email = SmtpClient(
                    need("SWITCHYARD_SMTP_HOST"),
                    int(port),
                    from_address,
                    optional("SWITCHYARD_SMTP_USERNAME"),
                    optional("SWITCHYARD_SMTP_PASSWORD"),
                    starttls=starttls == "true",
                    ca_file=optional("SWITCHYARD_SMTP_CA_FILE"),
                )
            else:
                email = SendGridClient(
                    base_url("SENDGRID"),
                    need("SWITCHYARD_SENDGRID_API_KEY"),
                    from_address,
                )
        if "sms" in wanted:
            from_number = optional("SWITCHYARD_TWILIO_FROM")
            service = optional("SWITCHYARD_TWILIO_MESSAGING_SERVICE_SID")
            account_sid = need("SWITCHYARD_TWILIO_ACCOUNT_SID")
            auth_token = need("SWITCHYARD_TWILIO_AUTH_TOKEN")
            if from_number or service:
                sms = TwilioClient(
                    base_url("TWILIO"),
                    account_sid,
                    auth_token,
                    from_number=from_number,
                    messaging_service_sid=service,
                    status_callback_url=optional("SWITCHYARD_TWILIO_STATUS_CALLBACK_URL"),
                )
            else:
                missing.append(
                    "SWITCHYARD_TWILIO_FROM (or SWITCHYARD_TWILIO_MESSAGING_SERVICE_SID)"
                )
        if "push" in wanted:
            key_file = optional("SWITCHYARD_FCM_SERVICE_ACCOUNT_FILE")
            if key_file:
                try:
                    tokens = ServiceAccountTokens.from_file(
                        Path(key_file), optional("SWITCHYARD_FCM_TOKEN_URI")
                    )
                except ServiceAccountError as exc:
                    raise ChannelSettingsError(
                        f"SWITCHYARD_FCM_SERVICE_ACCOUNT_FILE: {exc}"
                    ) from exc
                project = optional("SWITCHYARD_FCM_PROJECT_ID") or tokens.project_id
                if project:
                    push = FcmClient(base_url("FCM"), project, tokens=tokens)
                else:
                    missing.append("SWITCHYARD_FCM_PROJECT_ID (the key file names none)")
            elif access_token := optional("SWITCHYARD_FCM_ACCESS_TOKEN"):
                push = FcmClient(base_url("FCM"), need("SWITCHYARD_FCM_PROJECT_ID"), access_token)
            else:
                missing.append(
                    "SWITCHYARD_FCM_SERVICE_ACCOUNT_FILE (or SWITCHYARD_FCM_ACCESS_TOKEN)"
                )
        if "webhook" in wanted:
            url, secret = need("SWITCHYARD_WEBHOOK_URL"), need("SWITCHYARD_WEBHOOK_SECRET")
            if url and secret:
                try:
                    webhook = WebhookClient(url, secret)
                except ValueError as exc:
                    raise ChannelSettingsError(f"SWITCHYARD_WEBHOOK_SECRET: {exc}") from exc
        handoffs: list[Handoff] = []
        if "handoff_braze" in wanted:
            url, key = need("SWITCHYARD_BRAZE_REST_ENDPOINT"), need("SWITCHYARD_BRAZE_API_KEY")
            # only steps that name no campaign (/messages/send) need these
            app_id, email_from, sms_group = (
                optional(f"SWITCHYARD_BRAZE_{name}") or ""
                for name in ("APP_ID", "EMAIL_FROM", "SMS_SUBSCRIPTION_GROUP")
            )
            handoffs.append(BrazeHandoffClient(url, key, app_id=app_id, email_from=email_from,
                                               sms_subscription_group=sms_group))  # fmt: skip
        if "handoff_customerio" in wanted:
            app_url = optional("SWITCHYARD_CUSTOMERIO_APP_URL") or "https://api.customer.io"
            handoffs.append(
                CustomerIoHandoffClient(app_url, need("SWITCHYARD_CUSTOMERIO_APP_API_KEY"))
            )
        if "handoff_iterable" in wanted:
            url = optional("SWITCHYARD_ITERABLE_BASE_URL") or "https://api.iterable.com"
            handoffs.append(IterableHandoffClient(url, need("SWITCHYARD_ITERABLE_API_KEY")))
        if "handoff_airship" in wanted:
            url = optional("SWITCHYARD_AIRSHIP_BASE_URL") or "https://go.urbanairship.com"
            handoffs.append(AirshipPushClient(url, need("SWITCHYARD_AIRSHIP_TOKEN")))
        if missing:
            raise ChannelSettingsError(
                f"{MODE_VARIABLE}=providers, but these are not set: {', '.join(missing)} "
                f"(channels needed: {', '.join(sorted(wanted))})"
            )
        try:
            links = LinkSigner.from_env(env)
        except ValueError as exc:
            raise ChannelSettingsError(str(exc)) from exc
        return cls(
            email=email, sms=sms, push=push, webhook=webhook, links=links, handoffs=tuple(handoffs)
        )

    def clients(self) -> dict[str, ChannelClient]:
        configured: list[ChannelClient | None] = [
            self.email, self.sms, self.push, self.webhook, *self.handoffs,
        ]  # fmt: skip
        return {c.channel: c for c in configured if c is not None}


@dataclass(frozen=True)
class DeliveryLimits:
    """Per channel or hand-off route (handoff_braze, ...): requests a second (the provider's
    rate limit, e.g. Twilio's 1 a second per long code, 100 per short code) and requests in
    flight at once."""

    rate_per_second: dict[str, float]
    concurrency: dict[str, int]

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> DeliveryLimits:
        """SWITCHYARD_<CHANNEL>_RATE_PER_SECOND and SWITCHYARD_<CHANNEL>_CONCURRENCY, where set
        (for a hand-off: SWITCHYARD_HANDOFF_BRAZE_RATE_PER_SECOND, ...)."""
        env = os.environ if env is None else env
        rates: dict[str, float] = {}
        concurrency: dict[str, int] = {}
        routes = [f"handoff_{destination}" for destination in HANDOFF_DESTINATIONS]
        for channel in (*CHANNELS, *routes):
            rate_name = f"SWITCHYARD_{channel.upper()}_RATE_PER_SECOND"
            workers_name = f"SWITCHYARD_{channel.upper()}_CONCURRENCY"
            if value := env.get(rate_name, "").strip():
                try:
                    rates[channel] = float(value)
                except ValueError:
                    rates[channel] = 0.0
                if not (rates[channel] > 0 and math.isfinite(rates[channel])):
                    raise ChannelSettingsError(
                        f"{rate_name} must be a positive number, not {value!r}"
                    )
            if value := env.get(workers_name, "").strip():
                if not value.isdigit() or int(value) < 1:
                    raise ChannelSettingsError(
                        f"{workers_name} must be a whole number of at least 1, not {value!r}"
                    )
                concurrency[channel] = int(value)
        return cls(rates, concurrency)


def email_provider(env: Mapping[str, str]) -> Literal["sendgrid", "smtp"]:
    value = env.get(EMAIL_PROVIDER_VARIABLE, "").strip().lower() or "sendgrid"
    if value == "sendgrid":
        return "sendgrid"
    if value == "smtp":
        return "smtp"
    raise ChannelSettingsError(
        f"{EMAIL_PROVIDER_VARIABLE} is {value!r}: set it to 'sendgrid' (the default) or 'smtp'"
    )


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
    smtp = email_provider(env) == "smtp" and "email" in set(channels)
    shared = env.get(SANDBOX_URL_VARIABLE)
    if shared:
        if smtp:
            raise ChannelSettingsError(
                f"{SANDBOX_URL_VARIABLE} names an HTTP sandbox, which has no SMTP server: unset "
                f"it (a run then starts its own, with one) or {EMAIL_PROVIDER_VARIABLE}"
            )
        yield ChannelSettings.for_sandbox(shared)
        return
    from sandbox import Sandbox
    from sandbox.smtp import SmtpSandbox

    with Sandbox(record_file=record_file) as sandbox:
        if not smtp:
            yield ChannelSettings.for_sandbox(sandbox.base_url)
            return
        with SmtpSandbox() as smtp_sandbox:
            yield ChannelSettings.for_sandbox(sandbox.base_url, smtp_sandbox)
