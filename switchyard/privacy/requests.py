"""Deletion requests taken over HTTP (the collector's `POST /v1/privacy/forget`), as Segment's
and Braze's deletion APIs take them: accepted at once, carried out later.

Accepting writes the request's tombstone with the hash of the identifier it names, so the
sender skips the person (and, if asked, intake drops their events) from that moment; the
request itself waits in `landing/privacy/requests/<request_id>.json` (readable by its owner
only: it holds the identifier, which the full forget needs to find everything else) until the
`privacy/forget_requests` asset or `switchyard forget --queued` forgets the person everywhere
and removes it. The collector holds no warehouse lock, so it never forgets in place.
"""

from __future__ import annotations

import csv
import json
import os
import re
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from switchyard import landing
from switchyard.privacy import tombstones
from switchyard.privacy.audit import AuditLog
from switchyard.privacy.subject import KINDS, Request, SubjectError
from switchyard.settings import Paths

REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


@dataclass(frozen=True)
class Queued:
    request_id: str
    kind: str
    value: str
    drop_new_events: bool
    requested_at: str

    @property
    def request(self) -> Request:
        return Request(self.kind, self.value)  # type: ignore[arg-type]


def queue_folder(landing_dir: Path) -> Path:
    return tombstones.folder(landing_dir, "requests")


def parse(body: Any) -> tuple[Request, str, bool]:
    """A request's JSON body: exactly one of email, phone, user_id, person_id; optional
    request_id and drop_new_events. Raises SubjectError saying what is wrong."""
    if not isinstance(body, dict):
        raise SubjectError("the body must be a JSON object")
    named = [k for k in KINDS if body.get(k) not in (None, "")]
    unknown = set(body) - {*KINDS, "request_id", "drop_new_events"}
    if len(named) != 1 or unknown:
        raise SubjectError(
            f"name exactly one of {', '.join(KINDS)} (and optionally request_id, "
            f"drop_new_events); got {', '.join(sorted(body)) or 'nothing'}"
        )
    value = body[named[0]]
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise SubjectError(f"{named[0]} must be a string")
    request_id = body.get("request_id") or uuid.uuid4().hex
    if not isinstance(request_id, str) or not REQUEST_ID.match(request_id):
        raise SubjectError("request_id: 1 to 128 letters, digits, '.', '_', ':' or '-'")
    drop = body.get("drop_new_events", False)
    if not isinstance(drop, bool):
        raise SubjectError("drop_new_events must be true or false")
    request = Request(named[0], str(value))  # type: ignore[arg-type]
    request.identifier_key()  # a malformed email or phone is refused now, not later
    return request, request_id, drop


def accept(landing_dir: Path, request: Request, request_id: str, drop: bool) -> str:
    """Block the identifier now and queue the full forget. Returns the request's status: a
    request id already completed is not queued again (forgetting twice is harmless, and the
    answer says it is done)."""
    stone_path = tombstones.folder(landing_dir, "forgotten") / f"{request_id}.json"
    if stone_path.exists():
        stone = tombstones.Tombstone.read(stone_path)
        if stone.completed_at is not None:
            return "completed"
    else:
        stone = tombstones.Tombstone(request_id, _now(), [])
    key = tombstones.salt(landing_dir)
    stone.hashes = sorted(
        set(stone.hashes) | set(tombstones.hashes_of(key, {request.identifier_key()}))
    )
    stone.salt_fingerprint = tombstones.fingerprint(key)
    stone.drop_at_intake = stone.drop_at_intake or drop
    stone.write(landing_dir)  # from here on the sender skips them
    queued = Queued(request_id, request.kind, request.value, drop, stone.requested_at)
    _write_private(queue_folder(landing_dir) / f"{request_id}.json", asdict(queued))
    with AuditLog(landing_dir, "accepted") as audit:
        audit.record(request_id, "forget", "accepted")
    return "queued"


