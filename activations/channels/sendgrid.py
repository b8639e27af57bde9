"""Email over SendGrid v3 `POST /v3/mail/send` (JSON, Bearer API key)."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from activations.channels.message import Message, Outcome
from activations.channels.responses import failure_reason
from activations.channels.unsubscribe import list_unsubscribe_headers


@dataclass(frozen=True)
class SendGridClient:
    base_url: str
    api_key: str
    from_email: str
    from_name: str | None = None
    # Where one click unsubscribes (RFC 8058), `{send_key}` filled in per message; None: no
    # List-Unsubscribe headers (mailbox providers ask bulk senders for them).
    unsubscribe_url: str | None = None
    channel: str = "email"
    idempotent: bool = False  # mail/send takes no idempotency key

    def build_request(self, http: httpx.Client, message: Message) -> httpx.Request:
        sender = {"email": self.from_email, **({"name": self.from_name} if self.from_name else {})}
        personalization = {
            "to": [{"email": message.recipient}],
            # Echoed back on every event webhook: how feedback finds its send. (The top-level
            # custom_args is a string in the spec; the per-personalization one is an object.)
            "custom_args": {"send_key": message.send_key, **message.tags},
        }
        if headers := list_unsubscribe_headers(self.unsubscribe_url, message.send_key):
            personalization["headers"] = headers
        payload = {
            "personalizations": [personalization],
            "from": sender,
            "subject": message.subject or "",
            "content": [{"type": "text/plain", "value": message.body}],
        }
        return http.build_request(
            "POST",
            f"{self.base_url.rstrip('/')}/v3/mail/send",
            json=payload,
            headers={"Authorization": f"Bearer {self.api_key}"},
        )

    def read_response(self, response: httpx.Response) -> Outcome:
        if response.status_code == 202:
            return Outcome("sent", 202, response.headers.get("x-message-id"))
        return Outcome("failed", response.status_code, reason=failure_reason(response))
