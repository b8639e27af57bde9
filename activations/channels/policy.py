"""Retry and rate-limit settings as explicit objects, not numbers buried in code."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    timeout_seconds: float = 60.0
    wait_initial_seconds: float = 0.2
    wait_max_seconds: float = 10.0
    # Providers ask for a wait in Retry-After; a wait above this is left to a later run.
    max_retry_after_seconds: float = 60.0
    # A message refused before any work until the attempts ran out (429s, no connection) is
    # tried again by a later run: after this long, twice as long after each further attempt
    # (up to the maximum), never sooner than the provider's Retry-After, plus up to a fifth.
    later_run_wait_seconds: float = 60.0
    later_run_wait_max_seconds: float = 3600.0

    def later_run_wait(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds until a later run may try again, after the `attempt`th attempt's refusal."""
        doubled = self.later_run_wait_seconds * 2 ** max(0, attempt - 1)
        wait = max(min(self.later_run_wait_max_seconds, doubled), retry_after or 0.0)
        # jitter: what one refusal window held back does not all come back in one run
        return wait * random.uniform(1.0, 1.2)


@dataclass(frozen=True)
class HttpTimeouts:
    connect_seconds: float = 5.0
    read_seconds: float = 15.0


class RateLimiter:
    """Token bucket: at most `per_second` calls a second on average, bursts up to `burst`."""

    def __init__(self, per_second: float, burst: int | None = None) -> None:
        if per_second <= 0:
            raise ValueError("per_second must be positive")
        self.per_second = per_second
        self.capacity = float(burst or max(1, int(per_second)))
        self._tokens = self.capacity
        self._last = time.monotonic()
        self._lock = threading.Lock()

    def acquire(self, n: int = 1) -> None:
        """Take `n` tokens (a request carrying n messages), waiting as long as the rate needs.
        More than the burst is taken from a full bucket, leaving it in debt: the average holds."""
        need = min(float(n), self.capacity)
        while True:
            with self._lock:
                now = time.monotonic()
                self._tokens = min(
                    self.capacity, self._tokens + (now - self._last) * self.per_second
                )
                self._last = now
                if self._tokens >= need:
                    self._tokens -= n
                    return
                wait = (need - self._tokens) / self.per_second
            time.sleep(wait)
