"""What a channel client is given and what it gives back."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class Message:
    send_key: str
    channel: str
    recipient: str  # email address, E.164 number or push token
    body: str
    subject: str | None = None
    title: str | None = None
    # Correlation data the provider echoes back in its webhooks (custom_args, data, ...).
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    status: Literal["sent", "failed"]
    http_status: int | None = None
    provider_message_id: str | None = None
    reason: str | None = None
