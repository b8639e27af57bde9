"""Iterable as a sync destination (api.iterable.com):

- attributes through `POST /api/users/bulkUpdate` (`dataFields`, merged; null clears a field),
  by `userId` (`preferUserId`), 1,000 users a request here;
- audience membership as a static list: `POST /api/lists/subscribe` and `/unsubscribe`
  (`listId`, `subscribers`), 1,000 a request;
- removals through `DELETE /api/users/byUserId/{userId}`, one user a request;
- events through `POST /api/events/trackBulk` (`eventName`, `createdAt`, `dataFields`), with the
  row's id as the event's `id`, which Iterable de-duplicates on;
- the `Api-Key` header. Iterable limits each endpoint apart, per project: bulkUpdate to 5
  requests a second and trackBulk to 10, as we read its rate-limit table (trackBulk's 10 is
  also cited by Hookdeck's Iterable guide; bulkUpdate's 5 was not checked against a copy of
  the table here), each with its own window; the list and delete calls share the
  destination's window, 10 a second by default, a conservative guess of ours.
  SWITCHYARD_ITERABLE_RATE_LIMIT sets that window, and slows the other two where it is
  slower. Bulk answers
  list the userIds they could not take (`invalidUserIds`, and `failedUpdates` by cause) and
  trackBulk the event names the project blocks (`disallowedEventNames`): those rows are
  rejected with the list that named them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote

from activations.channels.policy import HttpTimeouts, RetryPolicy
from activations.syncs.destination import (
    Change,
    HttpDestination,
    RequestWindow,
    RowResult,
    in_chunks,
    response_json,
)

BULK_UPDATE_PATH = "/api/users/bulkUpdate"
SUBSCRIBE_PATH = "/api/lists/subscribe"
UNSUBSCRIBE_PATH = "/api/lists/unsubscribe"
DELETE_PATH = "/api/users/byUserId/{}"
TRACK_BULK_PATH = "/api/events/trackBulk"
MAX_USERS = 1000
BULK_UPDATES_PER_SECOND = 5
TRACK_BULKS_PER_SECOND = 10


class IterableDestination(HttpDestination):
    name = "iterable"
    credentials_hint = "SWITCHYARD_ITERABLE_API_KEY (a server-side key)"
    batch_rows = MAX_USERS
    dedupes_events = True  # trackBulk updates the event with the same `id`

    def __init__(
        self,
        base_url: str,
        api_key: str,
        window: RequestWindow | None = None,
        retry: RetryPolicy | None = None,
        concurrency: int = 4,
        timeouts: HttpTimeouts | None = None,
        bulk_update_window: RequestWindow | None = None,
        track_bulk_window: RequestWindow | None = None,
    ) -> None:
        """`window`: the list and delete calls'; bulkUpdate and trackBulk have their own."""
        super().__init__(
            base_url,
            {"Api-Key": api_key},
            window or RequestWindow(10, 1.0),
            retry,
            concurrency,
            timeouts,
        )
        # A setting slower than an endpoint's default paces that endpoint too (a project shared
        # with other senders).
        self.endpoint_windows = {
            BULK_UPDATE_PATH: bulk_update_window or _slower(BULK_UPDATES_PER_SECOND, window),
            TRACK_BULK_PATH: track_bulk_window or _slower(TRACK_BULKS_PER_SECOND, window),
        }

    def send(self, changes: Sequence[Change]) -> list[RowResult]:
        results: dict[int, RowResult] = {}
        groups: dict[tuple[str, str | None], list[int]] = {}
        for i, change in enumerate(changes):
            kind = "fields" if change.op in ("upsert", "unset") else change.op
            groups.setdefault((kind, change.membership), []).append(i)
        for (kind, _list), indexes in groups.items():  # one list a request
            if kind == "delete":
                batches: list[Sequence[int]] = [[i] for i in indexes]
                call = self._delete
            else:
                batches = in_chunks(indexes, MAX_USERS)
                call = self._bulk
            answered = self.in_parallel([[changes[i] for i in batch] for batch in batches], call)
            results.update(zip(indexes, answered, strict=True))
        return [results[i] for i in range(len(changes))]

    def _bulk(self, batch: Sequence[Change]) -> list[RowResult]:
        first = batch[0]
        body: dict[str, Any]
        if first.op == "event":
            path, body = TRACK_BULK_PATH, {"events": [_event(c) for c in batch]}
        elif first.op in ("join", "leave"):
            path = SUBSCRIBE_PATH if first.op == "join" else UNSUBSCRIBE_PATH
            body = {
                "listId": int(first.membership or 0),
                "subscribers": [{"userId": c.key, "preferUserId": True} for c in batch],
            }
        else:
            path = BULK_UPDATE_PATH
            body = {"users": [_user(c) for c in batch]}
        response = self.post(path, body, window=self.endpoint_windows.get(path))
        if isinstance(response, RowResult):
            return [response] * len(batch)
        return _per_user(response_json(response), batch)

    def _delete(self, batch: Sequence[Change]) -> list[RowResult]:
        (change,) = batch
        response = self.post(DELETE_PATH.format(quote(change.key, safe="")), None, method="DELETE")
        return [response if isinstance(response, RowResult) else RowResult("synced")]


def _slower(per_second: int, setting: RequestWindow | None) -> RequestWindow:
    """The endpoint's own window: its default, or the setting's pace where that is slower."""
    if setting is not None and setting.limit / setting.seconds < per_second:
        return RequestWindow(setting.limit, setting.seconds)
    return RequestWindow(per_second, 1.0)


def _per_user(answer: dict[str, Any], batch: Sequence[Change]) -> list[RowResult]:
    """A bulk answer names the users it could not take: `invalidUserIds`, and by cause under
    `failedUpdates` (forgotten, not found, conflicting or invalid data); trackBulk also lists
    the event names the project does not allow."""
    refused = {str(u): "invalidUserIds" for u in answer.get("invalidUserIds") or []}
    for cause, ids in (answer.get("failedUpdates") or {}).items():
        if cause.endswith("UserIds") and isinstance(ids, list):
            refused.update((str(u), f"failedUpdates.{cause}") for u in ids)
    blocked = {str(n) for n in answer.get("disallowedEventNames") or []}
    results = []
    for c in batch:
        if c.key in refused:
            results.append(RowResult("rejected", f"Iterable listed {c.key!r} in {refused[c.key]}"))
        elif c.op == "event" and c.event_name in blocked:
            results.append(
                RowResult("rejected", f"Iterable does not allow the event {c.event_name!r}")
            )
        else:
            results.append(RowResult("synced"))
    return results


def _user(change: Change) -> dict[str, Any]:
    fields = dict(change.attributes) if change.op == "upsert" else dict.fromkeys(change.attributes)
    return {"userId": change.key, "dataFields": fields, "preferUserId": True}


def _event(change: Change) -> dict[str, Any]:
    event: dict[str, Any] = {
        "userId": change.key, "eventName": change.event_name,
        "dataFields": dict(change.attributes), "id": change.event_id,
    }  # fmt: skip
    if change.event_time:
        event["createdAt"] = int(datetime.fromisoformat(change.event_time).timestamp())
    return event
