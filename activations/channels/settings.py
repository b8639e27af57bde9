"""Which provider endpoints and credentials to use: the real providers or the local sandbox."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from activations.channels.core import ChannelClient
from activations.channels.fcm import FcmClient
from activations.channels.sendgrid import SendGridClient
from activations.channels.twilio import TwilioClient
from sandbox.credentials import SANDBOX_CREDENTIALS


@dataclass(frozen=True)
class ChannelSettings:
    sendgrid_base_url: str
    sendgrid_api_key: str
    email_from: str
    twilio_base_url: str
    twilio_account_sid: str
    twilio_auth_token: str
    twilio_from: str
    fcm_base_url: str
    fcm_project_id: str
    fcm_access_token: str

    @classmethod
    def for_sandbox(cls, base_url: str) -> ChannelSettings:
        c = SANDBOX_CREDENTIALS
        return cls(
            sendgrid_base_url=base_url,
            sendgrid_api_key=c.sendgrid_api_key,
            email_from="hello@switchyard.example",
            twilio_base_url=base_url,
            twilio_account_sid=c.twilio_account_sid,
            twilio_auth_token=c.twilio_auth_token,
            twilio_from="+14155550100",
            fcm_base_url=base_url,
            fcm_project_id=c.fcm_project_id,
            fcm_access_token=c.fcm_access_token,
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ChannelSettings | None:
        """Real endpoints from SWITCHYARD_* variables, or None when none is set (use the sandbox).

        A provider whose base URL is unset falls back to SWITCHYARD_CHANNELS_BASE_URL, so one
        sandbox started with `switchyard sandbox` can stand in for all three.
        """
        env = os.environ if env is None else env
        shared = env.get("SWITCHYARD_CHANNELS_BASE_URL")
        urls = {
            p: env.get(f"SWITCHYARD_{p}_BASE_URL") or shared for p in ("SENDGRID", "TWILIO", "FCM")
        }
        if not any(urls.values()):
            return None
        missing = [p for p, url in urls.items() if not url]
        if missing:
            raise ValueError(
                f"set SWITCHYARD_{missing[0]}_BASE_URL (or SWITCHYARD_CHANNELS_BASE_URL): "
                "either every provider has an endpoint or none does (then the sandbox is used)"
            )
        defaults = cls.for_sandbox("")
        return cls(
            sendgrid_base_url=urls["SENDGRID"] or "",
            sendgrid_api_key=env.get("SWITCHYARD_SENDGRID_API_KEY", defaults.sendgrid_api_key),
            email_from=env.get("SWITCHYARD_EMAIL_FROM", defaults.email_from),
            twilio_base_url=urls["TWILIO"] or "",
            twilio_account_sid=env.get(
                "SWITCHYARD_TWILIO_ACCOUNT_SID", defaults.twilio_account_sid
            ),
            twilio_auth_token=env.get("SWITCHYARD_TWILIO_AUTH_TOKEN", defaults.twilio_auth_token),
            twilio_from=env.get("SWITCHYARD_TWILIO_FROM", defaults.twilio_from),
            fcm_base_url=urls["FCM"] or "",
            fcm_project_id=env.get("SWITCHYARD_FCM_PROJECT_ID", defaults.fcm_project_id),
            fcm_access_token=env.get("SWITCHYARD_FCM_ACCESS_TOKEN", defaults.fcm_access_token),
        )

    def clients(self) -> dict[str, ChannelClient]:
        clients: list[ChannelClient] = [
            SendGridClient(self.sendgrid_base_url, self.sendgrid_api_key, self.email_from),
            TwilioClient(
                self.twilio_base_url,
                self.twilio_account_sid,
                self.twilio_auth_token,
                from_number=self.twilio_from,
            ),
            FcmClient(self.fcm_base_url, self.fcm_project_id, self.fcm_access_token),
        ]
        return {c.channel: c for c in clients}
