"""The sends a tick found due (activations/tick.py), minus what the ledger has decided already,
as the steps the send-time guards and the providers get."""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from activations.journeys import Journey, Step
from activations.ledger import (
    ATTEMPTS_EXHAUSTED,
    MAX_ATTEMPTS,
    OUTCOME_UNKNOWN,
    SUPERSEDED,
    LedgerState,
    SendRef,
    SkipReason,
)
from activations.tick import DueSend

# An attempt without a recorded outcome is sent once more; after that it is failed, visibly.
MAX_UNKNOWN_RETRIES = 1
# A hand-off's platform renders and sends on its own, takes no idempotency key and cannot be
# asked: one in doubt is never handed over again (at most once, as Braze's and Airship's synced
# events). Its attempted line is written just before its request leaves (core.Sender.submit).
HANDOFF_IN_DOUBT = "handed off, outcome unknown; the platform cannot be asked: not sent again"


@dataclass(frozen=True)
class Entry:
    entry_id: str
    person_id: str
    enters_at: datetime
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
    # the last two: failed, not skipped
    reason: SkipReason | Literal["outcome_unknown", "attempts_exhausted", "superseded"]
    detail: str | None = None


def classify(
    journey: Journey,
    due_sends: Collection[DueSend],
    ledger: LedgerState,
    now: datetime,
    can_look_up: Callable[[str], bool] = lambda channel: False,
    owns: Callable[[SendRef], bool] = lambda ref: True,
) -> tuple[list[Due], list[Skip]]:
    """The tick's due sends, minus what the ledger has settled since, split into what goes to the
    send-time guards and what is decided here: the control group, expired steps and attempts
    whose outcome stayed unknown after being sent once more (a hand-off's at once: its platform
    cannot be asked; where `can_look_up` the channel, delivery asks the provider first and sends
    again only what it does not have, a few times).
    `owns`: whether a key the ledger holds is this run's to settle (a partition's run leaves the
    other partitions' keys, whose runs may be sending them right now, to them).
    """
    steps = {s.name: s for s in journey.steps}
    due: list[Due] = []
    skips: list[Skip] = []
    for d in sorted(due_sends, key=lambda d: (d.due_at, d.send_key)):  # oldest first
        step = steps[d.step]
        ref = SendRef(d.send_key, journey.name, d.step, d.person_id, d.entry_id)
        if ledger.is_decided(ref.send_key):
            continue
        attempts = ledger.attempts.get(ref.send_key, 0)
        # those that may have gone out: an attempt the provider refused before any work did not
        doubtful = ledger.doubtful(ref.send_key)
        pending = ledger.pending.get(ref.send_key)
        # In doubt: an attempt may have gone out and no lookup can tell (an attempt whose
        # message the ledger does not hold counts as one).
        # A hand-off's platform offers no lookup by our key, whatever its channel's provider does.
        looked_up = pending is not None and step.handoff is None and can_look_up(pending.channel)
        in_doubt = doubtful > 0 and not looked_up
        if in_doubt and step.handoff is not None:
            skips.append(Skip(ref, OUTCOME_UNKNOWN, HANDOFF_IN_DOUBT))
            continue
        if in_doubt and doubtful > MAX_UNKNOWN_RETRIES:
            skips.append(Skip(ref, OUTCOME_UNKNOWN))
            continue
        # Where the provider's lookup says first whether an attempt went out (delivery asks it
        # first), or the provider refused the attempts, it is sent again only when none went
        # out: up to MAX_ATTEMPTS attempts in all.
        if attempts >= MAX_ATTEMPTS:
            skips.append(Skip(ref, ATTEMPTS_EXHAUSTED))
            continue
        if d.arm == "holdout":
            skips.append(Skip(ref, SkipReason.HOLDOUT))  # recorded, never sent
            continue
        expires = step.expires_after_hours
        if expires is not None and now > d.due_at + timedelta(hours=expires):
            skips.append(Skip(ref, SkipReason.EXPIRED))
            continue
        entry = Entry(
            d.entry_id,
            d.person_id,
            d.entered_at,
            properties=json.loads(d.properties) if d.properties else {},
            arm="holdout" if d.arm == "holdout" else "treatment",
        )
        due.append(Due(ref, step, entry, d.due_at, attempt_number=attempts + 1))
    # An attempt whose outcome is unknown, or a step the cap deferred, of an entry that has left
    # the step since (exited, converted): not sent (again); the first is still settled (the
    # lookup may find it went out), the second recorded as skipped.
    # A key recorded under a person id since merged away is not left either when the same step
    # of the same entry is due under the new id (the ledger carried its attempts there, and the
    # new key's reconciliation settles them); once it is not, the old key is superseded: its
    # outcome is the new key's, so it is neither looked up nor counted as a decision.
    deferred = {k for k, status in ledger.last_status.items() if status == "deferred"}
    due_steps = {(d.entry_id, d.step) for d in due_sends}
    for key in (ledger.pending.keys() | deferred) - {d.send_key for d in due_sends}:
        left = ledger.refs.get(key)
        if (
            left is not None
            and left.journey == journey.name
            and owns(left)
            and (left.entry_id, left.step) not in due_steps
        ):
            successor = ledger.superseded.get(key)
            if successor is None:
                skips.append(Skip(left, SkipReason.EXITED))
            else:
                skips.append(Skip(left, SUPERSEDED, f"goes on as {successor}"))
    return due, skips
