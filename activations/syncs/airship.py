"""Airship as a sync destination (docs.airship.com/api/ua), by named user:

- attributes through `POST /api/channels/attributes`, one named user a request (`set`, and
  `remove` to clear one);
- audience membership as a tag in the `switchyard` tag group, through `POST /api/named_users/tags`
  (`add` / `remove`), 100 named users a request;
- events through `POST /api/custom-events`, 100 a request; Airship does not de-duplicate them,
  so a request that got no answer is not sent again (its rows' outcome is unknown);
- removals with `on_remove: delete` through `POST /api/named_users/uninstall`, 100 named users
  a request here: Airship deletes the named users and uninstalls their channels;
- `Authorization: Bearer <token>`, `Accept: application/vnd.urbanairship+json; version=3`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from activations.channels.policy import HttpTimeouts, RetryPolicy
from activations.syncs.destination import (
    Change,
    HttpDestination,
    RequestWindow,
    RowResult,
    in_chunks,
)

ATTRIBUTES_PATH = "/api/channels/attributes"
TAGS_PATH = "/api/named_users/tags"
EVENTS_PATH = "/api/custom-events"
UNINSTALL_PATH = "/api/named_users/uninstall"
ACCEPT = "application/vnd.urbanairship+json; version=3"
TAG_GROUP = "switchyard"
MAX_TAGGED = 100
MAX_EVENTS = 100


class AirshipDestination(HttpDestination):
    name = "airship"
    credentials_hint = "SWITCHYARD_AIRSHIP_TOKEN (a bearer token with named user and event access)"
    batch_rows = MAX_TAGGED
    dedupes_events = False  # custom events are recorded as often as sent

    def __init__(
        self,
        base_url: str,
        token: str,
        window: RequestWindow | None = None,
        retry: RetryPolicy | None = None,
        concurrency: int = 4,
        timeouts: HttpTimeouts | None = None,
    ) -> None:
        super().__init__(
            base_url,
            {"Authorization": f"Bearer {token}", "Accept": ACCEPT},
            window or RequestWindow(100, 1.0),
            retry,
            concurrency,
            timeouts,
        )

    def send(self, changes: Sequence[Change]) -> list[RowResult]:
        results: dict[int, RowResult] = {}
        groups: dict[tuple[str, str | None], list[int]] = {}
        for i, change in enumerate(changes):
            kind = "attributes" if change.op in ("upsert", "unset") else change.op
            groups.setdefault((kind, change.membership), []).append(i)
        for (kind, _tag), indexes in groups.items():
            batch = [changes[i] for i in indexes]
            if kind == "attributes":
                answered = self.in_parallel([[c] for c in batch], self._attributes)
            elif kind == "event":
                answered = self.in_parallel(in_chunks(batch, MAX_EVENTS), self._events)
            elif kind == "delete":
                answered = self.in_parallel(in_chunks(batch, MAX_TAGGED), self._uninstall)
            else:
                answered = self.in_parallel(in_chunks(batch, MAX_TAGGED), self._tags)
            results.update(zip(indexes, answered, strict=True))
        return [results[i] for i in range(len(changes))]

    def _attributes(self, batch: Sequence[Change]) -> list[RowResult]:
        (change,) = batch
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
        attributes: list[dict[str, Any]] = []
        for key, value in change.attributes.items():
            if change.op == "unset" or value is None:
                attributes.append({"action": "remove", "key": key, "timestamp": now})
            else:
                attributes.append({"action": "set", "key": key, "value": value, "timestamp": now})
        body = {"audience": {"named_user_id": change.key}, "attributes": attributes}
        answer = self.post(ATTRIBUTES_PATH, body)
        return [answer if isinstance(answer, RowResult) else RowResult("synced")]

    def _tags(self, batch: Sequence[Change]) -> list[RowResult]:
        tag = batch[0].membership or ""
        action = "add" if batch[0].op == "join" else "remove"
        body = {"audience": {"named_user_id": [c.key for c in batch]}, action: {TAG_GROUP: [tag]}}
        answer = self.post(TAGS_PATH, body)
        return [answer if isinstance(answer, RowResult) else RowResult("synced")] * len(batch)

    def _uninstall(self, batch: Sequence[Change]) -> list[RowResult]:
        answer = self.post(UNINSTALL_PATH, {"named_user_id": [c.key for c in batch]})
        return [answer if isinstance(answer, RowResult) else RowResult("synced")] * len(batch)

    def _events(self, batch: Sequence[Change]) -> list[RowResult]:
        body = [
            {
                "occurred": (c.event_time or "")[:19],
                "user": {"named_user_id": c.key},
                "body": {"name": c.event_name, "properties": dict(c.attributes)},
            }
            for c in batch
        ]
        answer = self.post(EVENTS_PATH, body, resend_when_unanswered=False)
        return [answer if isinstance(answer, RowResult) else RowResult("synced")] * len(batch)
