"""Forgetting in the landing files: each table's rows about the person are removed, or, where a
row must stay for counts (the ledger, journey transitions), kept under a pseudonym with its
personal columns emptied. Files are rewritten whole and renamed into place, as producers write
them; a file no row of which is the person's is left as it is.

A file still being written (the collector's hidden `.open` files, a sender's ledger file it
holds locked) is skipped and counted: forget again once it is closed (a tombstone makes that
harmless).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
from sqlglot import exp

from switchyard import landing, phones
from switchyard.privacy.subject import DEFAULT_PHONE_REGION

TMP_SUFFIX = ".forget.tmp"
OPEN_FILE_WAIT_SECONDS = 10.0  # the collector closes its open files every half second

# What a person's rows carry that the rewrite empties where the row stays.
LEDGER_PERSONAL = ("recipient", "subject", "body", "reason_detail", "provider_message_id")


@dataclass
class Target:
    """The person, as rows name them: identifier keys (`type:normalised`) that are theirs alone,
    their user ids (a row that names another user id is someone else's, whatever device or
    email it shares with them), their person ids and what to call them where a row stays, their
    send keys (and what those become), and the emails and phone spellings to find in text that
    does not parse (rejected payloads)."""

    keys: set[str]
    person_ids: set[str]
    pseudonyms: dict[str, str]  # person id -> what it becomes where a row stays
    spellings: set[str]
    users: set[str] = field(default_factory=set)
    # their emails and phones, shared ones too: blanked in another person's row that holds them
    # (an order Bob placed with her address), the row kept
    redact_keys: set[str] = field(default_factory=set)
    send_keys: dict[str, str] = field(default_factory=dict)  # send key -> its pseudonym
    occurrence_ids: set[str] = field(default_factory=set)  # the identity graph's, warehouse only
    # identifiers the graph does not know yet: a row naming one with a user id cannot be told
    # hers or another's, so it is kept as it is and counted (`waiting`) until the graph can
    unresolved: set[str] = field(default_factory=set)
    waiting: int = 0

    @classmethod
    def merged(cls, targets: Sequence[Target]) -> Target:
        """Several people forgotten in one pass over the files."""
        union = cls(set(), set(), {}, set())
        for t in targets:
            union.keys |= t.keys
            union.person_ids |= t.person_ids
            union.pseudonyms |= t.pseudonyms
            union.spellings |= t.spellings
            union.users |= t.users
            union.redact_keys |= t.redact_keys
            union.send_keys |= t.send_keys
            union.occurrence_ids |= t.occurrence_ids
            union.unresolved |= t.unresolved
        return union

    def names(self, row_keys: set[str], user: object = None) -> bool:
        if user and str(user).strip() not in self.users:
            return False  # another person's row, on a device or address they share
        return not self.keys.isdisjoint(row_keys)

    def waits_on(self, row_keys: set[str], user: object) -> bool:
        """Whether the row names an unresolved identifier with a user id (then it is kept and
        counted, for the graph to say whose it is)."""
        if not user or str(user).strip() in self.users or self.unresolved.isdisjoint(row_keys):
            return False
        self.waiting += 1
        return True

    def in_text(self, text: str) -> bool:
        low = text.lower()
        return any(s.lower() in low for s in self.spellings)


@dataclass
class Done:
    files: int = 0  # rewritten
    rows_removed: int = 0
    rows_redacted: int = 0
    busy: list[str] = field(default_factory=list)  # files skipped: still being written

    def add(self, other: Done) -> None:
        self.files += other.files
        self.rows_removed += other.rows_removed
        self.rows_redacted += other.rows_redacted
        self.busy += other.busy


def email_key(value: object) -> str | None:
    text = str(value).strip().lower() if value else ""
    return f"email:{text}" if "@" in text else None


def phone_key(value: object) -> str | None:
    if not value:
        return None
    e164 = phones.e164(str(value), DEFAULT_PHONE_REGION)
    return f"phone:{e164}" if e164 else None


def _plain(kind: str, value: object) -> str | None:
    text = str(value).strip() if value is not None else ""
    return f"{kind}:{text}" if text else None


def address_keys(value: object) -> set[str]:
    """An address as suppressions and the ledger hold it: an email, a phone or a push token."""
    found = {email_key(value), phone_key(value), _plain("push_token", value)}
    return {k for k in found if k}


def event_keys(row: dict[str, Any]) -> set[str]:
    context = row.get("context") or {}
    device = context.get("device") or {} if isinstance(context, dict) else {}
    traits = row.get("traits") or (context.get("traits") if isinstance(context, dict) else None)
    traits = traits if isinstance(traits, dict) else {}
    found = {
        _plain("user_id", row.get("userId")),
        _plain("anonymous_id", row.get("anonymousId")),
        _plain("anonymous_id", row.get("previousId")),
        _plain("device_id", device.get("id") if isinstance(device, dict) else None),
        _plain("push_token", device.get("token") if isinstance(device, dict) else None),
        email_key(traits.get("email")),
        phone_key(traits.get("phone")),
    }
    return {k for k in found if k}


Decide = Callable[[dict[str, Any]], "dict[str, Any] | None | bool"]
# True: keep as is; None: remove; a dict: keep this instead (redacted)


def _deciders(target: Target) -> dict[tuple[str, str], Decide]:
    def others_traits(row: dict[str, Any]) -> dict[str, Any] | bool:
        """Another person's event: kept, without her email or phone in its traits."""
        changed = False
        for holder in (row, row.get("context")):
            traits = holder.get("traits") if isinstance(holder, dict) else None
            if not isinstance(traits, dict):
                continue
            for field_name, key in (("email", email_key), ("phone", phone_key)):
                if key(traits.get(field_name)) in target.redact_keys:
                    traits[field_name] = None
                    changed = True
        return row if changed else True

    def events(row: dict[str, Any]) -> dict[str, Any] | bool | None:
        keys = event_keys(row)
        if target.names(keys, row.get("userId")):
            return None
        if target.waits_on(keys, row.get("userId")):
            return True
        return others_traits(row) if row.get("userId") else True

    def rejects(row: dict[str, Any]) -> bool | None:
        payload = str(row.get("payload") or "")
        try:
            parsed = json.loads(payload)
        except ValueError:  # only text: their emails and phone spellings are looked for
            return None if target.in_text(payload) else True
        if isinstance(parsed, dict):
            keys, user = event_keys(parsed), parsed.get("userId")
            if target.names(keys, user):
                return None
            target.waits_on(keys, user)  # kept either way; counted when it waits
        return True

    def orders(row: dict[str, Any]) -> dict[str, Any] | bool | None:
        keys = {
            k for k in (_plain("user_id", row.get("user_id")), email_key(row.get("email"))) if k
        }
        if target.names(keys, row.get("user_id")):
            return None
        if target.waits_on(keys, row.get("user_id")):
            return True
        if email_key(row.get("email")) in target.redact_keys:
            return {**row, "email": None}  # another person's order, with her address
        return True

    def by_user(row: dict[str, Any]) -> bool | None:
        key = _plain("user_id", row.get("user_id"))
        return None if key and key in target.keys else True

    def suppressions(row: dict[str, Any]) -> bool | None:
        return None if target.names(address_keys(row.get("address"))) else True

    def feedback(row: dict[str, Any]) -> bool | None:
        return None if row.get("send_key") in target.send_keys else True

    def ledger(row: dict[str, Any]) -> dict[str, Any] | bool:
        if row.get("person_id") not in target.person_ids:
            return True
        # the send key is a hash of the person id: it could be recomputed from a guessed one
        key = target.send_keys.get(str(row.get("send_key")), row.get("send_key"))
        person = target.pseudonyms.get(str(row.get("person_id")), "forgotten")
        return {**row, "person_id": person, "send_key": key,
                **dict.fromkeys(LEDGER_PERSONAL)}  # fmt: skip

    return {
        ("segment", "events"): events,
        ("segment", "rejects"): rejects,
        ("shop", "orders"): orders,
        ("preferences", "consents"): by_user,
        ("preferences", "suppressions"): suppressions,
        ("inbox", "messages"): by_user,
        ("feedback", "events"): feedback,
        ("ledger", "deliveries"): ledger,
    }


