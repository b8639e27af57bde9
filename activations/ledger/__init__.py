"""The delivery ledger: append-only landing files, read back by dbt and by the next run's diff.

Every provider call is bracketed: an `attempted` line is fsynced before the call and a `sent`,
`failed` or `unknown` line after it. A key whose last line is `attempted` (a crash mid-call) or
`unknown` (a lost response) may have gone out: it is reconciled through the provider's lookup
where there is one, and otherwise sent at most once more, visibly (its attempt number goes up).
An attempt the provider refused before any work (a `deferred` line, reason `retrying`, after it)
went nowhere: a key is in doubt while it has more attempts than refusals. A later run tries a
refused key again, up to MAX_ATTEMPTS attempts; then it is failed as `attempts_exhausted` (or
`outcome_unknown` when one may have gone out).
"""

from activations.ledger.keys import SendRef, send_key
from activations.ledger.reader import (
    LedgerState,
    PendingAttempt,
    create_decided,
    decided_on_their_own,
    open_keys,
    read_state,
)
from activations.ledger.vocabulary import (
    ATTEMPTS_EXHAUSTED,
    COLUMNS,
    MAX_ATTEMPTS,
    OUTCOME_UNKNOWN,
    SUPERSEDED,
    TERMINAL,
    DeferReason,
    LedgerStatus,
    SkipReason,
    deferred_until,
)
from activations.ledger.writer import LedgerWriter

__all__ = [
    "COLUMNS",
    "DeferReason",
    "ATTEMPTS_EXHAUSTED",
    "MAX_ATTEMPTS",
    "OUTCOME_UNKNOWN",
    "SUPERSEDED",
    "TERMINAL",
    "create_decided",
    "decided_on_their_own",
    "deferred_until",
    "LedgerState",
    "LedgerStatus",
    "LedgerWriter",
    "PendingAttempt",
    "open_keys",
    "SendRef",
    "SkipReason",
    "read_state",
    "send_key",
]
