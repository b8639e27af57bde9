"""The identity rules restated in plain Python with a union-find: the oracle the SQL must match."""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Occurrence:
    occurred_at: datetime
    identifiers: Mapping[str, str | None]  # type -> raw value


class UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def normalize(kind: str | None, raw: str) -> str | None:
    if kind == "email":
        value = raw.strip(" ").lower()
        return value if re.fullmatch(r".*.@..*\...*", value, re.S) else None
    value = raw.strip(" ")
    return value or None


def resolve(occurrences: Sequence[Occurrence], cfg: Mapping[str, Any]) -> dict[str, str]:
    """identifier_key -> person_id, by the rules in models/identity/dim_identities.sql."""
    anchor = cfg["anchor_type"]
    blocked = {v.lower() for v in cfg.get("blocklist_values", [])}
    patterns = [re.compile(p) for p in cfg.get("blocklist_patterns", [])]
    limits = cfg.get("max_anchors_per_identifier", {})

    usable: list[tuple[datetime, list[str]]] = []
    for occ in occurrences:
        keys = []
        for kind, raw in occ.identifiers.items():
            if raw is None:
                continue
            value = normalize(cfg.get("normalize", {}).get(kind), raw)
            if value is None or value.lower() in blocked or any(p.search(value) for p in patterns):
                continue
            keys.append(f"{kind}:{value}")
        usable.append((occ.occurred_at, keys))

    first_seen: dict[str, datetime] = {}
    links: dict[str, dict[str, datetime]] = defaultdict(dict)  # non-anchor -> anchor -> first
    for at, keys in usable:
        anchors = [k for k in keys if k.startswith(anchor + ":")]
        for k in keys:
            first_seen[k] = min(first_seen.get(k, at), at)
            if not k.startswith(anchor + ":"):
                for a in anchors:
                    links[k][a] = min(links[k].get(a, at), at)

    def kind_of(key: str) -> str:
        return key.split(":", 1)[0]

    def is_shared(key: str) -> bool:
        limit = int(limits.get(kind_of(key), limits.get("default", 5)))
        return len(links.get(key, {})) > limit

    mergeable = {k for k in first_seen if kind_of(k) != anchor and not is_shared(k)}
    uf = UnionFind()
    for _, keys in usable:
        members = [k for k in keys if k in mergeable]
        for k in members:
            uf.find(k)
            uf.union(members[0], k)

    component_anchors: dict[str, set[str]] = defaultdict(set)
    for k in mergeable:
        component_anchors[uf.find(k)].update(links.get(k, {}))

    groups: dict[str, str] = {}
    for k in first_seen:
        if kind_of(k) == anchor:
            groups[k] = k
        elif k not in mergeable:
            groups[k] = "shared:" + k
        else:
            reach = component_anchors[uf.find(k)]
            own = sorted(links.get(k, {}).items(), key=lambda item: (item[1], item[0]))
            if len(reach) == 1:
                groups[k] = next(iter(reach))
            elif len(reach) > 1 and own:
                groups[k] = own[0][0]
            else:
                groups[k] = "component:" + uf.find(k)

    oldest: dict[str, str] = {}
    for k, g in groups.items():
        if g not in oldest or (first_seen[k], k) < (first_seen[oldest[g]], oldest[g]):
            oldest[g] = k
    return {k: "p_" + hashlib.md5(oldest[g].encode()).hexdigest() for k, g in groups.items()}


def partition(assignment: Mapping[str, str]) -> set[frozenset[str]]:
    by_person: dict[str, set[str]] = defaultdict(set)
    for key, person in assignment.items():
        by_person[person].add(key)
    return {frozenset(v) for v in by_person.values()}
