"""Braze as a sync destination (braze.com/docs/api/endpoints/user_data):

- attributes, unsets (null removes an attribute) and audience memberships (a boolean custom
  attribute) through `POST /users/track`, 75 attribute objects a request (Braze's limit; every
  request full but the last); objects Braze leaves out come back as non-fatal `errors` naming the
  object's index: those rows are rejected with Braze's words, the rest count as synced;
- events and purchases through `/users/track` too (`events`, `purchases`, 75 of each a
  request): Braze does not de-duplicate them,
  so a request of events that got no answer is not sent again (its rows' outcome is unknown);
- removals through `POST /users/delete`, 50 external ids a request;
- an audience kept in a subscription group (`subscription_group`) through
  `POST /subscription/status/set`, 50 external ids a request (5,000 requests a minute);
- `Authorization: Bearer <REST API key>`; /users/track is limited per workspace and window
  (3,000 requests per 3 s by default), /users/delete apart (20,000 a minute, shared with the
  alias and identify endpoints, which syncs do not call).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import httpx

from activations.channels.policy import HttpTimeouts, RetryPolicy
from activations.syncs.destination import (
    Change,
    HttpDestination,
    RequestWindow,
    RowResult,
    in_chunks,
    response_json,
)

TRACK_PATH = "/users/track"
DELETE_PATH = "/users/delete"
MAX_ATTRIBUTES = 75
MAX_EVENTS = 75
MAX_PURCHASES = 75
MAX_DELETES = 50
DELETES_PER_MINUTE = 20_000
SUBSCRIPTION_PATH = "/subscription/status/set"
MAX_SUBSCRIPTION_IDS = 50
SUBSCRIPTIONS_PER_MINUTE = 5_000


def event_object(change: Change) -> dict[str, Any]:
    return {
        "external_id": change.key,
        "name": change.event_name,
        "time": change.event_time,
        "properties": dict(change.attributes),
    }


def purchase_object(change: Change) -> dict[str, Any]:
    return {
        "external_id": change.key,
        **change.purchase,
        "time": change.event_time,
        "properties": dict(change.attributes),
    }


def attribute_object(change: Change) -> dict[str, Any]:
    """The /users/track attributes object a change becomes."""
    obj: dict[str, Any] = {"external_id": change.key}
    if change.op == "upsert":
        obj.update(change.attributes)
    elif change.op == "unset":
        obj.update(dict.fromkeys(change.attributes))
    elif change.op in ("join", "leave"):
        assert change.membership is not None
        obj[change.membership] = change.op == "join"
    else:
        raise ValueError(f"Braze has no attributes object for a {change.op!r} change")
    return obj


class BrazeDestination(HttpDestination):
    name = "braze"
    credentials_hint = (
        "SWITCHYARD_BRAZE_API_KEY (a REST API key with users.track and users.delete) and "
        "SWITCHYARD_BRAZE_REST_ENDPOINT"
    )
    batch_rows = MAX_ATTRIBUTES
    dedupes_events = False  # /users/track records every event and purchase it is given

    def __init__(
        self,
        base_url: str,
        api_key: str,
        window: RequestWindow | None = None,
        retry: RetryPolicy | None = None,
        concurrency: int = 4,
        timeouts: HttpTimeouts | None = None,
        delete_window: RequestWindow | None = None,
        subscription_window: RequestWindow | None = None,
    ) -> None:
        """`window`: /users/track's; `delete_window` and `subscription_window`: those
        endpoints' own, apart from it (Braze's defaults)."""
        super().__init__(
            base_url,
            {"Authorization": f"Bearer {api_key}"},
            window or RequestWindow(3000, 3.0),
            retry,
            concurrency,
            timeouts,
        )
        self.delete_window = delete_window or RequestWindow(DELETES_PER_MINUTE, 60.0)
        self.subscription_window = subscription_window or RequestWindow(
            SUBSCRIPTIONS_PER_MINUTE, 60.0
        )

    def send(self, changes: Sequence[Change]) -> list[RowResult]:
        results: dict[int, RowResult] = {}
        kinds: dict[str, list[int]] = {
            "attributes": [],
            "events": [],
            "purchases": [],
            "delete": [],
            "subscribed": [],
            "unsubscribed": [],
        }
        named = {
            "delete": "delete", "event": "events", "purchase": "purchases",
            "subscribe": "subscribed", "unsubscribe": "unsubscribed",
        }  # fmt: skip
        for i, c in enumerate(changes):
            kinds[named.get(c.op, "attributes")].append(i)
        calls: dict[str, tuple[int, Callable[[Change], Any], Callable[[Any], list[RowResult]]]] = {
            "attributes": (MAX_ATTRIBUTES, attribute_object, self._track),
            "events": (MAX_EVENTS, event_object, self._track_events),
            "purchases": (MAX_PURCHASES, purchase_object, self._track_purchases),
            "delete": (MAX_DELETES, lambda c: c.key, self._delete),
            "subscribed": (MAX_SUBSCRIPTION_IDS, lambda c: c, self._subscribe),
            "unsubscribed": (MAX_SUBSCRIPTION_IDS, lambda c: c, self._subscribe),
        }
        for kind, indexes in kinds.items():
            size, build, call = calls[kind]
            items = [build(changes[i]) for i in indexes]
            answered = self.in_parallel(in_chunks(items, size), call)
            results.update(zip(indexes, answered, strict=True))
        return [results[i] for i in range(len(changes))]

    def _track(self, batch: Sequence[dict[str, Any]]) -> list[RowResult]:
        response = self.post(TRACK_PATH, {"attributes": list(batch)})
        return _per_object(response, "attributes", len(batch))

    def _track_events(self, batch: Sequence[dict[str, Any]]) -> list[RowResult]:
        # Braze records an event twice if it comes twice: a lost answer is not resent.
        response = self.post(TRACK_PATH, {"events": list(batch)}, resend_when_unanswered=False)
        return _per_object(response, "events", len(batch))

    def _track_purchases(self, batch: Sequence[dict[str, Any]]) -> list[RowResult]:
        # as events: a purchase sent twice is counted twice
        response = self.post(TRACK_PATH, {"purchases": list(batch)}, resend_when_unanswered=False)
        return _per_object(response, "purchases", len(batch))

    def _subscribe(self, batch: Sequence[Change]) -> list[RowResult]:
        body = {
            "subscription_group_id": batch[0].membership,
            "subscription_state": "subscribed" if batch[0].op == "subscribe" else "unsubscribed",
            "external_id": [c.key for c in batch],
        }
        response = self.post(SUBSCRIPTION_PATH, body, window=self.subscription_window)
        if isinstance(response, RowResult):
            return [response] * len(batch)
        return [RowResult("synced")] * len(batch)

    def _delete(self, batch: Sequence[str]) -> list[RowResult]:
        response = self.post(DELETE_PATH, {"external_ids": list(batch)}, window=self.delete_window)
        if isinstance(response, RowResult):
            return [response] * len(batch)
        return [RowResult("synced")] * len(batch)


def _per_object(response: httpx.Response | RowResult, array: str, count: int) -> list[RowResult]:
    """One result per object sent in `array`: Braze's non-fatal errors name them by index."""
    if isinstance(response, RowResult):
        return [response] * count
    refused: dict[int, str] = {}
    for error in response_json(response).get("errors") or []:
        if error.get("input_array") == array and isinstance(error.get("index"), int):
            refused[error["index"]] = str(error.get("type") or "refused by Braze")
    return [
        RowResult("rejected", refused[i]) if i in refused else RowResult("synced")
        for i in range(count)
    ]