def send_keys_of(landing_dir: Path, person_ids: set[str]) -> set[str]:
    """The person's send keys, from the ledger's run files (feedback and the inbox name sends
    by them). Compacted files are read too: old run files are gone once compacted."""
    found: set[str] = set()
    folder = landing.table_dir(landing_dir, "ledger", "deliveries")
    for path in visible(folder, "*.jsonl"):
        for row in _rows(path):
            if isinstance(row, dict) and row.get("person_id") in person_ids:
                found.add(str(row.get("send_key")))
    compacted = landing_dir / "ledger" / "compacted"
    files = sorted(compacted.glob("lines-*.parquet")) if compacted.exists() else []
    if files:
        names = exp.Array(expressions=[exp.Literal.string(str(f)) for f in files])
        ids = exp.Array(expressions=[exp.Literal.string(p) for p in sorted(person_ids)])
        with duckdb.connect() as con:
            rows = con.execute(
                f"select distinct send_key from read_parquet({names.sql('duckdb')}, "
                f"union_by_name = true) where list_contains({ids.sql('duckdb')}, person_id)"
            ).fetchall()
        found.update(str(r[0]) for r in rows)
    return found


def forget_jsonl(landing_dir: Path, target: Target) -> dict[str, Done]:
    """Every JSON-lines landing table, rewritten without the person (or redacted)."""
    done: dict[str, Done] = {}
    for (source, table), decide in _deciders(target).items():
        folder = landing.table_dir(landing_dir, source, table)
        for stale in folder.glob(f".*{TMP_SUFFIX}"):
            stale.unlink()  # a rewrite a killed forget left: the file it was for is as it was
        outcome = Done()
        wait_for_open_files(folder)
        files = list(visible(folder, "*.jsonl"))
        # A file a writer holds may grow after the scan: it is parsed whole (or counted busy).
        closed = {p for p in files if landing.closed(p)}
        screen = screened_lines(sorted(closed), target) if (source, table) in SCREENED else None
        for path in files:
            lines = None
            if screen is not None and path in closed:
                lines = screen.get(str(path))
                if lines is None:
                    continue  # closed before the scan, and no line of it can name them
            outcome.add(rewrite_jsonl(path, decide, target, only=lines))
        done[f"{source}/{table}"] = outcome
    return done


