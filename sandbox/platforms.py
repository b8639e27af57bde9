"""What the sandbox's engagement platforms (Braze, Customer.io, Iterable, Airship) share: a
per-workspace rate window, as each platform counts requests, with the headers it answers with."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class RateWindow:
    """A fixed window of `limit` requests per `seconds`."""

    limit: int = 3000
    seconds: float = 3.0
    _start: float = 0.0
    _used: int = 0

    def take(self, now: float) -> tuple[bool, dict[str, str]]:
        """Whether one more request fits now, and the rate-limit headers Braze answers with
        (X-RateLimit-Limit, -Remaining and -Reset in epoch seconds); the platforms that
        document none send none."""
        if now >= self._start + self.seconds:
            self._start = math.floor(now / self.seconds) * self.seconds
            self._used = 0
        allowed = self._used < self.limit
        if allowed:
            self._used += 1
        reset = self._start + self.seconds
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(max(0, self.limit - self._used)),
            "X-RateLimit-Reset": f"{reset:.3f}",
        }
        return allowed, headers
