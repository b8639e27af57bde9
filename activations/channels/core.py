"""The one sending core every channel shares: rate limit, retry with Retry-After, and the ledger
line before and after each provider call. A channel module only builds a request and reads a
response."""

from __future__ import annotations

import email.utils
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

import httpx
import stamina

from activations.channels.message import Message, Outcome
from activations.channels.policy import RateLimiter, RetryPolicy
from activations.ledger import LedgerWriter, SendRef


class ChannelClient(Protocol):
    @property
    def channel(self) -> str: ...

    # True where the provider deduplicates on a key we send: then a 5xx or a lost response is
    # safe to retry. Otherwise only what the provider never processed (429, no connection) is.
    @property
    def idempotent(self) -> bool: ...

    def build_request(self, http: httpx.Client, message: Message) -> httpx.Request: ...

    def read_response(self, response: httpx.Response) -> Outcome: ...


class _Retryable(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


def retry_after_seconds(response: httpx.Response) -> float | None:
    """Retry-After as seconds or an HTTP date (RFC 9110), or None when absent or unreadable."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


class Sender:
    def __init__(
        self,
        http: httpx.Client,
        clients: dict[str, ChannelClient],
        ledger: LedgerWriter,
        clock: Callable[[], datetime],
        retry: RetryPolicy | None = None,
        limits: dict[str, RateLimiter] | None = None,
    ) -> None:
        self.http = http
        self.clients = clients
        self.ledger = ledger
        self.clock = clock
        self.retry = retry or RetryPolicy()
        self.limits = limits or {}

    def send(self, ref: SendRef, message: Message, attempt_number: int = 1) -> Outcome:
        client = self.clients.get(message.channel)
        if client is None:
            raise KeyError(f"no client configured for channel {message.channel!r}")
        common = {
            "channel": message.channel,
            "recipient": message.recipient,
            "subject": message.subject or message.title,
            "body": message.body,
        }
        # Written (and fsynced) before the call: a crash after this line is visible as 'unknown'.
        self.ledger.write(ref, "attempted", self.clock(), attempt=attempt_number, **common)
        try:
            outcome = self._call(client, message)
        except httpx.TransportError as exc:
            # The request may have been processed: leave 'attempted' as the last word, so the
            # next run sends it at most once more, visibly.
            return Outcome("failed", reason=f"outcome unknown: {exc}")
        self.ledger.write(
            ref,
            outcome.status,
            self.clock(),
            attempt=attempt_number,
            http_status=outcome.http_status,
            provider_message_id=outcome.provider_message_id,
            reason=outcome.reason,
            **common,
        )
        return outcome

    def _call(self, client: ChannelClient, message: Message) -> Outcome:
        limiter = self.limits.get(message.channel)
        policy = self.retry

        def backoff(exc: Exception) -> bool | float:
            if not isinstance(exc, _Retryable):
                return False
            if exc.retry_after is not None:
                return exc.retry_after <= policy.max_retry_after_seconds and exc.retry_after
            return True

        try:
            for attempt in stamina.retry_context(
                on=backoff,
                attempts=policy.attempts,
                timeout=policy.timeout_seconds,
                wait_initial=policy.wait_initial_seconds,
                wait_max=policy.wait_max_seconds,
            ):
                with attempt:
                    if limiter:
                        limiter.acquire()
                    response = self._exchange(client, message)
        except _Retryable as gave_up:
            return Outcome("failed", reason=f"gave up after retries: {gave_up.reason}")
        return client.read_response(response)

    def _exchange(self, client: ChannelClient, message: Message) -> httpx.Response:
        request = client.build_request(self.http, message)
        try:
            response = self.http.send(request)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise _Retryable(f"could not connect: {exc}") from exc  # never reached the provider
        except httpx.TransportError as exc:
            if client.idempotent:
                raise _Retryable(f"transport error: {exc}") from exc
            raise
        if response.status_code == 429:
            raise _Retryable("HTTP 429 rate limited", retry_after_seconds(response))
        if response.status_code >= 500 and client.idempotent:
            raise _Retryable(f"HTTP {response.status_code}", retry_after_seconds(response))
        return response
