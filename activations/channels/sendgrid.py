"""Email over SendGrid v3 `POST /v3/mail/send` (JSON, Bearer API key).

Many messages go in one request, one personalization each (at most 1,000 a request). Content is
message-wide in mail/send, so each message's own body travels as the value of a substitution
tag that the shared content consists of, and its subject as the personalization's subject: any
rendered message can share a request. SendGrid caps a personalization's substitutions at 10,000
bytes; a longer body goes in a request of its own. A request is accepted or refused whole: a
400 (one bad address refuses them all, sending none) is retried message by message, so that only
the bad one fails.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from activations.channels.core import SplitBatch
from activations.channels.message import Message, Outcome
from activations.channels.responses import failure_reason
from activations.channels.unsubscribe import list_unsubscribe_headers

MAX_PERSONALIZATIONS = 1000  # a mail/send request's limit
MAX_SUBSTITUTION_BYTES = 10_000  # a personalization's substitutions, tags and values together
BODY_TAG = "-switchyard.body-"  # the shared content: each personalization's body replaces it


@dataclass(frozen=True)
class SendGridClient:
    base_url: str
    api_key: str
    from_email: str
    from_name: str | None = None
    channel: str = "email"
    idempotent: bool = False  # mail/send takes no idempotency key
    max_batch: int = MAX_PERSONALIZATIONS

    def build_request(self, http: httpx.Client, message: Message) -> httpx.Request:
        payload = {
            "personalizations": [self._personalization(message)],
            "from": self._sender(),
            "subject": message.subject or "",
            "content": [{"type": "text/plain", "value": message.body}],
        }
        return self._post(http, payload)

    def read_response(self, response: httpx.Response) -> Outcome:
        if response.status_code == 202:
            return Outcome("sent", 202, response.headers.get("x-message-id"))
        return Outcome("failed", response.status_code, reason=failure_reason(response))

    def batchable(self, message: Message) -> bool:
        size = len(BODY_TAG.encode()) + len(message.body.encode())
        return bool(message.subject) and size <= MAX_SUBSTITUTION_BYTES

    def build_batch_request(self, http: httpx.Client, messages: Sequence[Message]) -> httpx.Request:
        personalizations = [
            {
                **self._personalization(m),
                "subject": m.subject,
                "substitutions": {BODY_TAG: m.body},
            }
            for m in messages
        ]
        payload = {
            "personalizations": personalizations,
            "from": self._sender(),
            "content": [{"type": "text/plain", "value": BODY_TAG}],
        }
        return self._post(http, payload)

    def read_batch_response(self, response: httpx.Response, count: int) -> list[Outcome]:
        if response.status_code == 400:
            raise SplitBatch(failure_reason(response))
        return [self.read_response(response)] * count

    def _sender(self) -> dict[str, str]:
        return {"email": self.from_email, **({"name": self.from_name} if self.from_name else {})}

    def _personalization(self, message: Message) -> dict[str, Any]:
        personalization: dict[str, Any] = {
            "to": [{"email": message.recipient}],
            # Echoed back on every event webhook: how feedback finds its send. (The top-level
            # custom_args is a string in the spec; the per-personalization one is an object.)
            "custom_args": {"send_key": message.send_key, **message.tags},
        }
        if headers := list_unsubscribe_headers(message.unsubscribe_url):
            personalization["headers"] = headers
        return personalization

    def _post(self, http: httpx.Client, payload: dict[str, Any]) -> httpx.Request:
        return http.build_request(
            "POST",
            f"{self.base_url.rstrip('/')}/v3/mail/send",
            json=payload,
            headers={"Authorization": f"Bearer {self.api_key}"},
        )