# Tables whose rows name people by ids, addresses and keys written as they are: a DuckDB scan
# names the lines that may hold one of the person's, and only those are parsed (the rest are
# kept byte for byte). A line with a backslash (an escaped value) is always a candidate; a
# phone is looked for as its national digits in order, whatever is written between them (a
# country code, a trunk 0, spaces, dashes, brackets). Orders and suppressions are parsed whole.
SCREENED = {
    ("segment", "events"), ("segment", "rejects"), ("ledger", "deliveries"),
    ("feedback", "events"), ("inbox", "messages"), ("preferences", "consents"),
}  # fmt: skip
ALWAYS_CANDIDATES = (re.escape("\\"),)  # as RE2 patterns: a backslash
PHONE_GAP = r"[^0-9\n]{0,3}"  # what a spelling may put between two digits
# Alternatives in one RE2 pattern: its automaton stays small. Measured on this machine over
# the files of `benchmarks/forget.py --size 1000000` (335 MB): 400 or 2,000 alternatives took
# 1.1-1.2 s a pass, 10,000 in one pattern 33 s. More needles make more passes. Phone patterns
# (digits with gaps) cost far more a piece (a review measured 200 in one pattern at 13 s on 43
# MB, 100 to a pattern 0.8 s): they get patterns of their own.
NEEDLES_PER_PATTERN = 1500
PHONES_PER_PATTERN = 100


