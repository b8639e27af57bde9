"""Syncs as the dbt project declares them: `meta.syncs` on a model, one entry per destination.

    config:
      meta:
        syncs:
          - name: braze_people            # unique across the project
            destination: braze
            tier: hours                   # when it runs (switchyard/tiers.py); by default the
                                          # tier the model updates on (model_tier)
            key: person_id                # the model's column naming the user (Braze external_id)
            attributes:                   # destination attribute: model column
              email: email
              first_name: first_name
            on_remove: unset              # unset (the attributes set to null) | delete | keep
            max_removal_share: 0.25       # stop when more than this share would be removed
            max_attempts: 3               # a rejected row is tried this many times, then kept

An event sync names `event` instead: each new row of the model is one event for the user in
`key`, sent once (rows are never changed or removed at the destination):

    event:
      id: order_id                    # unique per event: what "new" is judged by
      name: purchase_completed        # or name_column: a column holding each row's name
      time: ordered_at
      properties: {total: order_total, currency: currency}

A Braze purchase sync names `purchase` instead (Braze's purchases array: `product_id`, `price`,
`currency` and optionally `quantity` columns, with `id`, `time` and `properties` as for events).

An audience sync names `membership_attribute` instead of `attributes`: members get it set to
true and people who leave the audience get it set to false (on Airship: a tag of that name in
the `switchyard` tag group, added and removed). On Iterable an audience is a static list
instead: `list_id` names it, and members are subscribed to it and unsubscribed on leaving. On
Braze an audience can be a subscription group instead of an attribute: `subscription_group`
names its id, and members are subscribed to it and unsubscribed on leaving.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from switchyard.tiers import TIERS

DESTINATIONS = ("braze", "customerio", "iterable", "airship")
OnRemove = Literal["unset", "delete", "keep"]
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_KNOWN = {
    "name", "destination", "tier", "key", "attributes", "membership_attribute", "on_remove",
    "max_removal_share", "max_attempts", "list_id", "event", "purchase", "subscription_group",
}  # fmt: skip
_EVENT_KEYS = {"id", "name", "name_column", "time", "properties"}
# Braze's purchase object: its fields, by model column (quantity optional)
_PURCHASE_FIELDS = ("product_id", "price", "currency", "quantity")


@dataclass(frozen=True)
class EventSpec:
    id: str  # column
    time: str  # column
    name: str | None = None  # a literal name, or
    name_column: str | None = None  # a column holding each row's name
    properties: tuple[tuple[str, str], ...] = ()  # (property, column)
    purchase: tuple[tuple[str, str], ...] = ()  # Braze purchases: (product_id etc., column)

    @property
    def columns(self) -> list[str]:
        named = [self.name_column] if self.name_column else []
        fields = [c for _, c in (*self.properties, *self.purchase)]
        return [self.id, self.time, *named, *fields]


class SyncDefinitionError(ValueError):
    """A sync declaration that cannot run; the message names the model, the sync and the fix."""


@dataclass(frozen=True)
class Sync:
    name: str
    model: str
    destination: str
    tier: str
    key: str
    attributes: tuple[tuple[str, str], ...]  # (destination attribute, model column)
    membership_attribute: str | None
    list_id: int | None  # Iterable: the static list an audience is kept in
    subscription_group: str | None  # Braze: the subscription group an audience is kept in
    event: EventSpec | None  # an event sync
    on_remove: OnRemove
    max_removal_share: float
    max_attempts: int

    @property
    def columns(self) -> list[str]:
        """The model columns a run reads besides the key."""
        if self.event is not None:
            return self.event.columns
        return [column for _, column in self.attributes]

    @property
    def row_key(self) -> str:
        """The column rows are diffed by: the event id for an event sync, else the key."""
        return self.event.id if self.event is not None else self.key

    @property
    def membership(self) -> str | None:
        """Where an audience sync records membership: the attribute, the list's id or the
        subscription group's."""
        if self.list_id is not None:
            return str(self.list_id)
        return self.subscription_group or self.membership_attribute

    @property
    def is_audience(self) -> bool:
        return self.membership is not None

    @classmethod
    def from_meta(
        cls, model: str, meta: Any, model_columns: set[str], default_tier: str = "hours"
    ) -> Sync:
        """`default_tier`: the tier when the sync names none (load_syncs: the model's)."""
        where = f"model {model!r}, meta.syncs"
        if not isinstance(meta, dict):
            raise SyncDefinitionError(f"{where}: each sync is a mapping, not {meta!r}")
        name = meta.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise SyncDefinitionError(
                f"{where}: every sync needs a `name` of lowercase letters, digits and _ "
                f"(got {name!r})"
            )
        where = f"model {model!r}, sync {name!r}"
        unknown = set(meta) - _KNOWN
        if unknown:
            raise SyncDefinitionError(
                f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(_KNOWN)}"
            )
        destination = meta.get("destination")
        if destination not in DESTINATIONS:
            raise SyncDefinitionError(
                f"{where}: destination {destination!r} is not one of {list(DESTINATIONS)}"
            )
        tier = meta.get("tier", default_tier)
        if tier not in TIERS:
            raise SyncDefinitionError(f"{where}: tier {tier!r} is not one of {sorted(TIERS)}")
        key = meta.get("key", "person_id")
        attributes = meta.get("attributes") or {}
        membership = meta.get("membership_attribute")
        group = meta.get("subscription_group")
        audience = [membership is not None, meta.get("list_id") is not None, group is not None]
        if sum(audience) > 1:
            raise SyncDefinitionError(
                f"{where}: an audience is kept in one place: `membership_attribute`, `list_id` "
                "(Iterable) or `subscription_group` (Braze)"
            )
        if group is not None and (destination != "braze" or not isinstance(group, str)):
            raise SyncDefinitionError(
                f"{where}: `subscription_group` (the group's id, a string) is for Braze audiences"
            )
        kinds = [bool(attributes), any(audience)]
        kinds.append(meta.get("event") is not None or meta.get("purchase") is not None)
        if (
            not isinstance(attributes, dict)
            or sum(kinds) != 1
            or (meta.get("event") is not None and meta.get("purchase") is not None)
        ):
            raise SyncDefinitionError(
                f"{where}: declare either `attributes` (destination name: model column), "
                "`membership_attribute` (an audience sync; Iterable: `list_id`; Braze also "
                "`subscription_group`), `event` or "
                "`purchase` (Braze), exactly one"
            )
        if meta.get("purchase") is not None and destination != "braze":
            raise SyncDefinitionError(
                f"{where}: purchase syncs are Braze's (its purchases array); declare an `event` "
                f"for {destination}"
            )
        event = _event(where, meta.get("event"), meta.get("purchase"))
        if membership is not None and not isinstance(membership, str):
            raise SyncDefinitionError(f"{where}: membership_attribute must be a name")
        list_id = meta.get("list_id")
        if destination == "iterable" and membership is not None:
            raise SyncDefinitionError(
                f"{where}: an Iterable audience is a static list: name it with `list_id` (the "
                "list's number) instead of `membership_attribute`"
            )
        if list_id is not None:
            if destination != "iterable" or not isinstance(list_id, int) or attributes:
                raise SyncDefinitionError(
                    f"{where}: `list_id` (a number, instead of `attributes`) is for Iterable "
                    "audiences only"
                )
            membership = None
        pairs = tuple((str(k), str(v)) for k, v in attributes.items())
        used = {key, *(v for _, v in pairs), *(event.columns if event else ())}
        missing = sorted(used - model_columns) if model_columns else []
        if missing:
            raise SyncDefinitionError(
                f"{where}: columns {missing} are not among the model's documented columns "
                f"{sorted(model_columns)}"
            )
        if key in {k for k, _ in pairs} or "external_id" in {k for k, _ in pairs}:
            raise SyncDefinitionError(f"{where}: the key is sent as external_id, not an attribute")
        on_remove = meta.get("on_remove", "unset")
        if on_remove not in ("unset", "delete", "keep"):
            raise SyncDefinitionError(
                f"{where}: on_remove {on_remove!r} is not one of unset, delete, keep"
            )
        if any(audience) and on_remove == "delete":
            raise SyncDefinitionError(
                f"{where}: an audience sync never deletes users: leaving the audience ends the "
                "membership"
            )
        share = meta.get("max_removal_share", 0.25)
        attempts = meta.get("max_attempts", 3)
        if not isinstance(share, int | float) or not 0 < share <= 1:
            raise SyncDefinitionError(
                f"{where}: max_removal_share must be in (0, 1], not {share!r}"
            )
        if not isinstance(attempts, int) or attempts < 1:
            raise SyncDefinitionError(f"{where}: max_attempts must be a whole number >= 1")
        return cls(
            name=name,
            model=model,
            destination=destination,
            tier=tier,
            key=key,
            attributes=pairs,
            membership_attribute=membership,
            list_id=list_id,
            subscription_group=group,
            event=event,
            on_remove="keep" if event is not None else on_remove,
            max_removal_share=float(share),
            max_attempts=attempts,
        )


