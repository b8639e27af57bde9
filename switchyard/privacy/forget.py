"""Forget a person (GDPR Art. 17, CCPA deletion): `switchyard forget --email E`.

In order, so that a forget stopped anywhere is finished by running it again:
1. who: the identity graph gives every identifier the person used (subject.py), their push
   tokens and the spellings their values arrived in;
2. a tombstone with salted hashes of all of it, before anything is removed (tombstones.py);
3. the landing files: rows about the person removed, ledger lines and journey transitions
   kept under a pseudonym with their personal columns emptied, so caps and funnel counts stay
   as they were (landed.py); files outside the landing folder that hold messages (journey
   previews, the local sandbox's record);
4. the warehouse: the person's rows deleted from every table, in one transaction, and the
   file rewritten without the freed blocks; the published copy made again (stored.py);
5. the tombstone completed with what each store gave up: the audit record, without personal
   data.

Landing files that cannot be rewritten now (a collector's open file, a running sender's
ledger file) are counted as `busy`: the request stays incomplete until a later run rewrites
them. From the tombstone on, the sender skips the person (activations/run.py) and, with
`drop_at_intake`, the collector and the Kafka consumer do not land their new events. Each
destination a sync sends to is asked to delete the person (Braze `/users/delete`, Iterable
`DELETE /api/users/byUserId`, Customer.io's batch `delete`, Airship's named-user uninstall).
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from activations.ledger.compact import compaction_lock
from switchyard import publish
from switchyard.privacy import landed, stored, tombstones
from switchyard.privacy.audit import AuditLog
from switchyard.privacy.requests import check_request_id
from switchyard.privacy.subject import Request, SeveralPeople, Subject, SubjectError, resolve
from switchyard.settings import Paths

MIN_SPELLING = 4  # shorter values are not looked for inside unparsed text (too many false hits)


@dataclass
class ForgetResult:
    request_id: str
    person_id: str | None  # None: nobody held under that identifier (already forgotten?)
    stores: dict[str, dict[str, int]] = field(default_factory=dict)
    busy: list[str] = field(default_factory=list)  # files being written, unanswered deletes
    tombstone: Path | None = None

    @property
    def complete(self) -> bool:
        return not self.busy


def forget(
    paths: Paths,
    request: Request,
    request_id: str | None = None,
    drop_at_intake: bool = False,
    destinations: Sequence[str] = (),
) -> ForgetResult:
    """`destinations`: the engagement platforms syncs send to (braze, iterable, customerio,
    airship), each asked to delete the person's user ids with its own delete call."""
    (done,) = forget_many(paths, [(request, request_id)], drop_at_intake, destinations)
    return done


@dataclass
class _Plan:
    """One request, resolved: its tombstone and what the passes look for."""

    result: ForgetResult
    stone: tombstones.Tombstone
    target: landed.Target
    values: dict[str, set[str]]  # for the warehouse; empty when nobody is held there
    resuming: bool


def forget_many(
    paths: Paths,
    requests: Sequence[tuple[Request, str | None]],
    drop_at_intake: bool = False,
    destinations: Sequence[str] = (),
) -> list[ForgetResult]:
    """Several requests in one pass over each store (each its own tombstone and audit, with the
    batch's counts): the files are read once, not once a person."""
    key = tombstones.salt(paths.landing)
    with AuditLog(paths.landing, "forget") as audit:
        with _identity_graph(paths) as graph:  # one connection for the batch, closed before
            plans = [  # the purge opens the warehouse to write
                _plan(paths, key, r, rid, drop_at_intake, audit, graph) for r, rid in requests
            ]
        audit.sync()  # the requests accepted, before anything is removed
        return _forget_planned(paths, key, plans, destinations, audit)


