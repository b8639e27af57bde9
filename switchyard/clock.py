"""Time in one convention: naive datetimes in UTC, everywhere the warehouse and the ledger see.

Landed timestamps, the audience's `enters_at` and the ledger's `recorded_at` are all UTC without an
offset; a time given by a user may carry any offset and is converted here, once.
"""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def parse_utc(text: str) -> datetime:
    """Any ISO 8601 time (`2026-11-24T10:00`, `...Z`, `...+02:00`) as a naive UTC datetime.

    A time without an offset is taken to be UTC already.
    """
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"not an ISO 8601 time: {text!r} (for example 2026-11-24T10:00Z or "
            "2026-11-24T11:00+01:00)"
        ) from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed
