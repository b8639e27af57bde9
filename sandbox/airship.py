"""Airship's named-user endpoints and push, as its API reference describes them
(docs.airship.com/api/ua), `Authorization: Bearer <token>` and
`Accept: application/vnd.urbanairship+json; version=3` on every request:

- `POST /api/channels/attributes`: `{"audience": {"named_user_id": ...}, "attributes": [{"action":
  "set" | "remove", "key", "value", "timestamp"}]}`;
- `POST /api/named_users/tags`: `{"audience": {"named_user_id": [...]}, "add" | "remove":
  {tag group: [tags]}}`;
- `POST /api/custom-events`: a list of `{"occurred", "user": {"named_user_id"}, "body": {"name",
  "properties"}}`;
- `POST /api/named_users/uninstall`: `{"named_user_id": [...]}`: the named users and their
  channels are gone;
- `POST /api/push`: `{"audience": {"named_user": ...}, "notification": {...}, "device_types"}`,
  202 with `push_ids`.
Answers are `{"ok": true, ...}`, or `{"ok": false, "error", "error_code"}` with a 4xx; over the
project's request window, 429 with `Retry-After` (seconds).
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from sandbox.platforms import RateWindow
from sandbox.providers import Reply, Request

ATTRIBUTES_PATH = "/api/channels/attributes"
TAGS_PATH = "/api/named_users/tags"
EVENTS_PATH = "/api/custom-events"
PUSH_PATH = "/api/push"
UNINSTALL_PATH = "/api/named_users/uninstall"
PATHS = (ATTRIBUTES_PATH, TAGS_PATH, EVENTS_PATH, PUSH_PATH, UNINSTALL_PATH)
# a notification's own fields and platform overrides (a title is an override's: ios, android)
NOTIFICATION_FIELDS = {"alert", "actions", "interactive", "ios", "android", "web", "amazon"}
ACCEPT = "application/vnd.urbanairship+json; version=3"
MAX_NAMED_USER = 128  # characters
_KEY = re.compile(r"^[a-z0-9_\-]{1,128}$")  # attribute keys: lowercase, digits, _ and -


def _error(status: int, message: str, code: int) -> Reply:
    return Reply(status, {"ok": False, "error": message, "error_code": code})


@dataclass
class AirshipProject:
    token: str
    users: dict[str, dict[str, Any]] = field(default_factory=dict)  # named user -> attributes
    tags: dict[str, dict[str, set[str]]] = field(default_factory=dict)  # user -> group -> tags
    events: list[dict[str, Any]] = field(default_factory=list)
    uninstalled: list[str] = field(default_factory=list)
    window: RateWindow = field(default_factory=lambda: RateWindow(100, 1.0))
    requests: int = 0
    rate_limited: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, req: Request) -> Reply:
        if req.headers.get("authorization", "") != f"Bearer {self.token}":
            return _error(401, "Unauthorized", 40101)
        if req.headers.get("accept", "") != ACCEPT:
            return _error(406, f"Accept must be {ACCEPT}", 40601)
        try:
            body = json.loads(req.body or b"null")
        except ValueError:
            return _error(400, "Could not parse request body", 40001)
        with self._lock:
            now = time.time()
            allowed, headers = self.window.take(now)
            if not allowed:
                self.rate_limited += 1
                wait = max(1, math.ceil(float(headers["X-RateLimit-Reset"]) - now))
                reply = _error(429, "Too many requests", 42901)
                reply.headers["Retry-After"] = str(wait)
                return reply
            self.requests += 1
            if req.path == ATTRIBUTES_PATH:
                return self._attributes(body)
            if req.path == TAGS_PATH:
                return self._tags(body)
            if req.path == EVENTS_PATH:
                return self._events(body)
            if req.path == UNINSTALL_PATH:
                return self._uninstall(body)
            return self._push(body)

    def _uninstall(self, body: Any) -> Reply:
        users = self._named_user(body, many=True)
        if isinstance(users, str):
            return _error(400, users.replace("audience.", ""), 40011)
        for user in users:
            self.users.pop(user, None)
            self.tags.pop(user, None)
            self.uninstalled.append(user)
        return Reply(200, {"ok": True})

    def _named_user(self, audience: Any, many: bool = False) -> list[str] | str:
        ids = audience.get("named_user_id") if isinstance(audience, dict) else None
        listed = ids if isinstance(ids, list) else [ids]
        valid = all(isinstance(u, str) and 0 < len(u) <= MAX_NAMED_USER for u in listed)
        if not listed or not valid:
            return f"audience.named_user_id must be named users of 1 to {MAX_NAMED_USER} characters"
        if len(listed) > 1 and not many:
            return "audience.named_user_id must be one named user here"
        return listed

    def _attributes(self, body: Any) -> Reply:
        if not isinstance(body, dict):
            return _error(400, "body must be an object", 40001)
        users = self._named_user(body.get("audience"))
        if isinstance(users, str):
            return _error(400, users, 40002)
        attributes = body.get("attributes")
        if not isinstance(attributes, list) or not attributes:
            return _error(400, "attributes must be a non-empty array", 40003)
        for a in attributes:
            if not isinstance(a, dict) or a.get("action") not in ("set", "remove"):
                return _error(400, "each attribute's action is set or remove", 40004)
            if not isinstance(a.get("key"), str) or not _KEY.match(a["key"]):
                return _error(400, f"invalid attribute key: {a.get('key')!r}", 40005)
        profile = self.users.setdefault(users[0], {})
        for a in attributes:
            if a["action"] == "remove":
                profile.pop(a["key"], None)
            else:
                profile[a["key"]] = a.get("value")
        return Reply(200, {"ok": True})

    def _tags(self, body: Any) -> Reply:
        if not isinstance(body, dict):
            return _error(400, "body must be an object", 40001)
        users = self._named_user(body.get("audience"), many=True)
        if isinstance(users, str):
            return _error(400, users, 40002)
        if not body.get("add") and not body.get("remove"):
            return _error(400, "add, remove or set is required", 40006)
        for user in users:
            groups = self.tags.setdefault(user, {})
            self.users.setdefault(user, {})
            for group, tags in (body.get("add") or {}).items():
                groups.setdefault(group, set()).update(tags)
            for group, tags in (body.get("remove") or {}).items():
                groups.setdefault(group, set()).difference_update(tags)
        return Reply(200, {"ok": True})

    def _events(self, body: Any) -> Reply:
        if not isinstance(body, list) or not body:
            return _error(400, "custom events are a non-empty array", 40001)
        for event in body:
            if not isinstance(event, dict):
                return _error(400, "each custom event is an object", 40007)
            user = (event.get("user") or {}).get("named_user_id")
            name = (event.get("body") or {}).get("name")
            if not isinstance(user, str) or not user or not name:
                return _error(400, "each event needs user.named_user_id and body.name", 40007)
        self.events.extend(body)
        return Reply(200, {"ok": True, "operationId": uuid.uuid4().hex})

    def _push(self, body: Any) -> Reply:
        if not isinstance(body, dict) or not isinstance(body.get("notification"), dict):
            return _error(400, "a push needs a notification", 40008)
        audience = body.get("audience") or {}
        user = audience.get("named_user") if isinstance(audience, dict) else None
        if not isinstance(user, str) or not user:
            return _error(400, "this sandbox pushes to one named_user", 40009)
        note = body["notification"]
        unknown = set(note) - NOTIFICATION_FIELDS
        if unknown:
            return _error(400, f"notification has no field {sorted(unknown)[0]!r}", 40010)
        push_id = str(uuid.uuid4())
        android = note.get("android") or {}
        extra = android.get("extra") or {}  # what the app receives
        accepted = [
            {"provider": "airship", "channel": "push", "recipient": user,
             "subject": android.get("title"), "body": note.get("alert"),
             "send_key": extra.get("send_key"), "provider_message_id": push_id}
        ]  # fmt: skip
        return Reply(
            202, {"ok": True, "operation_id": uuid.uuid4().hex, "push_ids": [push_id]},
            accepted=accepted,
        )  # fmt: skip