def _event(where: str, raw: Any, purchase: Any = None) -> EventSpec | None:
    if raw is None and purchase is None:
        return None
    what, allowed = (
        ("purchase", {"id", "time", "properties", *_PURCHASE_FIELDS})
        if (purchase is not None)
        else ("event", _EVENT_KEYS)
    )
    raw = purchase if purchase is not None else raw
    if not isinstance(raw, dict) or set(raw) - allowed:
        raise SyncDefinitionError(
            f"{where}: `{what}` is a mapping of {sorted(allowed)}, not {raw!r}"
        )
    if not raw.get("id") or not raw.get("time"):
        raise SyncDefinitionError(f"{where}: an {what} sync names its `id` and `time` columns")
    if purchase is not None:
        needed = [f for f in _PURCHASE_FIELDS[:3] if not raw.get(f)]
        if needed:
            raise SyncDefinitionError(f"{where}: a purchase names its columns for {needed}")
        fields = tuple((f, str(raw[f])) for f in _PURCHASE_FIELDS if raw.get(f))
        return EventSpec(
            id=str(raw["id"]), time=str(raw["time"]), name="purchase",
            properties=tuple((str(k), str(v)) for k, v in (raw.get("properties") or {}).items()),
            purchase=fields,
        )  # fmt: skip
    if bool(raw.get("name")) == bool(raw.get("name_column")):
        raise SyncDefinitionError(
            f"{where}: an event sync names each event: `name` (one name) or `name_column`"
        )
    properties = raw.get("properties") or {}
    if not isinstance(properties, dict):
        raise SyncDefinitionError(f"{where}: event.properties maps a property to a column")
    return EventSpec(
        id=str(raw["id"]),
        time=str(raw["time"]),
        name=raw.get("name"),
        name_column=raw.get("name_column"),
        properties=tuple((str(k), str(v)) for k, v in properties.items()),
    )


