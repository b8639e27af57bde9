"""Braze as a sync destination (braze.com/docs/api/endpoints/user_data):

- attributes, unsets (null removes an attribute) and audience memberships (a boolean custom
  attribute) through `POST /users/track`, 75 attribute objects a request (Braze's limit; every
  request full but the last); objects Braze leaves out come back as non-fatal `errors` naming the
  object's index: those rows are rejected with Braze's words, the rest count as synced;
- removals through `POST /users/delete`, 50 external ids a request;
- `Authorization: Bearer <REST API key>`; /users/track is limited per workspace and window
  (3,000 requests per 3 s by default).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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
MAX_DELETES = 50


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

    def __init__(
        self,
        base_url: str,
        api_key: str,
        window: RequestWindow | None = None,
        retry: RetryPolicy | None = None,
        concurrency: int = 4,
        timeouts: HttpTimeouts | None = None,
    ) -> None:
        super().__init__(
            base_url,
            {"Authorization": f"Bearer {api_key}"},
            window or RequestWindow(3000, 3.0),
            retry,
            concurrency,
            timeouts,
        )

    def send(self, changes: Sequence[Change]) -> list[RowResult]:
        tracked = [i for i, c in enumerate(changes) if c.op != "delete"]
        deleted = [i for i, c in enumerate(changes) if c.op == "delete"]
        results: list[RowResult | None] = [None] * len(changes)
        objects = [attribute_object(changes[i]) for i in tracked]
        for i, result in zip(
            tracked, self.in_parallel(in_chunks(objects, MAX_ATTRIBUTES), self._track), strict=True
        ):
            results[i] = result
        ids = [changes[i].key for i in deleted]
        for i, result in zip(
            deleted, self.in_parallel(in_chunks(ids, MAX_DELETES), self._delete), strict=True
        ):
            results[i] = result
        return [r for r in results if r is not None]

    def _track(self, batch: Sequence[dict[str, Any]]) -> list[RowResult]:
        response = self.post(TRACK_PATH, {"attributes": list(batch)})
        if isinstance(response, RowResult):
            return [response] * len(batch)
        refused: dict[int, str] = {}
        for error in response_json(response).get("errors") or []:
            if error.get("input_array") == "attributes" and isinstance(error.get("index"), int):
                refused[error["index"]] = str(error.get("type") or "refused by Braze")
        return [
            RowResult("rejected", refused[i]) if i in refused else RowResult("synced")
            for i in range(len(batch))
        ]

    def _delete(self, batch: Sequence[str]) -> list[RowResult]:
        response = self.post(DELETE_PATH, {"external_ids": list(batch)})
        if isinstance(response, RowResult):
            return [response] * len(batch)
        return [RowResult("synced")] * len(batch)
