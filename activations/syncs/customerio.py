"""Customer.io as a sync destination, through the Track API v2 `POST /api/v2/batch`
(docs.customer.io/integrations/api/track):

- each change is one entry (`type` person, `identifiers` {`id`}): attributes and audience
  memberships (a boolean attribute) through `identify`, removals through `delete`, events through
  `event` (with a ULID derived from the row's id and time as the event's `id`, which Customer.io
  de-duplicates on, so a resend is harmless); an attribute is cleared by setting it to an empty
  string;
- a request holds entries up to 500 kB (packed to that size, not to a count);
- entries Customer.io cannot take come back in a 207 answer's `errors`, by `batch_index`;
- Basic auth with the workspace's site id and Track API key.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from activations.channels.policy import HttpTimeouts, RetryPolicy
from activations.syncs.destination import (
    Change,
    HttpDestination,
    RequestWindow,
    RowResult,
    response_json,
)

BATCH_PATH = "/api/v2/batch"
MAX_BATCH_BYTES = 500 * 1024
_ENVELOPE_BYTES = 64  # {"batch":[...]} and the commas between entries, with room to spare


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def event_ulid(event_id: str, event_time: str | None) -> str:
    """The ULID Customer.io de-duplicates an event by, the same for the same row on every run:
    the event's time in its 48 time bits, a hash of the row's id in its 80 random ones."""
    millis = int(datetime.fromisoformat(event_time).timestamp() * 1000) if event_time else 0
    entropy = int.from_bytes(hashlib.sha256(event_id.encode()).digest()[:10], "big")
    value = (millis & (2**48 - 1)) << 80 | entropy
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def batch_entry(change: Change) -> dict[str, Any]:
    entry: dict[str, Any] = {"type": "person", "identifiers": {"id": change.key}}
    if change.op == "event":
        entry.update(action="event", name=change.event_name, attributes=dict(change.attributes))
        if change.event_id:
            entry["id"] = event_ulid(change.event_id, change.event_time)
        if change.event_time:
            entry["timestamp"] = int(datetime.fromisoformat(change.event_time).timestamp())
        return entry
    if change.op == "delete":
        entry["action"] = "delete"
        return entry
    entry["action"] = "identify"
    if change.op == "upsert":
        entry["attributes"] = dict(change.attributes)
    elif change.op == "unset":
        entry["attributes"] = dict.fromkeys(change.attributes, "")
    elif change.op in ("join", "leave"):
        assert change.membership is not None
        entry["attributes"] = {change.membership: change.op == "join"}
    else:
        raise ValueError(f"no Customer.io entry for a {change.op!r} change here")
    return entry


def pack(
    entries: Sequence[dict[str, Any]], limit: int = MAX_BATCH_BYTES
) -> list[list[dict[str, Any]]]:
    """Consecutive entries in requests of at most `limit` bytes each."""
    batches: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    size = _ENVELOPE_BYTES
    for entry in entries:
        length = len(json.dumps(entry, separators=(",", ":")).encode()) + 1
        if current and size + length > limit:
            batches.append(current)
            current, size = [], _ENVELOPE_BYTES
        current.append(entry)
        size += length
    if current:
        batches.append(current)
    return batches


class CustomerIoDestination(HttpDestination):
    name = "customerio"
    credentials_hint = "SWITCHYARD_CUSTOMERIO_SITE_ID and SWITCHYARD_CUSTOMERIO_API_KEY (Track API)"
    batch_rows = 1  # batches are packed by size, not count
    dedupes_events = True  # an event's `id` (a ULID derived from the row) is de-duplicated

    def __init__(
        self,
        base_url: str,
        site_id: str,
        api_key: str,
        window: RequestWindow | None = None,
        retry: RetryPolicy | None = None,
        concurrency: int = 4,
        timeouts: HttpTimeouts | None = None,
    ) -> None:
        super().__init__(
            base_url,
            {},
            window or RequestWindow(100, 1.0),
            retry,
            concurrency,
            timeouts,
            auth=(site_id, api_key),
        )

    def send(self, changes: Sequence[Change]) -> list[RowResult]:
        return self.in_parallel(pack([batch_entry(c) for c in changes]), self._batch)

    def _batch(self, batch: Sequence[dict[str, Any]]) -> list[RowResult]:
        response = self.post(BATCH_PATH, {"batch": list(batch)})
        if isinstance(response, RowResult):
            return [response] * len(batch)
        refused: dict[int, str] = {}
        for error in response_json(response).get("errors") or []:
            index = error.get("batch_index")
            if isinstance(index, int):
                detail = error.get("message") or error.get("reason") or "refused by Customer.io"
                where = f" ({error['field']})" if error.get("field") else ""
                refused[index] = f"{detail}{where}"
        return [
            RowResult("rejected", refused[i]) if i in refused else RowResult("synced")
            for i in range(len(batch))
        ]