def model_tier(manifest: dict[str, Any], unique_id: str) -> str:
    """The tier a model updates on: the fastest tier of the journeys whose audience is built
    from it (their tier's runs rebuild it); `hours` when no journey reads it."""
    downstream, seen = [unique_id], {unique_id}
    tiers = set()
    while downstream:
        node = manifest["nodes"].get(downstream.pop())
        if node is None:
            continue
        journey = node.get("config", {}).get("meta", {}).get("journey")
        if isinstance(journey, dict):
            tiers.add(str(journey.get("tier", "hours")))
        for child in manifest.get("child_map", {}).get(node["unique_id"], ()):
            if child not in seen:
                seen.add(child)
                downstream.append(child)
    known = [TIERS[t] for t in tiers if t in TIERS]
    return min(known, key=lambda t: t.target_seconds).name if known else "hours"


def load_syncs(manifest_path: Path) -> list[Sync]:
    """Every sync declared in the dbt project, from its manifest.json."""
    if not manifest_path.exists():
        raise FileNotFoundError(
            f"dbt manifest not found at {manifest_path}: run `switchyard prepare` (or `dbt parse`)"
        )
    manifest = json.loads(manifest_path.read_text())
    syncs: list[Sync] = []
    for node in manifest["nodes"].values():
        if node.get("resource_type") != "model":
            continue
        declared = node.get("config", {}).get("meta", {}).get("syncs")
        if not declared:
            continue
        if not isinstance(declared, list):
            raise SyncDefinitionError(f"model {node['name']!r}: meta.syncs must be a list")
        columns = set(node.get("columns", {}))
        tier = model_tier(manifest, node["unique_id"])
        syncs += [Sync.from_meta(node["name"], meta, columns, tier) for meta in declared]
    names = [s.name for s in syncs]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise SyncDefinitionError(f"sync names declared more than once: {duplicated}")
    return sorted(syncs, key=lambda s: s.name)


def sync_destinations(manifest_path: Path) -> list[str]:
    """The platforms the project's syncs send to (a forget deletes the person at each)."""
    return sorted({s.destination for s in load_syncs(manifest_path)})