def accept_file(landing_dir: Path, path: Path, drop: bool) -> tuple[list[str], list[str]]:
    """A CSV file of requests (a header naming email, phone, user_id or person_id, and
    optionally request_id and drop_new_events; one identifier a row), each accepted as the
    collector accepts one. Returns the request ids queued and, for each row refused, its line
    and the reason; the others go ahead."""
    queued: list[str] = []
    refused: list[str] = []
    with path.open(newline="", encoding="utf-8-sig") as fh:
        rows = csv.DictReader(fh)
        named = set(rows.fieldnames or ()) & set(KINDS)
        if not named:
            raise SubjectError(
                f"{path}: the header names none of {', '.join(KINDS)} (for example: "
                "email,request_id)"
            )
        for row in rows:
            body: dict[str, Any] = {k: v.strip() for k, v in row.items() if k and v and v.strip()}
            flag = str(body.pop("drop_new_events", "")).lower()
            body["drop_new_events"] = drop or flag in ("true", "1", "yes")
            try:
                request, request_id, drop_new = parse(body)
                accept(landing_dir, request, request_id, drop_new)
            except SubjectError as exc:
                refused.append(f"line {rows.line_num}: {exc}")
                continue
            queued.append(request_id)
    return queued, refused


def pending(landing_dir: Path) -> list[Queued]:
    folder = queue_folder(landing_dir)
    if not folder.exists():
        return []
    return [
        Queued(**json.loads(p.read_text()))
        for p in sorted(folder.glob("*.json"))
        if not p.name.startswith(".")
    ]


def status(landing_dir: Path, request_id: str) -> dict[str, Any] | None:
    """What a request's caller may see: its state and the audit's counts, no personal data."""
    if not REQUEST_ID.match(request_id):
        return None
    stone_path = tombstones.folder(landing_dir, "forgotten") / f"{request_id}.json"
    if not stone_path.exists():
        return None
    stone = tombstones.Tombstone.read(stone_path)
    waiting = (queue_folder(landing_dir) / f"{request_id}.json").exists()
    state = "completed" if stone.completed_at else ("queued" if waiting else "in_progress")
    if waiting and stone.stores:
        state = "in_progress"  # a run began it and left parts unfinished
    return {
        "request_id": request_id,
        "status": state,
        "requested_at": stone.requested_at,
        "completed_at": stone.completed_at,
        "drop_new_events": stone.drop_at_intake,
        "stores": stone.stores,
    }


@dataclass(frozen=True)
class Processed:
    request_id: str
    outcome: str  # completed, unfinished (run again), refused (the reason says why)
    reason: str = ""


def process(paths: Paths, destinations: Sequence[str] = ()) -> list[Processed]:
    """Forget every queued request: in one pass when they all resolve, else one by one (a
    request naming two people waits for a person id; the others go ahead)."""
    from switchyard.privacy.forget import forget, forget_many

    queued = pending(paths.landing)
    done: list[Processed] = []
    for drop in (False, True):
        batch = [q for q in queued if q.drop_new_events == drop]
        if not batch:
            continue
        try:
            results = forget_many(
                paths, [(q.request, q.request_id) for q in batch], drop, destinations
            )
            done += [
                _settle(paths.landing, q, r.complete) for q, r in zip(batch, results, strict=True)
            ]
        except SubjectError:
            for q in batch:
                try:
                    result = forget(paths, q.request, q.request_id, drop, destinations)
                except SubjectError as exc:
                    done.append(Processed(q.request_id, "refused", str(exc)))
                    continue
                done.append(_settle(paths.landing, q, result.complete))
    return done


def _settle(landing_dir: Path, queued: Queued, complete: bool) -> Processed:
    if not complete:
        return Processed(queued.request_id, "unfinished")
    (queue_folder(landing_dir) / f"{queued.request_id}.json").unlink(missing_ok=True)
    landing.fsync_dir(queue_folder(landing_dir))
    return Processed(queued.request_id, "completed")


def _write_private(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(document, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    landing.fsync_dir(path.parent)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
