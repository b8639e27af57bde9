"""Webhooks: a POST of each message to a URL the team runs, signed per Standard Webhooks
(standardwebhooks.com): `webhook-id`, `webhook-timestamp` and `webhook-signature`, the
signature being `v1,` + base64 HMAC-SHA256 over `{id}.{timestamp}.{body}` with the secret that
follows `whsec_` (base64).

The id is the send key, the same on every attempt: the spec has receivers de-duplicate on it,
so a lost response or a 5xx is retried (this channel is idempotent, unlike the providers')."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from activations.channels.message import Message, Outcome
from activations.channels.responses import failure_reason

SECRET_PREFIX = "whsec_"
EVENT_TYPE = "journey.message"


def secret_bytes(secret: str) -> bytes:
    """The key a `whsec_...` secret stands for; a clear error for anything else."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(
            "a webhook secret starts with 'whsec_' followed by base64 (Standard Webhooks)"
        )
    try:
        return base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except ValueError as exc:
        raise ValueError(f"the webhook secret after 'whsec_' is not base64: {exc}") from exc


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_bytes(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


@dataclass(frozen=True)
class WebhookClient:
    url: str
    secret: str  # whsec_<base64>
    channel: str = "webhook"
    idempotent: bool = True  # receivers de-duplicate on webhook-id (the send key)
    clock: Callable[[], float] = field(default=time.time, compare=False)

    def __post_init__(self) -> None:
        secret_bytes(self.secret)  # a bad secret fails at settings time, not at the first send

    def build_request(self, http: httpx.Client, message: Message) -> httpx.Request:
        payload = {
            "type": EVENT_TYPE,
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.clock())),
            "data": {
                "send_key": message.send_key,
                "recipient": message.recipient,  # the person id
                "subject": message.subject,
                "title": message.title,
                "body": message.body,
                **message.tags,
            },
        }
        body = json.dumps(payload, separators=(",", ":")).encode()
        timestamp = int(self.clock())
        headers = {
            "content-type": "application/json",
            "webhook-id": message.send_key,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature(self.secret, message.send_key, timestamp, body),
        }
        return http.build_request("POST", self.url, content=body, headers=headers)

    def read_response(self, response: httpx.Response) -> Outcome:
        if 200 <= response.status_code < 300:
            return Outcome("sent", response.status_code, response.request.headers["webhook-id"])
        return Outcome("failed", response.status_code, reason=failure_reason(response))