def _forget_planned(
    paths: Paths, key: bytes, plans: list[_Plan], destinations: Sequence[str], audit: AuditLog
) -> list[ForgetResult]:
    target = landed.Target.merged([p.target for p in plans])
    stores: dict[str, dict[str, int]] = {}
    unfinished: list[str] = []
    with compaction_lock(paths.landing):  # no compaction folds old ledger lines in meanwhile
        target.send_keys = {
            k: f"forgotten_{tombstones.digest(key, f'send_key:{k}')[:32]}"
            for k in landed.send_keys_of(paths.landing, target.person_ids)
        }
        rewritten = {
            **landed.forget_jsonl(paths.landing, target),
            **landed.forget_parquet(paths.landing, target),
            **_outside_landing(paths, target),
        }
    if target.waiting:
        unfinished.append(
            f"{target.waiting} rows name the identifier beside a user id the identity graph "
            "does not know yet: forget again with the same request id after the next dbt build"
        )
    for store, done in rewritten.items():
        stores[f"landing:{store}"] = {
            "files": done.files, "rows_removed": done.rows_removed,
            "rows_redacted": done.rows_redacted,
        }  # fmt: skip
        unfinished += done.busy
    _record(plans, stores, paths, audit)  # the audit keeps up with each stage
    for name in destinations:
        counts, unanswered = _delete_at(name, target.users, paths)
        stores[f"destination:{name}"] = counts
        unfinished += unanswered
        _record(plans, {f"destination:{name}": counts}, paths, audit)
    if paths.duckdb.exists() and any(p.values or p.resuming for p in plans):
        # A forget stopped after the purge finds nobody now: the file is rewritten and the
        # copy made again all the same, until the request completes.
        values: dict[str, set[str]] = {}
        for p in plans:
            for kind, wanted in p.values.items():
                values.setdefault(kind, set()).update(wanted)
        purged = stored.purge(paths.duckdb, values, rewrite=True)
        warehouse = {f"warehouse:{t}": {"rows_removed": n} for t, n in purged.tables.items()}
        stores.update(warehouse)
        _record(plans, warehouse, paths, audit)
        if publish.published_path(paths.duckdb).exists():
            publish.publish(paths.duckdb)
            stores["warehouse:published copy"] = {"files": 1}
            _record(plans, {"warehouse:published copy": {"files": 1}}, paths, audit)
    for p in plans:
        p.result.stores, p.result.busy = dict(stores), list(unfinished)
        if p.result.complete:
            p.stone.completed_at = tombstones.now()
        p.stone.write(paths.landing)
        if p.result.complete:
            audit.record(p.result.request_id, "forget", "completed")
    return [p.result for p in plans]


