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
import re
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from switchyard import landing
from switchyard.privacy import tombstones
from switchyard.privacy.audit import AuditLog
from switchyard.privacy.subject import KINDS, Request, SeveralPeople, SubjectError
from switchyard.settings import Paths

# A request id names files: letters, digits and . _ : - only, not starting with a dot.
REQUEST_ID = re.compile(r"[A-Za-z0-9_:-][A-Za-z0-9._:-]{0,127}")


class Conflict(SubjectError):
    """A request id already names another identifier."""


def check_request_id(request_id: str) -> str:
    if not REQUEST_ID.fullmatch(request_id):
        raise SubjectError(
            "request_id: 1 to 128 letters, digits, '.', '_', ':' or '-', not starting with '.'"
        )
    return request_id


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


def _queued_path(landing_dir: Path, request_id: str) -> Path:
    return queue_folder(landing_dir) / f"{request_id}.json"


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
    if not isinstance(request_id, str):
        raise SubjectError("request_id must be a string")
    check_request_id(request_id)
    drop = body.get("drop_new_events", False)
    if not isinstance(drop, bool):
        raise SubjectError("drop_new_events must be true or false")
    request = Request(named[0], str(value))  # type: ignore[arg-type]
    request.identifier_key()  # a malformed email or phone is refused now, not later
    return request, request_id, drop


def accept(landing_dir: Path, request: Request, request_id: str, drop: bool) -> str:
    """Block the identifier now and queue the full forget; returns the request's status.
    Asking again under the same request id for the same identifier is harmless (the answer
    is its status); for another identifier it is a Conflict. An existing tombstone is never
    rewritten here, so a forget running meanwhile loses nothing."""
    check_request_id(request_id)
    key = tombstones.salt(landing_dir)
    wanted = tombstones.digest(key, request.identifier_key())
    stone_path = tombstones.path_of(landing_dir, request_id)
    queue_path = _queued_path(landing_dir, request_id)
    stone = tombstones.Tombstone(
        request_id, tombstones.now(), [wanted], drop_at_intake=drop,
        salt_fingerprint=tombstones.fingerprint(key),
    )  # fmt: skip
    try:
        stone.write(landing_dir, exclusive=True)  # from here on the sender skips them
    except FileExistsError:
        held = tombstones.Tombstone.read(stone_path)
        if wanted not in held.hashes + held.withdrawn:
            raise Conflict(
                f"request id {request_id} already names another identifier: use a new request "
                "id for this one"
            ) from None
        if held.drop_at_intake != drop:
            raise Conflict(
                f"request id {request_id} was made with drop_new_events="
                f"{str(held.drop_at_intake).lower()}: use a new request id to change it"
            ) from None
        if held.completed_at is not None:
            return "completed"
        if held.refused or queue_path.exists():
            return status(landing_dir, request_id)["status"]  # type: ignore[index]
        stone = held  # begun on the command line and left unfinished: queued to finish
    queued = Queued(request_id, request.kind, request.value, drop, stone.requested_at)
    landing.replace_file(queue_path, json.dumps(asdict(queued)).encode(), mode=0o600)
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
    if not REQUEST_ID.fullmatch(request_id):
        return None
    stone_path = tombstones.path_of(landing_dir, request_id)
    if not stone_path.exists():
        return None
    stone = tombstones.Tombstone.read(stone_path)
    waiting = (_queued_path(landing_dir, request_id)).exists()
    state = "completed" if stone.completed_at else ("queued" if waiting else "in_progress")
    if waiting and stone.stores:
        state = "in_progress"  # a run began it and left parts unfinished
    if stone.refused:
        state = "refused"
    return {
        "request_id": request_id,
        "status": state,
        "reason": stone.refused,
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
                    done.append(_refuse(paths.landing, q, exc))
                    continue
                done.append(_settle(paths.landing, q, result.complete))
    return done


def _refuse(landing_dir: Path, queued: Queued, problem: SubjectError) -> Processed:
    """A request that cannot be carried out as asked: its tombstone says why (without the
    value, which Dagster's logs and the status would otherwise keep) and blocks nothing any
    more (an identifier two people share is not one person's to block); the queued file, which
    holds the value, goes. Asking again with a person id is the way on."""
    if isinstance(problem, SeveralPeople):
        reason = "the identifier names more than one person: ask again with their person_id"
    else:
        reason = "the identifier is not one the identity models read (a malformed value)"
    stone_path = tombstones.path_of(landing_dir, queued.request_id)
    if stone_path.exists():
        stone = tombstones.Tombstone.read(stone_path)
    else:  # queued by hand, without the tombstone accepting writes
        stone = tombstones.Tombstone(queued.request_id, queued.requested_at, [])
    # Only the hash accepting added stops blocking: what an earlier run resolved stays blocked.
    try:
        asked = {tombstones.digest(tombstones.salt(landing_dir), queued.request.identifier_key())}
    except SubjectError:
        asked = set()  # a value that does not parse was never hashed
    stone.withdrawn = sorted(set(stone.withdrawn) | (asked & set(stone.hashes)))
    stone.hashes = sorted(set(stone.hashes) - asked)
    stone.refused = reason
    stone.write(landing_dir)
    _queued_path(landing_dir, queued.request_id).unlink(missing_ok=True)
    with AuditLog(landing_dir, "refused") as audit:
        audit.record(queued.request_id, "forget", "refused")
    return Processed(queued.request_id, "refused", reason)


def _settle(landing_dir: Path, queued: Queued, complete: bool) -> Processed:
    if not complete:
        return Processed(queued.request_id, "unfinished")
    _queued_path(landing_dir, queued.request_id).unlink(missing_ok=True)
    landing.fsync_dir(queue_folder(landing_dir))
    return Processed(queued.request_id, "completed")
