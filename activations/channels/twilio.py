"""SMS over Twilio `POST /2010-04-01/Accounts/{AccountSid}/Messages.json` (form, HTTP Basic)."""

from __future__ import annotations

import base64
from dataclasses import dataclass

import httpx

from activations.channels.message import Message, Outcome
from activations.channels.responses import failure_reason


@dataclass(frozen=True)
class TwilioClient:
    base_url: str
    account_sid: str
    auth_token: str
    from_number: str | None = None
    messaging_service_sid: str | None = None
    channel: str = "sms"
    # Twilio deduplicates on I-Twilio-Idempotency-Token, so a lost response is safe to retry.
    idempotent: bool = True

    def __post_init__(self) -> None:
        if not (self.from_number or self.messaging_service_sid):
            raise ValueError("Twilio needs a From number or a MessagingServiceSid to send from")

    def build_request(self, http: httpx.Client, message: Message) -> httpx.Request:
        form = {"To": message.recipient, "Body": message.body}
        if self.messaging_service_sid:
            form["MessagingServiceSid"] = self.messaging_service_sid
        else:
            form["From"] = self.from_number or ""
        url = f"{self.base_url.rstrip('/')}/2010-04-01/Accounts/{self.account_sid}/Messages.json"
        # HTTP Basic with AccountSid:AuthToken, per the spec's accountSid_authToken scheme.
        credentials = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        headers = {
            "Authorization": f"Basic {credentials}",
            "I-Twilio-Idempotency-Token": message.send_key,
        }
        return http.build_request("POST", url, data=form, headers=headers)

    def read_response(self, response: httpx.Response) -> Outcome:
        if response.status_code in (200, 201):
            body = response.json()
            return Outcome("sent", response.status_code, body.get("sid"))
        return Outcome("failed", response.status_code, reason=failure_reason(response))