def _plan(
    paths: Paths,
    key: bytes,
    request: Request,
    request_id: str | None,
    drop_at_intake: bool,
    audit: AuditLog,
    graph: duckdb.DuckDBPyConnection | None,
) -> _Plan:
    """Who the request is about, and their tombstone, written before anything is removed."""
    request_id = check_request_id(request_id or uuid.uuid4().hex)
    found = _who(graph, request) if graph is not None else None
    stone_path = tombstones.path_of(paths.landing, request_id)
    if stone_path.exists():
        stone = tombstones.Tombstone.read(stone_path)
    else:  # a request made here: its clock starts now (the collector's started at accepting)
        stone = tombstones.Tombstone(
            request_id, tombstones.now(), [], drop_at_intake=drop_at_intake
        )
        audit.record(request_id, "forget", "accepted")
    resuming = stone_path.exists() and stone.completed_at is None
    given = request.value.strip()
    values: dict[str, set[str]] = {}
    if found is None:
        # Nobody in the warehouse under it (not built yet, or forgotten already): the landing
        # files are still searched for the identifier itself.
        person_ids = {given} if request.kind == "person_id" else set()
        keys = {request.identifier_key()}
        target = landed.Target(
            keys,
            person_ids,
            {p: tombstones.pseudonym(key, p) for p in person_ids},
            {given} if request.kind in ("email", "phone") else set(),
            {given} if request.kind == "user_id" else set(),
        )
        # Without the graph a row naming a user id beside it cannot be told hers or another's:
        # such rows wait, as they are, for a build that resolves them (the request stays
        # unfinished; the tombstone blocks the identifier meanwhile).
        if request.kind in ("email", "phone"):
            target.unresolved = set(keys)
        person_id = None
    else:
        subject, tokens, spellings, occurrence_ids = found
        # Identifiers others used too remove and block nothing on their own.
        keys = {f"{t}:{v}" for t, v in subject.own} | {f"push_token:{t}" for t in tokens}
        if request.kind != "person_id":
            keys.add(request.identifier_key())
        texts = {  # their addresses, shared ones too: rejected junk that holds one goes
            s
            for s in spellings | set(subject.values("email")) | set(subject.values("phone"))
            if len(s) >= MIN_SPELLING and (("@" in s) or sum(c.isdigit() for c in s) >= 7)
        }  # emails and phone spellings only: a short id would match any text
        person_ids = set(subject.person_ids)
        target = landed.Target(
            keys,
            person_ids,
            {p: tombstones.pseudonym(key, subject.person_id) for p in person_ids},
            texts,
            set(subject.own_values("user_id")),
        )
        target.occurrence_ids = occurrence_ids
        target.redact_keys = {f"{t}:{v}" for t, v in subject.identifiers if t in ("email", "phone")}
        values = _values(subject, target, tokens)
        person_id = subject.person_id
    stone.hashes = sorted(
        set(stone.hashes)
        | set(tombstones.hashes_of(key, keys))
        | set(tombstones.hashes_of(key, {f"person_id:{p}" for p in person_ids}))
    )
    stone.salt_fingerprint = tombstones.fingerprint(key)
    stone.completed_at = None
    stone.refused = None  # asked again here (by person id, say): carried out after all
    stone.drop_at_intake = stone.drop_at_intake or drop_at_intake
    stone.write(paths.landing)
    result = ForgetResult(request_id, person_id, tombstone=stone_path)
    return _Plan(result, stone, target, values, resuming)


def _record(
    plans: Sequence[_Plan], stores: dict[str, dict[str, int]], paths: Paths, audit: AuditLog
) -> None:
    """What a stage did, added to each request's tombstone (a resumed one adds to what was
    done) and to the audit rows, for the stores it changed."""
    for p in plans:
        for store, counts in stores.items():
            before = p.stone.stores.get(store, {})
            p.stone.stores[store] = {k: before.get(k, 0) + v for k, v in counts.items()}
            if any(counts.values()):
                audit.record(p.result.request_id, "forget", "stage", store, counts)
        p.stone.write(paths.landing)
    audit.sync()


@contextlib.contextmanager
def _identity_graph(paths: Paths) -> Iterator[duckdb.DuckDBPyConnection | None]:
    """The working warehouse, read-only (the published copy may lag it), else the published
    copy when a run holds the working one; None before the first build."""
    for source in (paths.duckdb, publish.published_path(paths.duckdb)):
        if not source.exists():
            continue
        try:
            con = duckdb.connect(str(source), read_only=True)
        except duckdb.IOException:
            continue  # held by a run: the published copy
        try:
            yield con
        finally:
            con.close()
        return
    yield None


def _who(
    con: duckdb.DuckDBPyConnection, request: Request
) -> tuple[Subject, set[str], set[str], set[str]] | None:
    """The subject, their push tokens, raw spellings and occurrence ids; None when the graph
    holds nobody under the identifier."""
    try:
        subject = resolve(con, request)
    except SeveralPeople:
        raise
    except SubjectError:
        return None
    ids = subject.person_ids
    tokens = {
        r[0]
        for r in con.execute(
            "select distinct push_token from int_events_stitched "
            "where push_token is not null and list_contains(?, person_id)",
            [ids],
        ).fetchall()
    }
    # their own occurrences (events stitched to them, orders under their user ids), with the
    # spellings, valid or not, that arrived in them
    users = subject.own_values("user_id")
    occurrences = con.execute(
        "select occurrence_id, raw_value from int_identifier_occurrences "
        "where occurrence_id in (select 'stg_segment__events:' || event_id "
        "from int_events_stitched where list_contains(?, person_id) "
        "union all select 'stg_shop__orders:' || order_id from stg_shop__orders "
        "where list_contains(?, user_id))",
        [ids, users],
    ).fetchall()
    spellings = {r[1] for r in occurrences if r[1]}
    return subject, tokens, spellings, {r[0] for r in occurrences}


