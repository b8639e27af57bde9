"""The ledger's columns and its closed sets: line statuses and the reasons a send is held back.

dbt reads the same sets: `vars.delivery` in dbt_project.yml lists the skip reasons (the step
metrics get one column per reason, and staging's accepted_values test fails on any other), and
the `ledger.deliveries` source declares these columns. tests/test_landing.py keeps both in step.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Final, Literal

COLUMNS: dict[str, str] = {
    "send_key": "VARCHAR",
    "run_id": "VARCHAR",
    "journey": "VARCHAR",
    "step": "VARCHAR",
    "person_id": "VARCHAR",
    "entry_id": "VARCHAR",
    "channel": "VARCHAR",
    "recipient": "VARCHAR",
    "status": "VARCHAR",
    "reason": "VARCHAR",
    "reason_detail": "VARCHAR",
    "attempt": "INTEGER",
    "http_status": "INTEGER",
    "provider_message_id": "VARCHAR",
    "segments": "INTEGER",  # SMS: segments the text is billed as (GSM-7 or UCS-2)
    "subject": "VARCHAR",
    "body": "VARCHAR",
    "recorded_at": "VARCHAR",
}

# attempted: written before the provider call. unknown: the call ended without a usable answer.
# deferred: held back for now (the frequency cap, quiet hours, a provider that refused the
# attempt before any work), due again on a later run until it expires.
LedgerStatus = Literal["attempted", "sent", "failed", "skipped", "unknown", "deferred"]
TERMINAL: tuple[LedgerStatus, ...] = ("sent", "failed", "skipped")


class SkipReason(StrEnum):
    """Why a due step was not sent (status `skipped`); decided before any provider call."""

    NO_PROFILE = "no_profile"  # the entry's person is not in dim_people
    NO_CONSENT = "no_consent"  # no channel of the step is consented to
    NO_ADDRESS = "no_address"  # consented, but no address on any such channel
    INVALID_ADDRESS = "invalid_address"  # consented, but every address is malformed (detail)
    SUPPRESSED = "suppressed"  # every consented address is suppressed (bounce, STOP; detail)
    CAPPED = "capped"  # the global frequency cap was reached
    EXITED = "exited"  # the person left the journey before the step was due
    EXPIRED = "expired"  # the step was due longer ago than its expiry
    MISSING_VARIABLE = "missing_variable"  # reason_detail names it
    UNRENDERABLE_TEMPLATE = "unrenderable_template"  # a filter or the sandbox refused (detail)
    CONNECTED_CONTENT_FAILED = "connected_content_failed"  # the fetch failed (URL and why)
    HOLDOUT = "holdout"  # the person is in the journey's control group


class DeferReason(StrEnum):
    """Why a due step is held back for now (status `deferred`, reason_detail 'until <when>')."""

    CAPPED = "capped"  # the frequency cap (on_cap defer)
    QUIET_HOURS = "quiet_hours"  # the person's quiet hours
    PROVIDER_DOWN = "provider_down"  # the channel's provider kept failing this run
    # The provider refused the attempt before any work (429, no connection) until the run's
    # retries ran out: nothing went out, and this line settles the attempt (it is not in doubt).
    # reason_detail 'until <when>; <the last refusal>'. A later run tries again from then.
    RETRYING = "retrying"


def deferred_until(detail: str | None) -> datetime | None:
    """The time in a deferral's reason_detail ('until <ISO time>[; why]'), or None."""
    if not detail or not detail.startswith("until "):
        return None
    try:
        return datetime.fromisoformat(detail[len("until ") :].split(";", 1)[0].strip())
    except ValueError:
        return None


# Status `failed`: an attempt whose outcome stayed unknown was already sent once more (a hand-off's
# at once: its platform cannot be asked, and it is never handed over again).
OUTCOME_UNKNOWN: Final = "outcome_unknown"
# Status `failed`: none of the step's attempts arrived (the provider's lookup found none, or it
# refused them before any work), and it was attempted as often as the engine allows: the dead
# letter (not a send: it does not count toward the cap). reason_detail says why.
ATTEMPTS_EXHAUSTED: Final = "attempts_exhausted"
# A step none of whose attempts arrived is attempted up to this many times in all (each run's
# attempt has its own retries first: RetryPolicy.attempts).
MAX_ATTEMPTS: Final = 5
# Status `skipped`, but not a decision of its own (no SkipReason, no metrics column): a key
# recorded under a person id since merged away, whose step goes on under the key of the person
# who holds its identifiers now (reason_detail 'goes on as <key>').
SUPERSEDED: Final = "superseded"
