"""The one sending core every channel shares: rate limit, retry with Retry-After, the ledger line
before and after each provider call, and reconciliation of outcomes that were lost. A channel
module only builds a request, reads a response and, where the provider has one, looks a message up.

Messages go out in batches: the batch's `attempted` lines are fsynced together before any of its
requests leaves (group commit), the requests run concurrently on a pool of workers per channel
(a channel's concurrency is its own, so a slow provider does not take the others' workers), and
the outcomes are fsynced together after.
"""

from __future__ import annotations

import email.utils
import threading
import time
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Protocol, TypeVar, cast, runtime_checkable

import httpx
import stamina

from activations.channels.message import Message, Outcome
from activations.channels.policy import RateLimiter, RetryPolicy
from activations.channels.sms_segments import segments as sms_segments
from activations.ledger.keys import SendRef
from activations.ledger.vocabulary import DeferReason
from activations.ledger.writer import LedgerWriter

T = TypeVar("T")

RECONCILED = "reconciled: found by the provider's message lookup"
DEFAULT_CONCURRENCY = 8  # requests in flight per channel, unless settings say otherwise
BREAKER_FAILURES = 3  # provider failures in a row that take a channel out of the run
BREAKER_SECONDS = 60.0  # for this long


@dataclass(frozen=True)
class Outgoing:
    """A message to send under its send key (the attempt number counts earlier attempts)."""

    ref: SendRef
    message: Message
    attempt_number: int = 1


@dataclass
class InFlight:
    """A submitted batch: recorded as attempted, its requests with the channels' workers."""

    batch: list[Outgoing]
    groups: list[list[int]]  # the batch's positions, by the request that carries them
    calls: list[Future[list[Outcome]]]  # one per group
    attempted_at: datetime

    def __post_init__(self) -> None:
        # Counted down as calls finish: done() is asked after every message queued, and
        # checking each of a batch's futures every time costs more than the sending.
        self._left = len(self.calls)
        self._lock = threading.Lock()
        self._then: list[Callable[[], None]] = []
        for call in self.calls:
            call.add_done_callback(self._finished)

    def when_done(self, then: Callable[[], None]) -> None:
        """Call `then` (on a worker, or now) once every call has finished."""
        with self._lock:
            if self._left:
                self._then.append(then)
                return
        then()

    def _finished(self, call: Future[list[Outcome]]) -> None:
        with self._lock:
            self._left -= 1
            then = self._then if self._left == 0 else []
        for callback in then:
            callback()

    def done(self) -> bool:
        return self._left == 0


class HttpClient(Protocol):
    """A channel sent to as one HTTP request per message (SendGrid, Twilio, FCM, webhooks)."""

    @property
    def channel(self) -> str: ...

    # True only where the provider deduplicates on a key we send: then a 5xx or a lost response
    # is safe to retry. Twilio Messages, SendGrid mail/send and FCM v1 send take no such key, so
    # for them only what the provider never processed (429, no connection) is retried.
    @property
    def idempotent(self) -> bool: ...

    def build_request(self, http: httpx.Client, message: Message) -> httpx.Request: ...

    def read_response(self, response: httpx.Response) -> Outcome: ...


@runtime_checkable
class DirectClient(Protocol):
    """A channel that speaks its own protocol (SMTP) rather than one HTTP request: it delivers a
    message itself, returning the outcome or raising Retryable (the provider did not take it)
    or OutcomeUnknown (it may have)."""

    @property
    def channel(self) -> str: ...

    @property
    def idempotent(self) -> bool: ...

    def deliver(self, message: Message) -> Outcome: ...

    def close(self) -> None: ...


