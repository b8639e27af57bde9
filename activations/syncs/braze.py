"""Braze as a sync destination: user attributes through `POST /users/track`, removals through
`POST /users/delete` (braze.com/docs/api/endpoints/user_data).

- At most 75 attribute objects a request and 50 external ids a delete: requests are always full
  but the last.
- Setting an attribute is idempotent, so a request that got no usable answer (5xx, a dropped
  connection) is sent again: the same objects twice leave the profile as once. A 429 was not
  processed; the wait is Retry-After, else X-RateLimit-Reset.
- Objects Braze leaves out come back as non-fatal `errors` with the object's index: those rows
  are rejected with Braze's words, the rest of the request counts as synced.
- /users/track's limit is per workspace and window (3,000 requests per 3 s by default): no more
  are started in any window than it allows (RequestWindow), and a response saying none remain
  holds every request until the window resets.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import stamina

from activations.channels.core import retry_after_seconds
from activations.channels.policy import HttpTimeouts, RetryPolicy

TRACK_PATH = "/users/track"
DELETE_PATH = "/users/delete"
MAX_ATTRIBUTES = 75
MAX_DELETES = 50


class DestinationAuthError(RuntimeError):
    """The destination refused the credentials: nothing will go through until they are fixed."""


@dataclass(frozen=True)
class RowResult:
    outcome: str  # synced | rejected | failed
    reason: str | None = None


class _Retry(Exception):
    def __init__(self, reason: str, wait: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.wait = wait


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


def _reset_wait(response: httpx.Response) -> float | None:
    reset = response.headers.get("x-ratelimit-reset")
    try:
        return max(0.0, float(reset) - time.time()) if reset else None
    except ValueError:
        return None


class BrazeDestination:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        window: RequestWindow | None = None,
        retry: RetryPolicy | None = None,
        concurrency: int = 4,
        timeouts: HttpTimeouts | None = None,
    ) -> None:
        timeouts = timeouts or HttpTimeouts()
        self.window = window or RequestWindow(3000, 3.0)
        self.retry = retry or RetryPolicy()
        self.concurrency = concurrency
        self.requests = 0  # requests answered (any status), retries included
        self._count = threading.Lock()
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=httpx.Timeout(timeouts.read_seconds, connect=timeouts.connect_seconds),
            limits=httpx.Limits(max_connections=concurrency),
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> BrazeDestination:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def track_attributes(self, objects: Sequence[dict[str, Any]]) -> list[RowResult]:
        """Each object (`external_id` and attributes) set on its user; one result per object."""
        return self._in_batches(objects, MAX_ATTRIBUTES, self._track)

    def delete_users(self, external_ids: Sequence[str]) -> list[RowResult]:
        return self._in_batches(list(external_ids), MAX_DELETES, self._delete)

    def _in_batches(
        self, items: Sequence[Any], size: int, call: Callable[[Sequence[Any]], list[RowResult]]
    ) -> list[RowResult]:
        batches = [items[i : i + size] for i in range(0, len(items), size)]
        if not batches:
            return []
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            answered = list(pool.map(call, batches))
        return [result for batch in answered for result in batch]

    def _track(self, batch: Sequence[dict[str, Any]]) -> list[RowResult]:
        response = self._post(TRACK_PATH, {"attributes": list(batch)}, len(batch))
        if isinstance(response, RowResult):
            return [response] * len(batch)
        refused: dict[int, str] = {}
        for error in _json(response).get("errors") or []:
            if error.get("input_array") == "attributes" and isinstance(error.get("index"), int):
                refused[error["index"]] = str(error.get("type") or "refused by Braze")
        return [
            RowResult("rejected", refused[i]) if i in refused else RowResult("synced")
            for i in range(len(batch))
        ]

    def _delete(self, batch: Sequence[str]) -> list[RowResult]:
        response = self._post(DELETE_PATH, {"external_ids": list(batch)}, len(batch))
        if isinstance(response, RowResult):
            return [response] * len(batch)
        return [RowResult("synced")] * len(batch)

    def _post(self, path: str, body: dict[str, Any], rows: int) -> httpx.Response | RowResult:
        """The 2xx answer, or the one result every row of the request gets."""
        policy = self.retry

        def backoff(exc: Exception) -> bool | float:
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
                    return self._exchange(path, body)
        except _Retry as gave_up:
            return RowResult("failed", f"gave up after retries: {gave_up.reason}")
        except _Refused as refused:
            return RowResult("rejected", refused.reason)
        raise AssertionError("unreachable: stamina either returns or raises")

    def _exchange(self, path: str, body: dict[str, Any]) -> httpx.Response:
        self.window.acquire()
        try:
            response = self._http.post(path, json=body)
        except httpx.TransportError as exc:
            raise _Retry(f"transport error: {exc!r}") from exc  # idempotent: safe to resend
        with self._count:
            self.requests += 1
        if response.headers.get("x-ratelimit-remaining") == "0":
            reset = _reset_wait(response)
            if reset is not None:
                self.window.hold_until(time.time() + reset)
        if response.status_code == 429:
            wait = retry_after_seconds(response)
            raise _Retry(
                "HTTP 429 rate limited", wait if wait is not None else _reset_wait(response)
            )
        if response.status_code in (401, 403):
            raise DestinationAuthError(
                f"Braze answered {response.status_code} to {path}: check SWITCHYARD_BRAZE_API_KEY "
                f"(a REST API key with users.track and users.delete permissions) and "
                f"SWITCHYARD_BRAZE_REST_ENDPOINT ({_json(response).get('message', '')})"
            )
        if response.status_code >= 500:
            raise _Retry(f"HTTP {response.status_code}", retry_after_seconds(response))
        if response.status_code >= 400:
            raise _Refused(f"HTTP {response.status_code}: {_json(response).get('message', '')}")
        return response


class _Refused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