def _values(subject: Subject, target: landed.Target, tokens: set[str]) -> dict[str, set[str]]:
    """What the warehouse's columns are matched against (stored.COLUMNS): the identifiers that
    are theirs alone, and the ids of their own rows."""
    emails, phones = set(subject.own_values("email")), set(subject.own_values("phone"))
    users, ids = target.users, set(subject.person_ids)
    return {
        "person_ids": ids,
        "user_ids": users,
        "sync_keys": users | ids,
        "anonymous_ids": set(subject.own_values("anonymous_id"))
        | set(subject.own_values("device_id")),
        "emails": emails,
        "phones": phones,
        "tokens": tokens,
        "keys": set(target.keys),
        "values": {v for _, v in subject.own} | target.spellings,
        "send_keys": set(target.send_keys),
        "occurrence_ids": target.occurrence_ids,
        "addresses": emails | phones | tokens | users | ids,
        # blanked, not deleted, in another person's rows (stored.REDACTED)
        "redact": set(subject.values("email")) | set(subject.values("phone")),
    }


def _delete_at(name: str, users: set[str], paths: Paths) -> tuple[dict[str, int], list[str]]:
    """The platform's delete call for each user id: deleted, refused (the platform's answer
    kept as a count: a user it never had is refused by some), or not answered (the request
    stays incomplete and a second run asks again)."""
    from activations.syncs.destination import Change
    from activations.syncs.settings import open_destination

    if not users:
        return {"deleted": 0}, []
    with open_destination(name, paths.home / "sandbox") as destination:
        answers = destination.send([Change("delete", u) for u in sorted(users)])
    outcomes = [a.outcome for a in answers]
    unanswered = [f"{name}: {u}" for u, a in zip(sorted(users), answers, strict=True)
                  if a.outcome not in ("synced", "rejected")]  # fmt: skip
    return {"deleted": outcomes.count("synced"), "refused": outcomes.count("rejected")}, unanswered


def _outside_landing(paths: Paths, target: landed.Target) -> dict[str, landed.Done]:
    """Message records kept beside the landing folder: previews written by `journeys preview`
    and the local sandbox's record of what it received."""
    done: dict[str, landed.Done] = {}
    exports = landed.Done()
    for path in sorted((paths.home / "exports").glob("*.json")):
        try:
            held = json.loads(path.read_text()).get("person_id")
        except (ValueError, AttributeError):
            continue
        if held in target.person_ids:  # an access request's answer, made earlier
            path.unlink()
            exports.files += 1
    done["exports"] = exports
    previews = landed.Done()
    for path in sorted((paths.home / "preview").glob("*.jsonl")):
        previews.add(
            _drop_lines(path, lambda row: row.get("person_id") in target.person_ids, target)
        )
    done["preview"] = previews
    received = paths.home / "sandbox" / "received.jsonl"
    if received.exists():

        def names(row: dict[str, Any]) -> bool:
            return target.names(landed.address_keys(row.get("recipient"))) or target.in_text(
                json.dumps(row, default=str)
            )

        done["sandbox/received"] = _drop_lines(received, names, target)
    return done


def _drop_lines(
    path: Path, names: Callable[[dict[str, Any]], bool], target: landed.Target
) -> landed.Done:
    return landed.rewrite_jsonl(path, lambda row: None if names(row) else True, target)
