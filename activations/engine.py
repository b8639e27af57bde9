"""Which journey step is due for whom now, minus what the ledger has decided already.

Pure functions over plain rows, so a test can state a scenario (a person, events at times) and the
steps it expects without a warehouse.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from activations.journeys import Journey, Step
from activations.ledger import OUTCOME_UNKNOWN, LedgerState, SendRef, SkipReason, send_key

# An attempt without a recorded outcome is retried once; after that it is failed, visibly.
MAX_UNKNOWN_RETRIES = 1


@dataclass(frozen=True)
class Entry:
    entry_id: str
    person_id: str
    enters_at: datetime
    exited_at: datetime | None = None
    properties: dict[str, Any] = field(default_factory=dict)
    arm: Literal["treatment", "holdout"] = "treatment"  # holdout: the control group


@dataclass(frozen=True)
class Due:
    """A step due now: still to pass the send-time guards."""

    ref: SendRef
    step: Step
    entry: Entry
    due_at: datetime
    attempt_number: int


@dataclass(frozen=True)
class Skip:
    """A due step the engine decides not to send: skipped for a reason, or failed for good."""

    ref: SendRef
    reason: SkipReason | Literal["outcome_unknown"]  # the latter: failed, not skipped


def due_now(
    journey: Journey, entries: Iterable[Entry], ledger: LedgerState, now: datetime
) -> tuple[list[Due], list[Skip]]:
    due: list[Due] = []
    skips: list[Skip] = []
    for entry in entries:
        if entry.enters_at > now:
            continue  # has not entered yet (the conversion window is still open)
        for step in journey.steps:
            due_at = entry.enters_at + timedelta(minutes=step.wait_minutes)
            if due_at > now:
                break  # later steps wait on this one
            ref = SendRef(
                send_key=send_key(journey.name, step.name, entry.person_id, entry.entry_id),
                journey=journey.name,
                step=step.name,
                person_id=entry.person_id,
                entry_id=entry.entry_id,
            )
            if ledger.is_decided(ref.send_key):
                continue
            attempts = ledger.attempts.get(ref.send_key, 0)
            if attempts > MAX_UNKNOWN_RETRIES:
                skips.append(Skip(ref, OUTCOME_UNKNOWN))
                continue
            if entry.arm == "holdout":
                skips.append(Skip(ref, SkipReason.HOLDOUT))  # recorded, never sent
                continue
            if entry.exited_at is not None and entry.exited_at <= now:
                skips.append(Skip(ref, SkipReason.EXITED))
                continue
            expires = step.expires_after_hours
            if expires is not None and now > due_at + timedelta(hours=expires):
                skips.append(Skip(ref, SkipReason.EXPIRED))
                continue
            due.append(Due(ref, step, entry, due_at, attempt_number=attempts + 1))
    due.sort(key=lambda d: (d.due_at, d.ref.send_key))
    return due, skips
