"""Customer.io's Track API v2 batch endpoint, as its reference describes it
(docs.customer.io/integrations/api/track): `POST /api/v2/batch` with `{"batch": [...]}`, each
entry one operation on one entity (`type` person; `action` identify, delete or event;
`identifiers` naming the person by `id`, `email` or `cio_id`), the whole request under 500 kB.
Basic auth with the workspace's site id and Track API key. Entries it cannot take are listed in
a 207 answer's `errors` (`batch_index`, `reason`, `field`, `message`); the rest are applied. An
attribute set to an empty string is removed from the person.

The store is what a test or the demo looks at: each person's attributes and events.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from sandbox.platforms import RateWindow
from sandbox.providers import Reply, Request

BATCH_PATH = "/api/v2/batch"
# The transactional (App) API: journeys' hand-offs, `Authorization: Bearer <App API key>`.
SEND_PATHS = {"/v1/send/email": "email", "/v1/send/push": "push", "/v1/send/sms": "sms"}
MAX_BATCH_BYTES = 500 * 1024
MAX_ATTRIBUTE_NAME_BYTES = 150  # Customer.io's limits on a person's attributes
MAX_ATTRIBUTE_VALUE_BYTES = 1000
ACTIONS = ("identify", "delete", "event")
_ULID = re.compile(r"[0-7][0-9A-HJKMNP-TV-Z]{25}")


@dataclass
class CustomerIoWorkspace:
    site_id: str
    api_key: str
    app_api_key: str = ""
    window: RateWindow = field(default_factory=lambda: RateWindow(100, 1.0))
    people: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    requests: int = 0
    rate_limited: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def send_transactional(self, req: Request) -> Reply:
        """`POST /v1/send/{email,push,sms}`: the transactional message to the person named by
        `identifiers`, with `message_data`; 200 with a delivery_id."""
        if req.headers.get("authorization", "") != f"Bearer {self.app_api_key}":
            return Reply(401, {"meta": {"error": "Unauthorized request"}})
        try:
            body = json.loads(req.body or b"null")
        except ValueError:
            return Reply(400, {"meta": {"error": "request body is not valid JSON"}})
        if not isinstance(body, dict) or not body.get("transactional_message_id"):
            return Reply(400, {"meta": {"error": "transactional_message_id is required"}})
        identifiers = body.get("identifiers")
        if not isinstance(identifiers, dict) or not identifiers.get("id"):
            return Reply(400, {"meta": {"error": "identifiers must name the person by id"}})
        data = body.get("message_data") or {}
        delivery = uuid.uuid4().hex
        with self._lock:
            self.requests += 1
        accepted = [
            {"provider": "customerio", "channel": SEND_PATHS[req.path],
             "recipient": str(identifiers["id"]), "subject": str(body["transactional_message_id"]),
             "body": json.dumps(data, sort_keys=True), "send_key": data.get("send_key"),
             "provider_message_id": delivery}
        ]  # fmt: skip
        return Reply(
            200, {"delivery_id": delivery, "queued_at": int(time.time())}, accepted=accepted
        )

    def handle(self, req: Request) -> Reply:
        expected = base64.b64encode(f"{self.site_id}:{self.api_key}".encode()).decode()
        if req.headers.get("authorization", "") != f"Basic {expected}":
            return Reply(401, {"meta": {"error": "Unauthorized request"}})
        with self._lock:
            allowed, _ = self.window.take(time.time())
            if not allowed:
                self.rate_limited += 1
                return Reply(429, {"meta": {"error": "Too many requests"}})
        if len(req.body) > MAX_BATCH_BYTES:
            return Reply(400, {"meta": {"error": f"batch is larger than {MAX_BATCH_BYTES} bytes"}})
        try:
            body = json.loads(req.body or b"null")
        except ValueError:
            return Reply(400, {"meta": {"error": "request body is not valid JSON"}})
        batch = body.get("batch") if isinstance(body, dict) else None
        if not isinstance(batch, list) or not batch:
            return Reply(400, {"meta": {"error": "'batch' must be a non-empty array"}})
        errors: list[dict[str, Any]] = []
        with self._lock:
            self.requests += 1
            for index, entry in enumerate(batch):
                problem = _entry_problem(entry)
                if problem is not None:
                    field_name, message = problem
                    errors.append(
                        {"batch_index": index, "reason": "invalid", "field": field_name,
                         "message": message}
                    )  # fmt: skip
                    continue
                self._apply(entry)
        if errors:
            return Reply(207, {"errors": errors})
        return Reply(200, {})

    def _apply(self, entry: dict[str, Any]) -> None:
        person = str(entry["identifiers"].get("id") or entry["identifiers"].get("email"))
        if entry["action"] == "delete":
            self.people.pop(person, None)
            self.deleted.append(person)
        elif entry["action"] == "event":
            if entry.get("id") and any(e.get("id") == entry["id"] for e in self.events):
                return  # Customer.io de-duplicates events by their ULID
            self.events.append({"person": person, **entry})
        else:
            profile = self.people.setdefault(person, {})
            for key, value in (entry.get("attributes") or {}).items():
                if value == "":
                    profile.pop(key, None)  # an empty value removes the attribute
                else:
                    profile[key] = value


def _entry_problem(entry: Any) -> tuple[str, str] | None:
    if not isinstance(entry, dict):
        return "batch", "each entry must be an object"
    if entry.get("type") != "person":
        return "type", "this sandbox plays type person only"
    if entry.get("action") not in ACTIONS:
        return "action", f"action must be one of {list(ACTIONS)}"
    identifiers = entry.get("identifiers")
    if not isinstance(identifiers, dict) or not (identifiers.get("id") or identifiers.get("email")):
        return "identifiers", "identifiers must name the person by id or email"
    if entry["action"] == "event" and not entry.get("name"):
        return "name", "an event needs a name"
    if entry["action"] == "event" and "id" in entry and not _ULID.fullmatch(str(entry["id"])):
        return "id", "an event's id must be a valid ULID"
    attributes = entry.get("attributes") or {}
    if not isinstance(attributes, dict):
        return "attributes", "attributes must be an object"
    for key, value in attributes.items():
        if len(key.encode()) > MAX_ATTRIBUTE_NAME_BYTES:
            return (
                f"attributes.{key}",
                f"attribute names are at most {MAX_ATTRIBUTE_NAME_BYTES} bytes",
            )
        if len(json.dumps(value).encode()) > MAX_ATTRIBUTE_VALUE_BYTES:
            return (
                f"attributes.{key}",
                f"attribute values are at most {MAX_ATTRIBUTE_VALUE_BYTES} bytes",
            )
    return None
