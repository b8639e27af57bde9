"""What a channel client is given and what it gives back."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# sent: the provider accepted it. failed: the provider refused the message (a 4xx of its own,
# a setting), for good.
# unknown: it may or may not have been processed (a lost response, a 5xx from a provider that takes
# no idempotency key): reconciled through the provider's lookup, or sent at most once more
# (a hand-off: never again). deferred: refused before any work (a 429, no connection) until the
# run's retries ran out: nothing went out, a later run tries again (Sender: its ledger line).
OutcomeStatus = Literal["sent", "failed", "unknown", "deferred"]


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
    # marketing email: the signed one-click link its List-Unsubscribe headers name (RFC 8058)
    unsubscribe_url: str | None = None
    # The client that delivers it, when not its channel's own: an engagement platform it is
    # handed to (graph.Handoff.route). The ledger and the guards still see `channel`.
    route: str | None = None

    @property
    def client(self) -> str:
        return self.route or self.channel


@dataclass(frozen=True)
class Outcome:
    status: OutcomeStatus
    http_status: int | None = None
    provider_message_id: str | None = None
    reason: str | None = None
    reconciled: bool = False  # an unknown outcome the provider's lookup showed was sent
    detail: str | None = None  # the provider's words, where `reason` is a code of ours
    # The provider (or the way to it) failed, not this message: no connection, a 5xx, retries
    # run out, credentials refused. Three in a row take the channel out of the run for a while.
    provider_fault: bool = False
    retry_after: float | None = None  # deferred: the provider asked for this long a wait (s)