def screened_lines(files: Sequence[Path], target: Target) -> dict[str, set[str]] | None:
    """file -> the lines of it that may name the target (a superset: each is parsed); None
    when the files cannot be screened."""
    if not files:
        return {}
    # lower-cased, and as given: RE2's case folding does not match every lower-casing (İ)
    given = {n.strip() for n in _needles(target) if n and n.strip()}
    needles = sorted(given | {n.lower() for n in given}, key=len, reverse=True)
    alternatives = [re.escape(n) for n in needles] + list(ALWAYS_CANDIDATES)
    digit_patterns = sorted({PHONE_GAP.join(d) for d in _phone_digits(target)})
    names = exp.Array(expressions=[exp.Literal.string(str(f)) for f in files]).sql("duckdb")
    chunks = [
        "|".join(items[i : i + size])
        for items, size in (
            (alternatives, NEEDLES_PER_PATTERN),
            (digit_patterns, PHONES_PER_PATTERN),
        )
        for i in range(0, len(items), size)
    ]
    # Each match is one whole line: the earliest a match can start is where its line does.
    lines = [exp.Literal.string("(?i)[^\\n]*(?:" + c + ")[^\\n]*").sql("duckdb") for c in chunks]
    scans = [
        f"select filename, unnest(regexp_extract_all(content, {pattern})) as line "
        f"from read_text({names})"
        for pattern in lines
    ]
    found: dict[str, set[str]] = {}
    try:
        with duckdb.connect() as con:
            rows = con.execute(" union all ".join(scans)).fetchall()
    except duckdb.Error:  # a file that is not UTF-8 text: every line is parsed instead
        return None
    for filename, line in rows:
        found.setdefault(filename, set()).add(line)
    return found


def _phone_digits(target: Target) -> set[str]:
    found = set()
    for key in target.keys | target.redact_keys:
        kind, _, value = key.partition(":")
        digits = phones.national_digits(value) if kind == "phone" else None
        if digits:
            found.add(digits)
    return found


def _needles(target: Target) -> set[str]:
    values = {k.split(":", 1)[1] for k in target.keys | target.redact_keys if ":" in k}
    return values | target.users | target.person_ids | target.spellings | set(target.send_keys)


def wait_for_open_files(folder: Path, timeout: float = OPEN_FILE_WAIT_SECONDS) -> None:
    """Until the collector has closed the files it had open when the forget began (it closes
    each within a second): their rows are then in visible files, which the pass rewrites.
    Files it opens later hold events that came after the request."""
    open_now = set(folder.glob(".*.open"))
    deadline = time.monotonic() + timeout
    while any(p.exists() for p in open_now) and time.monotonic() < deadline:
        time.sleep(0.05)


def visible(folder: Path, pattern: str) -> Iterator[Path]:
    if folder.exists():
        yield from sorted(p for p in folder.glob(pattern) if not p.name.startswith((".", "_")))


def _rows(path: Path) -> Iterator[Any]:
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                try:
                    yield json.loads(line)
                except ValueError:
                    yield line


def rewrite_jsonl(
    path: Path, decide: Decide, target: Target, write: bool = True, only: set[str] | None = None
) -> Done:
    """`path` without the rows `decide` removes (or with those it redacts), if any; removed
    when no row stays. `write=False` counts what would change. `only`: the lines that may
    change (screened_lines); the others are kept as bytes, never decoded. Bytes that are not
    UTF-8 are kept as they were."""
    if not landing.closed(path):
        return Done(busy=[str(path)])
    wanted = {line.encode() for line in only} if only is not None else None
    kept: list[bytes] = []
    removed = redacted = 0
    lines = path.read_bytes().split(b"\n")
    cut_tail = lines[-1]  # after the last newline: a line cut short by a killed writer, or b""
    for line in lines:
        if not line.strip():
            continue
        if wanted is not None and line not in wanted:
            kept.append(line)
            continue
        text = line.decode("utf-8", "surrogateescape")
        try:
            row = json.loads(text)
        except ValueError:  # not JSON: kept unless it names the person
            verdict: dict[str, Any] | bool | None = None if target.in_text(text) else True
        else:
            verdict = decide(row) if isinstance(row, dict) else True
        if verdict is True:
            kept.append(line)
        elif verdict is None or verdict is False:
            removed += 1
        else:
            redacted += 1
            kept.append(json.dumps(verdict, default=str, separators=(",", ":")).encode())
    if not removed and not redacted:
        return Done()
    if write:
        # a line cut short stays cut (no newline after it): readers tell it from a whole line
        # by that, and list it as a reject instead of failing on it
        end = b"" if kept and kept[-1] is cut_tail else b"\n"
        _replace_bytes(path, b"\n".join(kept) + end if kept else b"")
    return Done(files=1, rows_removed=removed, rows_redacted=redacted)


