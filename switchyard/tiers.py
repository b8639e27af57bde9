"""Urgency tiers: the one table of how often each tier's journeys (and their models) run.

A journey names its tier in its declaration; a name not in this table fails validation, so a typo
cannot leave a journey without a schedule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

TierName = Literal["seconds", "hours", "days"]


@dataclass(frozen=True)
class Tier:
    name: TierName
    cron: str
    description: str


# Dagster schedules tick at most once a minute; the seconds tier is for sensors on fresh landing
# files, and runs every minute on a schedule until then.
TIERS: dict[str, Tier] = {
    t.name: t
    for t in (
        Tier("seconds", "* * * * *", "in-session moments: cart abandonment, browse abandonment"),
        Tier("hours", "0 * * * *", "onboarding follow-ups, post-purchase"),
        Tier("days", "0 6 * * *", "loyalty, win-back"),
    )
}
