"""One Segment message (track, identify, page, screen, alias, group) checked and put in the shape
that lands in `segment/events`: the same fields Segment's own spec names, with the timestamp
corrected for the client's clock as Segment documents it.

Segment's spec (segment.com/docs/connections/spec/common): `timestamp` is when the event
happened, corrected for clock skew: receivedAt - (sentAt - originalTimestamp), where
originalTimestamp is the client's `timestamp` and sentAt its clock when it sent the batch.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from switchyard.events import iso

MAX_MESSAGE_BYTES = 32 * 1024  # Segment: 32 KB per call, and per event of a batch
MAX_BATCH_BYTES = 500 * 1024  # Segment: 500 KB per batch request
TYPES = ("track", "identify", "page", "screen", "alias", "group")
OBJECT_FIELDS = ("properties", "traits", "context", "integrations")


class Rejected(Exception):
    """A message Segment's API would not take; the reason says what to fix."""


@dataclass(frozen=True)
class Landed:
    message_id: str
    row: dict[str, Any]


def parse_time(value: Any, field: str) -> datetime | None:
    """An ISO 8601 time (aware; naive ones taken as UTC), or None when absent."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise Rejected(f"{field} must be an ISO 8601 string, not {type(value).__name__}")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise Rejected(f"{field} {value!r} is not an ISO 8601 time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def check(
    message: Any,
    received_at: datetime,
    source: str,
    call_type: str | None = None,
    sent_at: Any = None,
    default_id: str | None = None,
) -> Landed:
    """The landed row of `message` (its `type`, or `call_type` for /v1/track and the like), or
    Rejected. `sent_at`: the batch's sentAt, when the message has none of its own; `default_id`:
    its messageId when it has none (one that is the same when the message comes again, such as
    a Kafka offset; else a new one)."""
    if not isinstance(message, dict):
        raise Rejected("a message must be a JSON object")
    size = len(json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode())
    if size > MAX_MESSAGE_BYTES:
        raise Rejected(f"message is {size} bytes; the limit is {MAX_MESSAGE_BYTES} (32 KB)")
    kind = call_type or message.get("type")
    if not isinstance(kind, str) or kind.lower() not in TYPES:
        raise Rejected(f"type must be one of {', '.join(TYPES)}, not {kind!r}")
    kind = kind.lower()
    user_id = _text(message, "userId")
    anonymous_id = _text(message, "anonymousId")
    if user_id is None and anonymous_id is None:
        raise Rejected("a message needs a userId or an anonymousId")
    if kind == "track" and not _text(message, "event"):
        raise Rejected("a track call needs an event name")
    if kind == "alias" and (not _text(message, "previousId") or user_id is None):
        raise Rejected("an alias call needs a userId and a previousId")
    if kind == "group" and not _text(message, "groupId"):
        raise Rejected("a group call needs a groupId")
    for name in OBJECT_FIELDS:
        if message.get(name) is not None and not isinstance(message[name], dict):
            raise Rejected(f"{name} must be a JSON object")
    original = parse_time(message.get("timestamp"), "timestamp")
    sent = parse_time(message.get("sentAt", sent_at), "sentAt")
    try:
        if original is None:
            happened = received_at
        elif sent is None:
            happened = original
        else:
            happened = received_at - (sent - original)
        stamps = [iso(t) if t else None for t in (happened, original, sent)]
    except (OverflowError, ValueError):
        raise Rejected("timestamp and sentAt are too far apart to correct the clock") from None
    message_id = _text(message, "messageId") or default_id or f"sy-{uuid.uuid4()}"
    row = {
        "type": kind,
        "messageId": message_id,
        "event": _text(message, "event"),
        "name": _text(message, "name"),
        "userId": user_id,
        "anonymousId": anonymous_id,
        "previousId": _text(message, "previousId"),
        "groupId": _text(message, "groupId"),
        "timestamp": stamps[0],
        "originalTimestamp": stamps[1],
        "sentAt": stamps[2],
        "receivedAt": iso(received_at),
        "properties": message.get("properties"),
        "traits": message.get("traits"),
        "context": message.get("context"),
        "source": source,
    }
    return Landed(message_id, row)


def reject_row(
    received_at: datetime, source: str, reason: str, message_id: Any, payload: str
) -> dict[str, Any]:
    """A line of segment/rejects: what was refused, why, and (the start of) what was sent."""
    return {
        "rejected_at": iso(received_at),
        "source": source,
        "reason": reason,
        "message_id": message_id if isinstance(message_id, str) else None,
        "payload": payload[: 2 * MAX_MESSAGE_BYTES],
    }


def loads(data: bytes | str) -> Any:
    """JSON as the API takes it: no NaN or Infinity, no number too large for a float."""
    return json.loads(data, parse_constant=_not_json, parse_float=_finite)


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"{text} is too large a number")
    return value


def _text(message: dict[str, Any], field: str) -> str | None:
    """A string or number field as text (Segment takes numeric ids), else None."""
    value = message.get(field)
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return str(value)
    if not isinstance(value, str):
        raise Rejected(f"{field} must be a string, not {type(value).__name__}")
    return value.strip() or None