def _replace_bytes(path: Path, data: bytes) -> None:
    if not data:
        path.unlink()
        landing.fsync_dir(path.parent)
        return
    landing.replace_file(path, data, suffix=TMP_SUFFIX)


# -- Parquet: journey state, sync results, previews, the compacted ledger ----------------------

# folder under landing -> (what to do with the person's rows, the personal columns to empty)
PARQUET: dict[str, tuple[str, tuple[str, ...]]] = {
    "journeys/transitions": ("pseudonymize", ("properties", "detail")),
    "journeys/previews": ("remove", ()),
    "syncs/results": ("remove", ()),
    "ledger/compacted": ("pseudonymize", LEDGER_PERSONAL),
}


def forget_parquet(landing_dir: Path, target: Target) -> dict[str, Done]:
    done: dict[str, Done] = {}
    with duckdb.connect() as con:
        for relative, (how, personal) in PARQUET.items():
            outcome = Done()
            for path in visible(landing_dir / relative, "*.parquet"):
                outcome.add(_rewrite_parquet(con, path, how, personal, target))
            done[relative] = outcome
    return done


def _rewrite_parquet(
    con: duckdb.DuckDBPyConnection, path: Path, how: str, personal: tuple[str, ...], t: Target
) -> Done:
    source = exp.Literal.string(str(path)).sql("duckdb")
    columns = {
        r[0] for r in con.execute(f"describe select * from read_parquet({source})").fetchall()
    }
    if "person_id" in columns:
        match_column, values = "person_id", t.person_ids
    elif "key" in columns:  # sync results: the destination's key, the user id
        match_column = "key"
        values = {k.split(":", 1)[1] for k in t.keys if k.startswith("user_id:")}
    else:
        return Done()
    wanted = exp.Array(expressions=[exp.Literal.string(v) for v in sorted(values)]).sql("duckdb")
    where = f"list_contains({wanted}, {match_column})"
    (hits,) = con.execute(
        f"select count(*) from read_parquet({source}) where {where}"
    ).fetchone() or (0,)
    if not hits:
        return Done()
    if how == "remove":
        query = f"select * from read_parquet({source}) where not {where}"
    else:
        emptied = [c for c in personal if c in columns]
        replaced = [f"case when {where} then null else {c} end as {c}" for c in emptied]
        people = exp.Literal.string(json.dumps(t.pseudonyms)).sql("duckdb")
        replaced.append(
            f"case when {where} then coalesce(json_extract_string({people}, "
            f"'$.\"' || person_id || '\"'), 'forgotten') else person_id end as person_id"
        )
        if "send_key" in columns and t.send_keys:
            mapping = exp.Literal.string(json.dumps(t.send_keys)).sql("duckdb")
            replaced.append(
                f"case when {where} then coalesce(json_extract_string({mapping}, "
                f"'$.\"' || send_key || '\"'), send_key) else send_key end as send_key"
            )
        query = f"select * replace ({', '.join(replaced)}) from read_parquet({source})"
    rewrite_parquet(con, path, query)
    removed = hits if how == "remove" else 0
    return Done(files=1, rows_removed=removed, rows_redacted=hits - removed)


def rewrite_parquet(con: duckdb.DuckDBPyConnection, path: Path, query: str) -> None:
    """`path` replaced by what `query` selects, keeping the file's own key-value metadata (the
    ledger's `source_files`; a writer's Arrow schema is not kept)."""
    source = exp.Literal.string(str(path)).sql("duckdb")
    metadata = con.execute(
        f"select decode(key), decode(value) from parquet_kv_metadata({source}) "
        "where not starts_with(decode(key), 'ARROW:')"
    ).fetchall()
    options = ""
    if metadata:
        pairs = ", ".join(
            f"{exp.Literal.string(k).sql('duckdb')}: {exp.Literal.string(v).sql('duckdb')}"
            for k, v in metadata
        )
        options = f"kv_metadata {{{pairs}}}"
    landing.write_parquet(con, query, path, options)
