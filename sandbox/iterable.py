"""Iterable's user and list endpoints, as its API reference describes them (api.iterable.com):

- `POST /api/users/bulkUpdate` `{"users": [{"userId", "dataFields", "preferUserId"}]}`: data
  fields merged into each user (a field set to null is cleared); 5 requests a second per
  project, and trackBulk 10, each in its own window (the other calls share one of 10);
- `POST /api/lists/subscribe` and `/api/lists/unsubscribe` `{"listId", "subscribers": [...]}`;
- `DELETE /api/users/byUserId/{userId}`;
- the `Api-Key` header. Bulk answers count what they took and list the users they could not:
  `{"successCount", "failCount", "invalidEmails", "invalidUserIds"}`, users the project has
  forgotten (a GDPR request) under `failedUpdates.forgottenUserIds`, and trackBulk events whose
  name the project blocks under `disallowedEventNames`.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from sandbox.platforms import RateWindow
from sandbox.providers import Reply, Request

BULK_UPDATE_PATH = "/api/users/bulkUpdate"
SUBSCRIBE_PATH = "/api/lists/subscribe"
UNSUBSCRIBE_PATH = "/api/lists/unsubscribe"
DELETE_PREFIX = "/api/users/byUserId/"
TRACK_BULK_PATH = "/api/events/trackBulk"
# Triggered campaigns to one user: journeys' hand-offs.
TARGET_PATHS = {
    "/api/email/target": "email", "/api/push/target": "push", "/api/sms/target": "sms",
    "/api/inApp/target": "in_app",
}  # fmt: skip
MAX_USER_ID = 52  # characters: Iterable's limit on a userId


@dataclass
class IterableProject:
    api_key: str
    window: RateWindow = field(default_factory=lambda: RateWindow(10, 1.0))  # the other calls
    # the endpoints Iterable limits on their own, per project
    endpoint_windows: dict[str, RateWindow] = field(
        default_factory=lambda: {
            BULK_UPDATE_PATH: RateWindow(5, 1.0),
            TRACK_BULK_PATH: RateWindow(10, 1.0),
        }
    )
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: dict[str, dict[str, Any]] = field(default_factory=dict)  # by id: a resend replaces
    lists: dict[int, set[str]] = field(default_factory=dict)
    deleted: list[str] = field(default_factory=list)
    forgotten: set[str] = field(default_factory=set)  # updates to them fail
    disallowed_events: set[str] = field(default_factory=set)  # event names the project blocks
    requests: int = 0
    rate_limited: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def handles(self, method: str, path: str) -> bool:
        if method == "DELETE":
            return path.startswith(DELETE_PREFIX)
        return method == "POST" and (
            path in (BULK_UPDATE_PATH, SUBSCRIBE_PATH, UNSUBSCRIBE_PATH, TRACK_BULK_PATH)
            or path in TARGET_PATHS
        )

    def handle(self, req: Request) -> Reply:
        if req.headers.get("api-key", "") != self.api_key:
            return Reply(401, {"msg": "Invalid API key", "code": "BadApiKey", "params": None})
        with self._lock:
            allowed, _ = self.endpoint_windows.get(req.path, self.window).take(time.time())
            if not allowed:
                self.rate_limited += 1
                return Reply(429, {"msg": "Rate limit exceeded", "code": "RateLimitExceeded"})
        if req.method == "DELETE":
            user_id = unquote(req.path.removeprefix(DELETE_PREFIX))
            with self._lock:
                self.requests += 1
                if self.users.pop(user_id, None) is None:
                    return Reply(
                        400, {"msg": f"user {user_id} does not exist", "code": "BadParams"}
                    )
                self.deleted.append(user_id)
            return Reply(200, {"msg": "success", "code": "Success", "params": None})
        try:
            body = json.loads(req.body or b"null")
        except ValueError:
            return Reply(400, {"msg": "request body is not valid JSON", "code": "BadJsonBody"})
        if not isinstance(body, dict):
            return Reply(400, {"msg": "request body must be an object", "code": "BadJsonBody"})
        if req.path in TARGET_PATHS:
            return self._target(req.path, body)
        if req.path == BULK_UPDATE_PATH:
            entries, key = body.get("users"), "users"
        elif req.path == TRACK_BULK_PATH:
            entries, key = body.get("events"), "events"
        else:
            entries, key = body.get("subscribers"), "subscribers"
            if not isinstance(body.get("listId"), int):
                return Reply(400, {"msg": "listId must be a number", "code": "BadParams"})
        if not isinstance(entries, list) or not entries:
            return Reply(400, {"msg": f"'{key}' must be a non-empty array", "code": "BadParams"})
        invalid: list[str] = []
        forgotten: list[str] = []
        disallowed: set[str] = set()
        with self._lock:
            self.requests += 1
            for entry in entries:
                given: Any = entry.get("userId") if isinstance(entry, dict) else None
                user_id = given if isinstance(given, str) else ""
                if not isinstance(given, str) or not user_id or len(user_id) > MAX_USER_ID:
                    invalid.append(str(given))
                    continue
                if user_id in self.forgotten:
                    forgotten.append(user_id)
                    continue
                if req.path == TRACK_BULK_PATH and entry.get("eventName") in self.disallowed_events:
                    disallowed.add(str(entry["eventName"]))
                    continue
                if req.path == BULK_UPDATE_PATH:
                    fields = self.users.setdefault(user_id, {})
                    for name, value in (entry.get("dataFields") or {}).items():
                        if value is None:
                            fields.pop(name, None)
                        else:
                            fields[name] = value
                elif req.path == TRACK_BULK_PATH:
                    self.users.setdefault(user_id, {})
                    self.events[str(entry.get("id") or uuid.uuid4().hex)] = entry
                elif req.path == SUBSCRIBE_PATH:
                    self.users.setdefault(user_id, {})
                    self.lists.setdefault(body["listId"], set()).add(user_id)
                else:
                    self.lists.setdefault(body["listId"], set()).discard(user_id)
        failed = (
            len(invalid)
            + len(forgotten)
            + sum(1 for e in entries if isinstance(e, dict) and e.get("eventName") in disallowed)
        )
        answer: dict[str, Any] = {
            "successCount": len(entries) - failed, "failCount": failed,
            "invalidEmails": [], "invalidUserIds": invalid,
            "failedUpdates": {"forgottenUserIds": forgotten, "forgottenEmails": []},
        }  # fmt: skip
        if req.path == TRACK_BULK_PATH:
            answer["disallowedEventNames"] = sorted(disallowed)
        return Reply(200, answer)

    def _target(self, path: str, body: dict[str, Any]) -> Reply:
        """`POST /api/{medium}/target`: the campaign sent to one user, with `dataFields`."""
        if not isinstance(body.get("campaignId"), int):
            return Reply(400, {"msg": "campaignId must be a number", "code": "BadParams"})
        user_id = body.get("recipientUserId")
        if not isinstance(user_id, str) or not user_id:
            return Reply(400, {"msg": "recipientUserId or recipientEmail is required",
                               "code": "BadParams"})  # fmt: skip
        data = body.get("dataFields") or {}
        with self._lock:
            self.requests += 1
        accepted = [
            {"provider": "iterable", "channel": TARGET_PATHS[path], "recipient": user_id,
             "subject": str(body["campaignId"]), "body": json.dumps(data, sort_keys=True),
             "send_key": data.get("send_key"), "provider_message_id": ""}
        ]  # fmt: skip
        return Reply(200, {"msg": "", "code": "Success", "params": None}, accepted=accepted)
