"""What every sync destination shares: the changes it is given, the result per row, and one HTTP
exchange under a request window and a retry policy.

A destination takes a list of `Change`s (set attributes, unset them, delete the user, add or
remove an audience membership, record an event) and answers one `RowResult` per change, in
order; how it groups them into requests (Braze: 75 attribute objects, Customer.io: a 500 kB
batch, Iterable: its bulk endpoints) is its own business.

Attribute updates, deletes and list changes are idempotent: a request that got no usable
answer (5xx, a dropped connection) is sent again, as the same changes twice leave the profile as
once. An event is not (a second send records it twice): `dedupes_events` says whether the
platform de-duplicates them (by an id the change carries), and if not, a lost answer is an
`unknown` row, reported and never sent again.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar

import httpx
import stamina

from activations.channels.core import rate_limit_reset_seconds, retry_after_seconds
from activations.channels.policy import HttpTimeouts, RetryPolicy

Op = Literal[
    "upsert", "unset", "delete", "join", "leave", "subscribe", "unsubscribe", "event", "purchase"
]
T = TypeVar("T")


@dataclass(frozen=True)
class Change:
    op: Op
    key: (
        str  # the user's id at the destination (Braze external_id, Customer.io id, Iterable userId)
    )
    # upsert: attribute -> value; unset: the attributes to clear (values ignored); event: its
    # properties
    attributes: dict[str, Any] = field(default_factory=dict)
    # join / leave: the attribute or list membership is recorded in; subscribe / unsubscribe:
    # the (Braze) subscription group
    membership: str | None = None
    event_name: str | None = None
    event_time: str | None = None  # ISO 8601, UTC
    event_id: str | None = None  # de-duplicates a resent event where the platform takes one
    purchase: dict[str, Any] = field(default_factory=dict)  # Braze: product_id, price, currency


@dataclass(frozen=True)
class RowResult:
    outcome: str  # synced | rejected | failed | unknown (may have been recorded; not resent)
    reason: str | None = None


class DestinationAuthError(RuntimeError):
    """The destination refused the credentials: nothing will go through until they are fixed."""


class Destination(Protocol):
    name: str
    requests: int  # requests answered (any status), retries included
    # rows in a full request of its most common kind: a run hands over multiples of it, so every
    # request is full but the run's last
    batch_rows: int
    # whether a resent event is recorded once (the platform de-duplicates by `event_id`); if not,
    # a run lands `attempted` rows before sending events, so a crash never leads to a resend
    dedupes_events: bool

    def send(self, changes: Sequence[Change]) -> list[RowResult]: ...

    def close(self) -> None: ...


class RequestWindow:
    """At most `limit` requests started in any `seconds`: a log of start times (so no fixed
    window the destination counts in can see more), and a hold until a reset it announced."""

    def __init__(self, limit: int, seconds: float) -> None:
        if limit < 1 or seconds <= 0:
            raise ValueError("a request window needs limit >= 1 and seconds > 0")
        self.limit = limit
        self.seconds = seconds
        self._starts: deque[float] = deque()
        self._held_until = 0.0  # wall-clock epoch seconds
        self._lock = threading.Lock()

    def acquire(self) -> None:
        while True:
            with self._lock:
                now = time.monotonic()
                while self._starts and self._starts[0] <= now - self.seconds:
                    self._starts.popleft()
                wait = max(0.0, self._held_until - time.time())
                if not wait and len(self._starts) < self.limit:
                    self._starts.append(now)
                    return
                if not wait:
                    wait = self._starts[0] + self.seconds - now
            time.sleep(max(wait, 0.001))

    def hold_until(self, epoch_seconds: float) -> None:
        with self._lock:
            self._held_until = max(self._held_until, epoch_seconds)


class _Retry(Exception):
    def __init__(self, reason: str, wait: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.wait = wait


class _Refused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def response_json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


class HttpDestination:
    """The HTTP half of a destination: a client with the platform's auth, the request window,
    and `post`, which answers the 2xx response or the one RowResult all the request's rows get."""

    name = "destination"
    credentials_hint = "the destination's credentials"
    batch_rows = 1
    dedupes_events = False

    def __init__(
        self,
        base_url: str,
        headers: dict[str, str],
        window: RequestWindow,
        retry: RetryPolicy | None = None,
        concurrency: int = 4,
        timeouts: HttpTimeouts | None = None,
        auth: tuple[str, str] | None = None,
    ) -> None:
        timeouts = timeouts or HttpTimeouts()
        self.window = window
        self.retry = retry or RetryPolicy()
        self.concurrency = concurrency
        self.requests = 0
        self._count = threading.Lock()
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers=headers,
            auth=auth,
            timeout=httpx.Timeout(timeouts.read_seconds, connect=timeouts.connect_seconds),
            limits=httpx.Limits(max_connections=concurrency),
        )

    def send(self, changes: Sequence[Change]) -> list[RowResult]:
        raise NotImplementedError(f"{type(self).__name__} sends nothing")

    def close(self) -> None:
        self._http.close()

    def __enter__(self: T) -> T:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def in_parallel(
        self, batches: Sequence[T], call: Callable[[T], list[RowResult]]
    ) -> list[RowResult]:
        """`call` on every batch, `concurrency` at a time; the results in the batches' order."""
        if not batches:
            return []
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            answered = list(pool.map(call, batches))
        return [result for batch in answered for result in batch]

    def post(
        self,
        path: str,
        body: Any,
        method: str = "POST",
        resend_when_unanswered: bool = True,
        window: RequestWindow | None = None,
    ) -> httpx.Response | RowResult:
        """`window`: the endpoint's own limit, where it is not the destination's main one."""
        policy = self.retry

        def backoff(exc: BaseException) -> bool | float:
            if not isinstance(exc, _Retry):
                return False
            if exc.wait is not None:
                return exc.wait <= policy.max_retry_after_seconds and max(exc.wait, 0.001)
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
                    return self._exchange(
                        method, path, body, resend_when_unanswered, window or self.window
                    )
        except _Retry as gave_up:
            return RowResult("failed", f"gave up after retries: {gave_up.reason}")
        except _NoAnswer as unanswered:
            return RowResult("unknown", unanswered.reason)
        except _Refused as refused:
            return RowResult("rejected", refused.reason)
        raise AssertionError("unreachable: stamina either returns or raises")

    def _exchange(
        self,
        method: str,
        path: str,
        body: Any,
        resend_when_unanswered: bool,
        window: RequestWindow,
    ) -> httpx.Response:
        window.acquire()
        try:
            response = self._http.request(method, path, json=body)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise _Retry(f"could not connect: {exc!r}") from exc  # never left this machine
        except httpx.TransportError as exc:
            if not resend_when_unanswered:
                raise _NoAnswer(f"no answer: {exc!r}") from exc
            raise _Retry(f"transport error: {exc!r}") from exc
        with self._count:
            self.requests += 1
        if response.headers.get("x-ratelimit-remaining") == "0":
            reset = rate_limit_reset_seconds(response)
            if reset is not None:
                window.hold_until(time.time() + reset)
        if response.status_code == 429:  # refused before any work: always safe to resend
            wait = retry_after_seconds(response)
            raise _Retry(
                "HTTP 429 rate limited",
                wait if wait is not None else rate_limit_reset_seconds(response),
            )
        if response.status_code in (401, 403):
            raise DestinationAuthError(
                f"{self.name} answered {response.status_code} to {path}: check "
                f"{self.credentials_hint} ({response_json(response) or response.text[:200]})"
            )
        if response.status_code >= 500:
            if not resend_when_unanswered:
                raise _NoAnswer(f"HTTP {response.status_code}")
            raise _Retry(f"HTTP {response.status_code}", retry_after_seconds(response))
        if response.status_code >= 400:
            detail = response_json(response) or response.text[:200]
            raise _Refused(f"HTTP {response.status_code}: {detail}")
        return response


class _NoAnswer(_Refused):
    """Not resent (the platform may have processed it, and would record it twice): the rows'
    outcome is unknown, with this reason, and they are not sent again."""


def in_chunks(items: Sequence[T], size: int) -> list[Sequence[T]]:
    return [items[i : i + size] for i in range(0, len(items), size)]
