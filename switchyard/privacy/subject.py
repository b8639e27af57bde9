"""Who a privacy request is about: an identifier the person gave (an email, a phone, a user id)
or a person id, resolved through the identity graph to the person and everything they used.

The identifier is normalised as the identity models normalise it (emails lower-cased and
trimmed, phones to E.164 in the project's default region, macros/normalize.sql and
switchyard/phones.py), then looked up in `dim_identities` by its `identifier_key`. An identifier
the graph holds as shared (one email on several accounts) is followed through
`int_identity_anchor_links` to each account: a request that reaches more than one person stops
and asks for the person id, so that nobody is handed someone else's data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import duckdb

from switchyard import phones

Kind = Literal["email", "phone", "user_id", "person_id"]
KINDS: tuple[Kind, ...] = ("email", "phone", "user_id", "person_id")
DEFAULT_PHONE_REGION = "US"  # models/identity/_identity__models.yml meta.default_phone_region


class SubjectError(ValueError):
    """The request names nobody, or more than one person."""


class SeveralPeople(SubjectError):
    """The identifier belongs to more than one person: a person id must say which."""


@dataclass(frozen=True)
class Request:
    kind: Kind
    value: str

    def identifier_key(self, phone_region: str = DEFAULT_PHONE_REGION) -> str:
        """The value as the identity graph keys it (`type:normalised`)."""
        raw = self.value.strip()
        if self.kind == "email":
            if "@" not in raw:
                raise SubjectError(f"{self.value!r} is not an email address")
            return f"email:{raw.lower()}"
        if self.kind == "phone":
            e164, problem = phones.parse(raw, phone_region)
            if e164 is None:
                raise SubjectError(f"{self.value!r}: {problem}")
            return f"phone:{e164}"
        return f"{self.kind}:{raw}"


@dataclass(frozen=True)
class Subject:
    """The person a request is about: their current id, the ids merged into it, and each
    identifier the graph holds for them."""

    person_id: str
    former_person_ids: tuple[str, ...]
    identifiers: tuple[tuple[str, str], ...]  # (type, normalised value)
    # those others used too (a family tablet, a shared email): exported, but never a reason to
    # remove or block a row without their user id
    shared: tuple[tuple[str, str], ...] = ()

    @property
    def own(self) -> list[tuple[str, str]]:
        return [i for i in self.identifiers if i not in self.shared]

    @property
    def person_ids(self) -> list[str]:
        return [self.person_id, *self.former_person_ids]

    def values(self, kind: str) -> list[str]:
        return [v for t, v in self.identifiers if t == kind]

    def own_values(self, kind: str) -> list[str]:
        return [v for t, v in self.own if t == kind]


def resolve(
    con: duckdb.DuckDBPyConnection, request: Request, phone_region: str = DEFAULT_PHONE_REGION
) -> Subject:
    """The one person `request` names, on a connection to the warehouse."""
    if request.kind == "person_id":
        wanted = request.value.strip()
        moved = con.execute(
            "select person_id from dim_person_aliases where alias_person_id = ?", [wanted]
        ).fetchall()
        candidates = {moved[0][0]} if moved else {wanted}
        known = con.execute(
            "select 1 from dim_identities where person_id = ? limit 1", [next(iter(candidates))]
        ).fetchall()
        if not known:
            raise SubjectError(f"no person {wanted!r} in the identity graph")
    else:
        key = request.identifier_key(phone_region)
        rows = con.execute(
            """
            select person_id from dim_identities where identifier_key = ? and person_id is not null
            union
            select i.person_id
            from int_identity_anchor_links as l
            join dim_identities as i on i.identifier_key = l.anchor_key
            where l.identifier_key = ?
            """,
            [key, key],
        ).fetchall()
        candidates = {r[0] for r in rows}
        if not candidates:
            raise SubjectError(f"nobody with {request.kind} {request.value!r} is known")
        if len(candidates) > 1:
            raise SeveralPeople(
                f"{request.kind} {request.value!r} belongs to {len(candidates)} people "
                f"({', '.join(sorted(candidates))}): name one with --person-id"
            )
    (person_id,) = candidates
    former = con.execute(
        "select alias_person_id from dim_person_aliases "
        "where person_id = ? and alias_person_id <> person_id order by 1",
        [person_id],
    ).fetchall()
    # Shared: over the graph's limit of accounts (`shared`), or seen with another account's
    # anchor too (a family tablet, an order Bob placed with her email).
    identifiers = con.execute(
        """
        select distinct i.identifier_type, i.identifier_value,
            i.resolution = 'shared' or coalesce((
                select count(distinct l.anchor_key) from int_identity_anchor_links as l
                where l.identifier_key = i.identifier_key
            ), 0) > 1
        from dim_identities as i
        where i.person_id = ? order by 1, 2
        """,
        [person_id],
    ).fetchall()
    return Subject(
        person_id,
        tuple(r[0] for r in former),
        tuple((t, v) for t, v, _ in identifiers),
        tuple((t, v) for t, v, shared in identifiers if shared),
    )
