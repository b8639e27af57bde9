"""mParticle Events API batches (`/v2/events`: one batch, `/v2/bulkevents`: an array of them) as
Segment calls, so they land in the same shape and pass the same checks (intake/segment.py).

A batch is one user: `user_identities.customer_id` is the userId, the mParticle id (`mpid`) or a
device id the anonymousId; `user_attributes` and the email and mobile identities become an
identify call's traits. Events: `custom_event` is a track (its `event_name`, its
`custom_attributes` as properties), `screen_view` a screen; any other event type is a track
named after the type, its data as properties.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

DEVICE_IDS = ("ios_idfv", "android_uuid", "ios_advertising_id", "android_advertising_id")


def to_segment(batch: Any) -> list[Any]:
    """The Segment messages of one mParticle batch (each still to be checked)."""
    if not isinstance(batch, dict):
        raise ValueError("an mParticle batch is a JSON object")
    identities = batch.get("user_identities") or {}
    device = batch.get("device_info") or {}
    if not isinstance(identities, dict) or not isinstance(device, dict):
        raise ValueError("user_identities and device_info must be JSON objects")
    user_id = identities.get("customer_id")
    anonymous = batch.get("mpid") or _first_device_id(device)
    request = str(batch.get("source_request_id") or uuid.uuid4())
    base: dict[str, Any] = {
        "userId": user_id,
        "anonymousId": str(anonymous) if anonymous is not None else None,
        "context": {"source": "mparticle", "device": {"id": _first_device_id(device)}},
    }
    messages: list[Any] = []
    attributes = batch.get("user_attributes") or {}
    if not isinstance(attributes, dict):
        raise ValueError("user_attributes must be a JSON object")
    traits = dict(attributes)
    if identities.get("email"):
        traits["email"] = identities["email"]
    if identities.get("mobile_number"):
        traits["phone"] = identities["mobile_number"]
    if traits:
        messages.append({**base, "type": "identify", "messageId": f"mp-{request}-identify",
                         "traits": traits})  # fmt: skip
    events = batch.get("events") or []
    if not isinstance(events, list):
        raise ValueError("events must be a JSON array")
    for n, event in enumerate(events):
        if not isinstance(event, dict) or not isinstance(event.get("data", {}), dict):
            messages.append(event)  # refused by the check, with its reason
            continue
        data = event.get("data") or {}
        kind = event.get("event_type")
        message: dict[str, Any] = {
            **base,
            "messageId": str(data.get("source_message_id") or f"mp-{request}-{n}"),
            "timestamp": _time(data.get("timestamp_unixtime_ms")),
        }
        if kind == "custom_event":
            message.update(type="track", event=data.get("event_name"),
                           properties=data.get("custom_attributes") or {})  # fmt: skip
        elif kind == "screen_view":
            message.update(type="screen", name=data.get("screen_name"),
                           properties=data.get("custom_attributes") or {})  # fmt: skip
        elif isinstance(kind, str) and kind:
            message.update(type="track", event=kind, properties=data)
        else:
            message.update(type=None)  # refused: "type must be one of ..."
        messages.append(message)
    return messages


def _first_device_id(device: dict[str, Any]) -> str | None:
    return next((str(device[k]) for k in DEVICE_IDS if device.get(k)), None)


def _time(millis: Any) -> str | None:
    if isinstance(millis, bool) or not isinstance(millis, int | float):
        return None
    try:
        return datetime.fromtimestamp(millis / 1000, UTC).isoformat()
    except (OverflowError, OSError, ValueError):
        return None