@runtime_checkable
class BatchingClient(Protocol):
    """An HTTP channel whose provider takes many messages in one request (SendGrid: up to 1,000
    personalizations). The request stands or falls whole: every message gets its outcome."""

    @property
    def channel(self) -> str: ...

    @property
    def idempotent(self) -> bool: ...

    @property
    def max_batch(self) -> int: ...

    def batchable(self, message: Message) -> bool: ...

    def build_request(self, http: httpx.Client, message: Message) -> httpx.Request: ...

    def read_response(self, response: httpx.Response) -> Outcome: ...

    def build_batch_request(
        self, http: httpx.Client, messages: Sequence[Message]
    ) -> httpx.Request: ...

    def read_batch_response(self, response: httpx.Response, count: int) -> list[Outcome]:
        """One outcome per message; raises SplitBatch when the provider refused the request for
        something one message holds (nothing was sent): each is then sent on its own."""
        ...


class Stopped(Exception):
    """A request not sent because the run is stopping (its messages stay attempted: the next
    run settles them)."""


class SplitBatch(Exception):
    """The provider refused a batched request without processing it, for one of its messages."""


ChannelClient = HttpClient | DirectClient


class LookupFailed(Exception):
    """The provider's lookup could not say whether a message exists (its answer is in the text)."""


@runtime_checkable
class Reconciling(Protocol):
    """A client whose provider can list what it accepted, so an unknown outcome can be settled."""

    def find_sent(
        self, http: httpx.Client, message: Message, since: datetime, exclude: Collection[str]
    ) -> str | None:
        """The provider's id of `message` if the provider accepted it at or after `since` (UTC),
        skipping ids in `exclude` (recorded for other sends); None if it has no such message.
        Raises LookupFailed when the lookup itself fails."""
        ...


