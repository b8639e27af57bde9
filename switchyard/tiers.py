"""Urgency tiers: the one table of what starts each tier's runs and what each promises.

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
    # `sensor`: a run when intake files land (orchestration/defs/tier_triggers.py); `cron`: a
    # schedule. Dagster's schedules tick at most once a minute, too slow for the seconds tier.
    trigger: Literal["sensor", "cron"]
    cron: str | None
    # The promise: from an event landing to its message, at most this long.
    target_seconds: int
    description: str
    # Whether its runs also run the dbt tests of the models they build (Dagster's checks on
    # them). Four in five dbt nodes upstream of a journey are tests: the seconds tier leaves
    # them to the hourly runs, which rebuild and test the same models.
    runs_tests: bool = True


TIERS: dict[str, Tier] = {
    t.name: t
    for t in (
        Tier("seconds", "sensor", None, 60,
             "in-session moments (cart abandonment): a run as soon as intake files land",
             runs_tests=False),
        Tier("hours", "cron", "0 * * * *", 3600, "onboarding follow-ups, post-purchase: hourly"),
        Tier("days", "cron", "0 6 * * *", 86400, "loyalty, win-back: daily at 06:00 UTC"),
    )
}  # fmt: skip
