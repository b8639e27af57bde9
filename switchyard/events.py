"""Builders for raw landing rows in the shapes producers send (Segment spec, shop, preferences).

The sample-data generator and the tests build rows through these, so both speak one shape.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any


def iso(ts: datetime) -> str:
    """Segment-style ISO-8601 in UTC with a trailing Z."""
    if ts.tzinfo is not None:
        ts = ts.astimezone(UTC).replace(tzinfo=None)
    return ts.isoformat(timespec="milliseconds") + "Z"


def _context(device_id: str | None, push_token: str | None, tz: str | None) -> dict[str, Any]:
    device: dict[str, Any] = {}
    if device_id:
        device["id"] = device_id
    if push_token:
        device["token"] = push_token
    ctx: dict[str, Any] = {"library": {"name": "analytics.js", "version": "4.1.0"}}
    if device:
        ctx["device"] = device
    if tz:
        ctx["timezone"] = tz
    return ctx


def track(
    event: str,
    at: datetime,
    *,
    user_id: str | None = None,
    anonymous_id: str | None = None,
    properties: dict[str, Any] | None = None,
    device_id: str | None = None,
    push_token: str | None = None,
    timezone_name: str | None = None,
    message_id: str | None = None,
) -> dict[str, Any]:
    return {
        "type": "track",
        "messageId": message_id or f"msg-{uuid.uuid4().hex}",
        "event": event,
        "userId": user_id,
        "anonymousId": anonymous_id,
        "timestamp": iso(at),
        "properties": properties or {},
        "context": _context(device_id, push_token, timezone_name),
    }


def identify(
    at: datetime,
    *,
    user_id: str | None,
    anonymous_id: str | None = None,
    traits: dict[str, Any] | None = None,
    device_id: str | None = None,
    push_token: str | None = None,
    timezone_name: str | None = None,
    message_id: str | None = None,
) -> dict[str, Any]:
    return {
        "type": "identify",
        "messageId": message_id or f"msg-{uuid.uuid4().hex}",
        "userId": user_id,
        "anonymousId": anonymous_id,
        "timestamp": iso(at),
        "traits": traits or {},
        "context": _context(device_id, push_token, timezone_name),
    }


def page(
    name: str,
    at: datetime,
    *,
    anonymous_id: str | None,
    user_id: str | None = None,
    message_id: str | None = None,
) -> dict[str, Any]:
    return {
        "type": "page",
        "messageId": message_id or f"msg-{uuid.uuid4().hex}",
        "name": name,
        "userId": user_id,
        "anonymousId": anonymous_id,
        "timestamp": iso(at),
        "properties": {"path": f"/{name.lower().replace(' ', '-')}"},
        "context": _context(None, None, None),
    }


def order(
    order_id: str, at: datetime, *, user_id: str | None, email: str | None, total: float
) -> dict[str, Any]:
    return {
        "order_id": order_id,
        "user_id": user_id,
        "email": email,
        "total": round(total, 2),
        "currency": "USD",
        "status": "completed",
        "created_at": iso(at),
    }


MARKETING = "marketing"  # the topic of channel-wide marketing consent (staging's default)


def consent(
    user_id: str,
    channel: str,
    status: str,
    at: datetime,
    *,
    topic: str = MARKETING,
    source: str = "preference_center",
    consent_id: str | None = None,
) -> dict[str, Any]:
    return {
        "consent_id": consent_id or f"cns-{uuid.uuid4().hex}",
        "user_id": user_id,
        "channel": channel,
        "topic": topic,
        "status": status,
        "source": source,
        "recorded_at": iso(at),
    }


def feedback_event(
    event_id: str, send_key: str, provider: str, channel: str, event: str, at: datetime
) -> dict[str, Any]:
    """A `feedback/events` line: what happened to a send, by its send key."""
    return {"event_id": event_id, "send_key": send_key, "provider": provider,
            "channel": channel, "event": event, "occurred_at": iso(at)}  # fmt: skip


def suppression(
    suppression_id: str, channel: str, address: str, status: str, scope: str, reason: str,
    source: str, at: datetime,
) -> dict[str, Any]:  # fmt: skip
    """A `preferences/suppressions` line: an address not to send to (or lifted)."""
    return {"suppression_id": suppression_id, "channel": channel, "address": address,
            "status": status, "scope": scope, "reason": reason, "source": source,
            "recorded_at": iso(at)}  # fmt: skip
