"""Braze's user data endpoints, as its REST API reference describes them (braze.com/docs/api):

- `POST /users/track`: `attributes`, `events` and `purchases` arrays of at most 75 objects each,
  every object naming its user (`external_id` here); 201 `{"message": "success",
  "attributes_processed": n, ...}`; objects it cannot take are left out and listed as non-fatal
  `errors` (`type`, `input_array`, `index`) beside "success". An attribute set to null is removed
  from the profile.
- `POST /users/delete`: `external_ids`, at most 50; `{"deleted": n, "message": "success"}`.
- `POST /messages/send`: `external_user_ids` (at most 50) and `messages` with `email` (app_id,
  from, body required), `sms` (a known subscription_group_id, body) or `apple_push` /
  `android_push` (alert); 201 with a dispatch_id.
- `POST /subscription/status/set`: `subscription_group_id`, `subscription_state` (subscribed |
  unsubscribed), `external_id` (at most 50); an unknown group is a 400.
- `Authorization: Bearer <REST API key>`, else 401. A workspace's requests to /users/track are
  limited per window (3,000 per 3 s by default), /users/delete (20,000 a minute) and
  /subscription/status/set (5,000 a minute) each in a window of their own: over it, 429; their
  answers carry `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset` (epoch
  seconds).

The store is what a test or the demo looks at: each user's attributes and events.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from sandbox.platforms import RateWindow
from sandbox.providers import EMAIL, Reply, Request

TRACK_PATH = "/users/track"
DELETE_PATH = "/users/delete"
TRIGGER_PATH = "/campaigns/trigger/send"  # API-triggered campaigns: journeys' hand-offs
SUBSCRIPTION_PATH = "/subscription/status/set"
MAX_SUBSCRIPTION_IDS = 50
MESSAGES_PATH = "/messages/send"
MESSAGE_KINDS = {"email": "email", "sms": "sms", "apple_push": "push", "android_push": "push"}
MAX_TRIGGER_RECIPIENTS = 50
PATHS = (TRACK_PATH, DELETE_PATH, TRIGGER_PATH, SUBSCRIPTION_PATH, MESSAGES_PATH)
TRACK_ARRAYS = ("attributes", "events", "purchases")
MAX_TRACK_OBJECTS = 75
MAX_DELETE_IDS = 50
MAX_EXTERNAL_ID = 997  # characters, as Braze documents for external ids


@dataclass
class BrazeWorkspace:
    """One Braze workspace: its API key, its users and its /users/track rate window."""

    api_key: str
    app_id: str = "braze-sandbox-app"
    window: RateWindow = field(default_factory=RateWindow)
    # the endpoints Braze limits apart from /users/track, each with its own window
    endpoint_windows: dict[str, RateWindow] = field(
        default_factory=lambda: {
            DELETE_PATH: RateWindow(20_000, 60.0),
            SUBSCRIPTION_PATH: RateWindow(5_000, 60.0),
        }
    )
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    # subscription group id -> its subscribed external ids (the groups the workspace has)
    subscriptions: dict[str, set[str]] = field(
        default_factory=lambda: {"sg-lapsed": set(), "sg-sms": set()}
    )
    requests: int = 0  # requests it processed (rate-limited ones not counted)
    rate_limited: int = 0  # requests it answered 429
    objects: int = 0  # attribute objects it accepted
    largest_request: int = 0  # the most objects of one kind in a request it took
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, req: Request) -> Reply:
        if req.headers.get("authorization", "") != f"Bearer {self.api_key}":
            return Reply(401, {"message": "Invalid API key"})
        headers: dict[str, str] = {}
        with self._lock:  # /users/track's window, or the endpoint's own
            window = self.window if req.path == TRACK_PATH else self.endpoint_windows.get(req.path)
            allowed, headers = window.take(time.time()) if window else (True, {})
            if not allowed:
                self.rate_limited += 1
                return Reply(429, {"message": "Rate limit exceeded"}, headers)
        try:
            body = json.loads(req.body or b"null")
        except ValueError:
            return Reply(400, {"message": "Request body is not valid JSON"}, headers)
        if not isinstance(body, dict):
            return Reply(400, {"message": "Request body must be a JSON object"}, headers)
        if req.path == TRIGGER_PATH:
            reply = self._trigger(body)
        elif req.path == SUBSCRIPTION_PATH:
            reply = self._subscription(body)
        elif req.path == MESSAGES_PATH:
            reply = self._messages(body)
        else:
            reply = self._track(body) if req.path == TRACK_PATH else self._delete(body)
        reply.headers.update(headers)
        return reply

    def _track(self, body: dict[str, Any]) -> Reply:
        for name in TRACK_ARRAYS:
            items = body.get(name, [])
            if not isinstance(items, list):
                return Reply(400, {"message": f"'{name}' must be an array"})
            if len(items) > MAX_TRACK_OBJECTS:
                return Reply(
                    400,
                    {"message": f"'{name}' holds {len(items)} objects; at most "
                     f"{MAX_TRACK_OBJECTS} are allowed per request"},
                )  # fmt: skip
        if not any(body.get(name) for name in TRACK_ARRAYS):
            return Reply(400, {"message": "Request has no attributes, events or purchases"})
        errors: list[dict[str, Any]] = []
        processed: dict[str, int] = {}
        with self._lock:
            self.requests += 1
            for name in TRACK_ARRAYS:
                items = body.get(name, [])
                self.largest_request = max(self.largest_request, len(items))
                taken = 0
                for index, item in enumerate(items):
                    problem = _object_problem(name, item)
                    if problem:
                        errors.append({"type": problem, "input_array": name, "index": index})
                        continue
                    taken += 1
                    self._apply(name, item)
                if items:
                    processed[f"{name}_processed"] = taken
            self.objects += processed.get("attributes_processed", 0)
        answer: dict[str, Any] = {"message": "success", **processed}
        if errors:
            answer["errors"] = errors
        return Reply(201, answer)

    def _apply(self, name: str, item: dict[str, Any]) -> None:
        user_id = item["external_id"]
        if name == "attributes":
            profile = self.users.setdefault(user_id, {})
            for key, value in item.items():
                if key in ("external_id", "_update_existing_only"):
                    continue
                if value is None:
                    profile.pop(key, None)  # null removes the attribute
                else:
                    profile[key] = value
        else:
            self.users.setdefault(user_id, {})
            self.events.append({"kind": name, **item})

    def _trigger(self, body: dict[str, Any]) -> Reply:
        """`POST /campaigns/trigger/send`: the campaign's message to each recipient (by
        external_user_id), with their trigger_properties; 201 with a dispatch_id."""
        campaign = body.get("campaign_id")
        recipients = body.get("recipients")
        if not isinstance(campaign, str) or not campaign:
            return Reply(400, {"message": "'campaign_id' is required"})
        if not isinstance(recipients, list) or not recipients:
            return Reply(400, {"message": "'recipients' must be a non-empty array"})
        if len(recipients) > MAX_TRIGGER_RECIPIENTS:
            return Reply(
                400, {"message": f"at most {MAX_TRIGGER_RECIPIENTS} recipients per request"}
            )
        if any(not isinstance(r, dict) or not r.get("external_user_id") for r in recipients):
            return Reply(400, {"message": "each recipient needs an external_user_id"})
        dispatch = uuid.uuid4().hex
        accepted = []
        for r in recipients:
            props = r.get("trigger_properties") or {}
            accepted.append(
                {"provider": "braze", "channel": "braze_campaign",
                 "recipient": str(r["external_user_id"]), "subject": campaign,
                 "body": json.dumps(props, sort_keys=True),
                 "send_key": props.get("send_key"), "provider_message_id": dispatch}
            )  # fmt: skip
        with self._lock:
            self.requests += 1
        return Reply(201, {"dispatch_id": dispatch, "message": "success"}, accepted=accepted)

    def _messages(self, body: dict[str, Any]) -> Reply:
        ids, messages = body.get("external_user_ids"), body.get("messages")
        if not isinstance(ids, list) or not ids or len(ids) > MAX_TRIGGER_RECIPIENTS:
            return Reply(400, {"message": "external_user_ids must list 1 to 50 users"})
        if not isinstance(messages, dict) or not messages or set(messages) - set(MESSAGE_KINDS):
            return Reply(400, {"message": f"messages holds objects of {sorted(MESSAGE_KINDS)}"})
        email, sms = messages.get("email"), messages.get("sms")
        if email is not None and (
            email.get("app_id") != self.app_id or not email.get("from") or not email.get("body")
        ):
            return Reply(400, {"message": "email needs a valid app_id, a from and a body"})
        if sms is not None and (
            sms.get("subscription_group_id") not in self.subscriptions or not sms.get("body")
        ):
            return Reply(400, {"message": "sms needs a valid subscription_group_id and a body"})
        android = messages.get("android_push")
        if android is not None and not android.get("title"):
            return Reply(400, {"message": "android_push needs a title"})
        apple = messages.get("apple_push")
        if apple is not None and not isinstance(apple.get("alert"), str | dict):
            return Reply(400, {"message": "apple_push needs an alert"})
        dispatch = uuid.uuid4().hex
        kind = next(iter(messages))
        content = messages[kind]
        if kind == "apple_push" and isinstance(content.get("alert"), dict):
            content = {**content, **content["alert"]}
        extra = content.get("extras") or content.get("extra") or {}
        accepted = [
            {"provider": "braze", "channel": MESSAGE_KINDS[kind], "recipient": str(user),
             "subject": content.get("subject") or content.get("title"),
             "body": content.get("body") or content.get("alert"),
             "send_key": extra.get("send_key"), "provider_message_id": dispatch}
            for user in ids
        ]  # fmt: skip
        with self._lock:
            self.requests += 1
        return Reply(201, {"dispatch_id": dispatch, "message": "success"}, accepted=accepted)

    def _subscription(self, body: dict[str, Any]) -> Reply:
        group, state = body.get("subscription_group_id"), body.get("subscription_state")
        ids = body.get("external_id")
        if state not in ("subscribed", "unsubscribed"):
            return Reply(400, {"message": "subscription_state must be subscribed or unsubscribed"})
        if not isinstance(ids, list) or not ids or len(ids) > MAX_SUBSCRIPTION_IDS:
            return Reply(
                400, {"message": f"external_id must list 1 to {MAX_SUBSCRIPTION_IDS} users"}
            )
        with self._lock:
            if group not in self.subscriptions:
                return Reply(400, {"message": f"Invalid subscription group id: {group!r}"})
            self.requests += 1
            members = self.subscriptions[group]
            for user_id in map(str, ids):
                self.users.setdefault(user_id, {})
                (members.add if state == "subscribed" else members.discard)(user_id)
        return Reply(201, {"message": "success"})

    def _delete(self, body: dict[str, Any]) -> Reply:
        ids = body.get("external_ids")
        if not isinstance(ids, list) or not ids:
            return Reply(400, {"message": "'external_ids' must be a non-empty array"})
        if len(ids) > MAX_DELETE_IDS:
            return Reply(400, {"message": f"at most {MAX_DELETE_IDS} external_ids per request"})
        with self._lock:
            self.requests += 1
            deleted = 0
            for user_id in ids:
                if self.users.pop(str(user_id), None) is not None:
                    deleted += 1
                self.deleted.append(str(user_id))
        return Reply(202, {"deleted": deleted, "message": "success"})


_ATTRIBUTE_NAME = re.compile(r"^[^$][^.]*$")  # no leading "$", no "." (Braze's custom names)


def _object_problem(array: str, item: Any) -> str | None:
    """Why Braze would leave this object out (a non-fatal error), or None."""
    if not isinstance(item, dict):
        return "object must be a JSON object"
    user_id = item.get("external_id")
    if not isinstance(user_id, str) or not user_id:
        return "'external_id' or 'braze_id' or 'user_alias' is required"
    if len(user_id) > MAX_EXTERNAL_ID:
        return f"'external_id' is longer than {MAX_EXTERNAL_ID} characters"
    if array == "attributes":
        email = item.get("email")
        if email is not None and (not isinstance(email, str) or not EMAIL.match(email)):
            return f"Invalid email address: {email!r}"
        for key in item:
            if not _ATTRIBUTE_NAME.match(key):
                return f"Invalid custom attribute name: {key!r}"
    if array == "events" and not item.get("name"):
        return "Event name is required"
    if array == "purchases":
        currency = item.get("currency")
        if not item.get("product_id") or not isinstance(item.get("price"), int | float):
            return "Purchase requires product_id and a numeric price"
        if not isinstance(currency, str) or not re.fullmatch(r"[A-Z]{3}", currency):
            return f"Invalid currency code: {currency!r} (ISO 4217, three capital letters)"
    return None