class Retryable(Exception):
    """Safe to send again (after `retry_after` seconds): never processed by the provider, or
    (`maybe_processed`) sent to a provider that de-duplicates on our key."""

    def __init__(
        self, reason: str, retry_after: float | None = None, maybe_processed: bool = False
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.maybe_processed = maybe_processed


class NotSent(Exception):
    """Refused before any request left, for a reason retrying will not fix (a setting)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class OutcomeUnknown(Exception):
    """The provider may have processed it: never retried blindly."""

    def __init__(self, reason: str, http_status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.http_status = http_status


def rate_limit_reset_seconds(response: httpx.Response) -> float | None:
    """X-RateLimit-Reset as seconds from now (SendGrid and Braze send the reset time in epoch
    seconds), or None when absent or unreadable."""
    reset = response.headers.get("x-ratelimit-reset")
    try:
        return max(0.0, float(reset) - time.time()) if reset else None
    except ValueError:
        return None


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
        concurrency: dict[str, int] | None = None,
    ) -> None:
        self.http = http
        self.clients = clients
        self.ledger = ledger
        self.clock = clock
        self.retry = retry or RetryPolicy()
        self.limits = limits or {}
        self.concurrency = concurrency or {}
        self._pools: dict[str, ThreadPoolExecutor] = {}
        # recipient -> provider message ids that belong to sends already recorded (the ledger's
        # recent ones, and every one this sender sees): a lookup never claims them for another.
        self.claimed: dict[str, set[str]] = {}
        # A channel whose provider keeps failing (no connection, 5xx, retries run out) is taken
        # out of the run for a while, so that it does not hold up the channels that work.
        self._failing: dict[str, int] = {}
        self._down_until: dict[str, float] = {}
        # (direct, batching) per client: isinstance against a runtime-checkable Protocol looks
        # up each of its members, once per message it was
        self._kinds: dict[int, tuple[bool, bool]] = {}
        # Set when a worker is stopped mid-request (KeyboardInterrupt, SystemExit): the others
        # take no further request, whether or not the run has cancelled theirs yet.
        self._stopping = threading.Event()

    def _kind(self, client: ChannelClient) -> tuple[bool, bool]:
        kind = self._kinds.get(id(client))
        if kind is None:
            kind = (isinstance(client, DirectClient), isinstance(client, BatchingClient))
            self._kinds[id(client)] = kind
        return kind

    def _as_direct(self, client: ChannelClient) -> DirectClient | None:
        return cast(DirectClient, client) if self._kind(client)[0] else None

    def _as_batching(self, client: ChannelClient) -> BatchingClient | None:
        return cast(BatchingClient, client) if self._kind(client)[1] else None

    def can_look_up(self, channel: str) -> bool:
        """Whether the channel's provider can say if it accepted a message (Twilio can)."""
        return isinstance(self.clients.get(channel), Reconciling)

    @staticmethod
    def ledger_columns(message: Message) -> dict[str, Any]:
        """The columns every ledger line about a message repeats."""
        return {
            "channel": message.channel,
            "recipient": message.recipient,
            "subject": message.subject or message.title,
            "body": message.body,
            "segments": sms_segments(message.body) if message.channel == "sms" else None,
        }

    def _client(self, channel: str) -> ChannelClient:
        client = self.clients.get(channel)
        if client is None:
            raise KeyError(f"no client configured for channel {channel!r}")
        return client

    def send(self, ref: SendRef, message: Message, attempt_number: int = 1) -> Outcome:
        return self.send_batch([Outgoing(ref, message, attempt_number)])[0]

    def send_batch(self, batch: Sequence[Outgoing]) -> list[Outcome]:
        """Send every message of `batch`, concurrently; their outcomes, in the batch's order."""
        return self.collect(self.submit(batch))

    def submit(self, batch: Sequence[Outgoing]) -> InFlight:
        """Record `batch` as attempted (fsynced together) and hand its requests to the channels'
        workers; `collect` waits for the outcomes and records them. A client that
        `attempts_at_request` (a hand-off, whose doubt is final) has its line written by the
        worker, after the rate limiter, just before the request leaves: a run stopped while it
        waits leaves no doubt about a message that never went."""
        clients = [self._client(o.message.client) for o in batch]  # unknown channel: nothing out
        late = [bool(getattr(c, "attempts_at_request", False)) for c in clients]
        # On disk before any request leaves: a crash mid-batch leaves these as 'unknown'.
        attempted_at = self.clock()
        for o, at_request in zip(batch, late, strict=True):
            if not at_request:
                self._attempted(o, attempted_at, sync=False)
        self.ledger.sync()
        # One future per request: a message alone, or a group that one request carries.
        groups = self._requests(batch, clients)
        calls: list[Future[list[Outcome]]] = []
        for group in groups:
            first = group[0]
            before_send = None
            if late[first]:
                before_send = partial(self._attempted_now, [batch[i] for i in group])
            calls.append(
                self._pool(clients[first].channel).submit(
                    self._call_for_outcomes,
                    clients[first],
                    [batch[i].message for i in group],
                    before_send,
                )
            )
        return InFlight(list(batch), groups, calls, attempted_at)

    def _attempted(self, o: Outgoing, at: datetime, sync: bool) -> None:
        self.ledger.write(
            o.ref, "attempted", at, sync=sync, attempt=o.attempt_number,
            **self.ledger_columns(o.message),
        )  # fmt: skip

    def _attempted_now(self, outgoing: Sequence[Outgoing]) -> None:
        at = self.clock()
        for o in outgoing:
            self._attempted(o, at, sync=False)
        self.ledger.sync()

    def collect(self, flight: InFlight) -> list[Outcome]:
        """Wait for the outcomes of a submitted batch, record them (fsynced together) and settle
        the unknown ones the provider can look up; the outcomes, in the batch's order."""
        batch = flight.batch
        outcomes: list[Outcome] = [Outcome("unknown")] * len(batch)
        try:
            for group, call in zip(flight.groups, flight.calls, strict=True):
                for i, outcome in zip(group, call.result(), strict=True):
                    outcomes[i] = outcome
        except BaseException:
            self.abandon(flight)
            raise
        for n, (o, outcome) in enumerate(zip(batch, outcomes, strict=True)):
            outcomes[n] = outcome = self._settle_refusal(o, outcome)
            self._record(o.ref, o.message, outcome, o.attempt_number, sync=False)
            self._note_health(o.message.client, outcome)
        self.ledger.sync()
        for n, (o, outcome) in enumerate(zip(batch, outcomes, strict=True)):
            if outcome.status == "unknown":
                # The provider may list it already; if not, the next run looks again first.
                settled = self.reconcile(o.ref, o.message, flight.attempted_at, o.attempt_number)
                if settled is not None:
                    outcomes[n] = settled
        return outcomes

    def abandon(self, flight: InFlight) -> None:
        """Stopped (Ctrl-C, a cancelled run): no request of `flight` that has not left goes now.
        What did leave is waited for and recorded; the rest stay `attempted` (settled next run
        as an unknown outcome), except a hand-off's, whose line is written only as it leaves."""
        for call in flight.calls:
            call.cancel()
        for group, call in zip(flight.groups, flight.calls, strict=True):
            if not call.cancelled() and call.exception() is None:
                for i, outcome in zip(group, call.result(), strict=True):
                    o = flight.batch[i]
                    outcome = self._settle_refusal(o, outcome)
                    self._record(o.ref, o.message, outcome, o.attempt_number, sync=False)
        self.ledger.sync()

    def _settle_refusal(self, o: Outgoing, outcome: Outcome) -> Outcome:
        """A message the provider refused before any work until the retries ran out went
        nowhere: deferred to a later run (DeferReason.RETRYING, from when RetryPolicy's wait
        across runs and the provider's Retry-After allow), its line settling this attempt.
        The engine fails it for good after MAX_ATTEMPTS attempts (the dead letter)."""
        if outcome.status != "deferred":
            return outcome
        wait = self.retry.later_run_wait(o.attempt_number, outcome.retry_after)
        until = (self.clock() + timedelta(seconds=wait)).isoformat(timespec="seconds")
        return replace(
            outcome, reason=DeferReason.RETRYING, detail=f"until {until}; {outcome.reason}"
        )

    def channel_down(self, channel: str) -> bool:
        """True while the channel is out of the run (BREAKER_FAILURES failures in a row, then
        BREAKER_SECONDS without a try; after that one message tries it again)."""
        return time.monotonic() < self._down_until.get(channel, 0.0)

    def _note_health(self, channel: str, outcome: Outcome) -> None:
        # A refusal of one message (a 4xx, an SMTP 550 for one mailbox) says nothing about the
        # provider; only what the clients and the retry wrapper mark as the provider's fault.
        if outcome.status == "sent":
            self._failing[channel] = 0
            return
        if not outcome.provider_fault:
            return
        self._failing[channel] = self._failing.get(channel, 0) + 1
        if self._failing[channel] >= BREAKER_FAILURES:
            self._down_until[channel] = time.monotonic() + BREAKER_SECONDS
            self._failing[channel] = BREAKER_FAILURES - 1  # the next failure closes it again

    def close(self) -> None:
        for pool in self._pools.values():
            pool.shutdown(wait=True, cancel_futures=True)
        self._pools.clear()
        for client in self.clients.values():
            if isinstance(client, DirectClient):
                client.close()  # its connections

    def _pool(self, channel: str) -> ThreadPoolExecutor:
        if channel not in self._pools:
            workers = self.concurrency.get(channel, DEFAULT_CONCURRENCY)
            self._pools[channel] = ThreadPoolExecutor(workers, thread_name_prefix=f"send-{channel}")
        return self._pools[channel]

    def _requests(
        self, batch: Sequence[Outgoing], clients: Sequence[ChannelClient]
    ) -> list[list[int]]:
        """The batch's positions, grouped by the request that carries them: messages of a
        batching channel together (up to its maximum, and no more than its rate limit's burst),
        each recipient at most once a request (SendGrid refuses an address twice); every other
        message alone."""
        groups: list[list[int]] = []
        open_groups: dict[str, tuple[list[int], set[str]]] = {}
        for i, (o, channel_client) in enumerate(zip(batch, clients, strict=True)):
            client = self._as_batching(channel_client)
            if client is None or not self._batchable(client, o.message):
                groups.append([i])
                continue
            limiter = self.limits.get(client.channel)
            most = min(client.max_batch, int(limiter.capacity) if limiter else client.max_batch)
            group, recipients = open_groups.get(client.channel, ([], set()))
            address = o.message.recipient.lower()  # SendGrid compares addresses so
            if address in recipients:
                groups.append([i])  # the same address twice: this one goes alone
                continue
            if not group or len(group) >= most:
                group, recipients = [], set()
                open_groups[client.channel] = (group, recipients)
                groups.append(group)
            group.append(i)
            recipients.add(address)
        return groups

    @staticmethod
    def _batchable(client: BatchingClient, message: Message) -> bool:
        try:
            return client.batchable(message)
        except Exception:  # a message the check cannot read goes alone, with its own outcome
            return False

    def _call_for_outcomes(
        self,
        client: ChannelClient,
        messages: Sequence[Message],
        before_send: Callable[[], None] | None = None,
    ) -> list[Outcome]:
        """The request's call on a worker: whatever happens becomes an outcome per message (an
        error of ours after the request may have left is an unknown outcome, never a retry).
        `before_send`: called once, after the rate limiter, before the first try leaves."""
        if self._stopping.is_set():
            raise Stopped("the run is stopping: this request was not sent")
        try:
            if len(messages) == 1:
                return [self._call(client, messages[0], before_send)]
            assert isinstance(client, BatchingClient)
            return self._call_batch(client, messages, before_send)
        except OutcomeUnknown as unknown:
            lost = Outcome(
                "unknown", unknown.http_status, reason=unknown.reason, provider_fault=True
            )
            return [lost] * len(messages)
        except Exception as exc:  # one message's bug must not lose the batch
            return [Outcome("unknown", reason=f"sender error: {exc!r}")] * len(messages)
        except BaseException:
            self._stopping.set()
            raise

    def _call_batch(
        self,
        client: BatchingClient,
        messages: Sequence[Message],
        before_send: Callable[[], None] | None = None,
    ) -> list[Outcome]:
        def exchange() -> list[Outcome]:
            try:
                request = client.build_batch_request(self.http, messages)
            except Exception as exc:  # nothing left: each alone, each with its own outcome
                raise SplitBatch(f"the batched request could not be built: {exc!r}") from exc
            return client.read_batch_response(self._exchange(client, request), len(messages))

        try:
            outcome = self._retrying(client.channel, exchange, len(messages), before_send)
        except SplitBatch:  # refused whole, nothing sent: each alone, each with its own answer
            return [self._call_for_outcomes(client, [message])[0] for message in messages]
        return [outcome] * len(messages) if isinstance(outcome, Outcome) else outcome

    def reconcile(
        self, ref: SendRef, message: Message, since: datetime, attempt_number: int
    ) -> Outcome | None:
        """Settle an unknown outcome through the provider's lookup, before any new attempt.

        Returns the recorded outcome when the provider has the message ('sent') or the lookup
        failed ('unknown': nothing may be sent now); None when the provider has no such message or
        offers no lookup, and the caller may send it (at most once more, see the engine).
        """
        client = self.clients.get(message.client)
        if not isinstance(client, Reconciling):
            return None
        exclude = self.claimed.get(message.recipient, set())
        try:
            found = client.find_sent(self.http, message, since, exclude)
        except (LookupFailed, httpx.TransportError) as exc:
            outcome = Outcome("unknown", reason=f"lookup failed: {exc}")
        else:
            if found is None:
                return None
            outcome = Outcome("sent", provider_message_id=found, reason=RECONCILED, reconciled=True)
        self._record(ref, message, outcome, attempt_number)
        return outcome

    def _record(
        self, ref: SendRef, message: Message, outcome: Outcome, attempt: int, sync: bool = True
    ) -> None:
        if outcome.provider_message_id:
            self.claimed.setdefault(message.recipient, set()).add(outcome.provider_message_id)
        self.ledger.write(
            ref,
            outcome.status,
            self.clock(),
            sync=sync,
            attempt=attempt,
            http_status=outcome.http_status,
            provider_message_id=outcome.provider_message_id,
            reason=outcome.reason,
            reason_detail=outcome.detail,
            **self.ledger_columns(message),
        )

    def _call(
        self,
        client: ChannelClient,
        message: Message,
        before_send: Callable[[], None] | None = None,
    ) -> Outcome:
        direct = self._as_direct(client)
        if direct is not None:
            exchange: Callable[[], Outcome] = lambda: direct.deliver(message)  # noqa: E731
        else:
            http_client = cast(HttpClient, client)
            request = lambda: http_client.build_request(self.http, message)  # noqa: E731
            exchange = lambda: http_client.read_response(  # noqa: E731
                self._exchange(http_client, request())
            )
        return self._retrying(message.client, exchange, 1, before_send)

    def _retrying(
        self,
        channel: str,
        exchange: Callable[[], T],
        messages: int,
        before_send: Callable[[], None] | None = None,
    ) -> T | Outcome:
        """`exchange` under the channel's rate limit (`messages` tokens a request) and the retry
        policy: its result, or the outcome of giving up (for every message it carries)."""
        limiter = self.limits.get(channel)
        policy = self.retry
        # whether any try may have been processed (a 5xx to a de-duplicating provider): then the
        # outcome is unknown, whatever the last try met
        processed = False

        def backoff(exc: BaseException) -> bool | float:
            nonlocal processed
            if not isinstance(exc, Retryable):
                return False
            processed = processed or exc.maybe_processed
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
                        limiter.acquire(messages)
                    if before_send is not None:
                        before_send()
                        before_send = None
                    result = exchange()
        except NotSent as refused:
            return Outcome("failed", reason=refused.reason)
        except Retryable as gave_up:
            too_long = gave_up.retry_after is not None and (
                gave_up.retry_after > policy.max_retry_after_seconds
            )
            if gave_up.maybe_processed or processed:
                # It may have arrived: unknown, and sent once more under the same key next run.
                return Outcome(
                    "unknown",
                    reason=f"gave up after retries: {gave_up.reason}",
                    provider_fault=True,
                )
            # No try was processed: a later run tries again (_settle_refusal).
            reason = f"gave up after retries: {gave_up.reason}"
            if too_long:
                reason = (
                    f"{gave_up.reason}: Retry-After {gave_up.retry_after:g} s is longer than "
                    f"the policy's maximum of {policy.max_retry_after_seconds:g} s"
                )
            return Outcome(
                "deferred", reason=reason, provider_fault=True, retry_after=gave_up.retry_after
            )
        return result

    def _exchange(
        self, client: HttpClient | BatchingClient, request: httpx.Request
    ) -> httpx.Response:
        try:
            response = self.http.send(request)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise Retryable(f"could not connect: {exc}") from exc  # never left this machine
        except httpx.TransportError as exc:
            # Sent, or partly sent, and no answer: the provider may have processed it.
            if client.idempotent:
                raise Retryable(f"transport error: {exc!r}", maybe_processed=True) from exc
            raise OutcomeUnknown(f"no response: {exc!r}") from exc
        # A 429 refuses the request before any work. Twilio: error 20429, "never processed, safe
        # to retry" (twilio.com/docs/api/errors/20429). SendGrid: a limited endpoint takes no
        # requests for the rest of the refresh period (twilio.com/docs/sendgrid/api-reference/
        # how-to-use-the-sendgrid-v3-api/rate-limits). FCM: QUOTA_EXCEEDED, the sending limit
        # refused the message; retry with backoff (firebase.google.com/docs/cloud-messaging/
        # error-codes).
        if response.status_code == 429:
            wait = retry_after_seconds(response)
            if wait is None:  # SendGrid's 429 names when its window resets instead
                wait = rate_limit_reset_seconds(response)
            raise Retryable("HTTP 429 rate limited", wait)
        if response.status_code >= 500:
            if client.idempotent:
                raise Retryable(
                    f"HTTP {response.status_code}",
                    retry_after_seconds(response),
                    maybe_processed=True,
                )
            raise OutcomeUnknown(f"HTTP {response.status_code}", response.status_code)
        return response
