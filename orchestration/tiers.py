"""Urgency tiers: how often each tier's journeys (and the models upstream of them) run."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tier:
    name: str
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
