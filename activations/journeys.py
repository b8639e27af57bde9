"""Journeys are data: each is declared once, in its audience model's YAML under `meta.journey`.

dbt builds the entry audience from the declaration; this module reads the same declaration from the
dbt manifest so the engine never names a particular journey.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, cast

import jsonschema

from switchyard.tiers import TIERS, TierName

CHANNELS = ("email", "sms", "push")


class JourneyDefinitionError(ValueError):
    """A journey declaration is incomplete or inconsistent; the message says where and what."""


@dataclass(frozen=True)
class Template:
    body: str
    subject: str | None = None
    title: str | None = None


@dataclass(frozen=True)
class Step:
    name: str
    wait_minutes: int
    channels: tuple[str, ...]
    templates: dict[str, Template]
    expires_after_hours: float | None = None
    fallbacks: dict[str, str] = field(default_factory=dict)
    # The channel the person engages with most (dim_people.most_engaged_channel) first.
    most_engaged_first: bool = False


@dataclass(frozen=True)
class FrequencyCap:
    messages: int
    per_hours: float


@dataclass(frozen=True)
class EntryRule:
    """Who enters: `event`, unless `unless` follows within `within_minutes` (the audience SQL)."""

    event: str
    unless: str | None = None
    within_minutes: int = 0


@dataclass(frozen=True)
class Journey:
    name: str
    audience_model: str
    tier: TierName
    steps: tuple[Step, ...]
    exit_on: tuple[str, ...]
    frequency_cap: FrequencyCap | None
    entry: EntryRule | None = None
    holdout_percent: float = 0.0  # assigned in SQL (macros/hash_bucket.sql), per entry's `arm`

    @property
    def channels(self) -> frozenset[str]:
        """Every channel a step may send on: what a run needs provider settings for."""
        return frozenset(c for step in self.steps for c in step.channels)

    @classmethod
    def from_meta(
        cls, audience_model: str, meta: dict[str, Any], declared_in: str | None = None
    ) -> Journey:
        where = f"journey declared on model {audience_model!r}" + (
            f" in {declared_in}" if declared_in else ""
        )
        _check_against_schema(where, meta)
        name = meta["name"]
        steps = tuple(_parse_step(where, s) for s in meta["steps"])
        if len({s.name for s in steps}) != len(steps):
            raise JourneyDefinitionError(f"{where}: step names must be unique")
        tier = meta.get("tier", "hours")
        if tier not in TIERS:  # the schema's list is checked against TIERS by a test
            raise JourneyDefinitionError(
                f"{where}: unknown tier {tier!r}; a journey runs in one of {sorted(TIERS)}"
            )
        exit_on = meta.get("exit_on", [])
        cap = meta.get("frequency_cap")
        return cls(
            name=name,
            audience_model=audience_model,
            tier=cast(TierName, tier),
            steps=steps,
            exit_on=tuple([exit_on] if isinstance(exit_on, str) else exit_on),
            frequency_cap=FrequencyCap(int(cap["messages"]), float(cap["per_hours"]))
            if cap
            else None,
            entry=EntryRule(**meta["entry"]) if meta.get("entry") else None,
            holdout_percent=float(meta.get("holdout_percent", 0)),
        )

    def outline(self) -> str:
        """The journey as text: what `switchyard journeys show` prints."""
        lines = [f"journey {self.name}  (tier {self.tier}; audience {self.audience_model})"]
        if self.entry:
            unless = (
                f", unless {self.entry.unless} within {self.entry.within_minutes} min"
                if self.entry.unless
                else ""
            )
            lines.append(f"  entry    {self.entry.event}{unless}")
        if self.exit_on:
            lines.append(f"  exit on  {', '.join(self.exit_on)}")
        if self.holdout_percent:
            lines.append(f"  holdout  {self.holdout_percent:g}% of people receive nothing")
        if self.frequency_cap:
            cap = self.frequency_cap
            lines.append(f"  cap      {cap.messages} per {cap.per_hours:g} h, across every journey")
        for n, step in enumerate(self.steps, 1):
            expires = (
                f", expires after {step.expires_after_hours:g} h"
                if step.expires_after_hours
                else ""
            )
            lines.append(
                f"  {n}. {step.name}: at entry + {_duration(step.wait_minutes)}{expires}; "
                + ("their most engaged channel, else " if step.most_engaged_first else "")
                + f"{', else '.join(step.channels)}"
            )
        return "\n".join(lines)


def _duration(minutes: int) -> str:
    if minutes and minutes % 1440 == 0:
        return f"{minutes // 1440} d"
    if minutes and minutes % 60 == 0:
        return f"{minutes // 60} h"
    return f"{minutes} min"


SCHEMA_PATH = Path(__file__).with_name("journey.schema.json")


@cache
def journey_schema() -> dict[str, Any]:
    """The declaration's JSON Schema (editors can use it too: activations/journey.schema.json)."""
    schema: dict[str, Any] = json.loads(SCHEMA_PATH.read_text())
    return schema


def _check_against_schema(where: str, meta: dict[str, Any]) -> None:
    validator = jsonschema.Draft202012Validator(journey_schema())
    errors = sorted(validator.iter_errors(meta), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        lines = [
            f"{_path(e.absolute_path, meta) or '(the declaration)'}: {e.message}" for e in errors
        ]
        raise JourneyDefinitionError(f"{where}:\n  " + "\n  ".join(lines))


def _path(parts: Iterable[str | int], meta: dict[str, Any]) -> str:
    """['steps', 0, 'channels'] -> "steps[0] 'cart_reminder'.channels": steps named as declared."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
            steps = meta.get("steps")
            if out == f"steps[{part}]" and isinstance(steps, list) and part < len(steps):
                name = steps[part].get("name") if isinstance(steps[part], dict) else None
                out += f" {name!r}" if name else ""
        else:
            out += f".{part}" if out else str(part)
    return out


def _parse_step(where: str, raw: dict[str, Any]) -> Step:
    name = raw["name"]
    channels = tuple(raw["channels"])
    templates = {ch: Template(**tpl) for ch, tpl in (raw.get("templates") or {}).items()}
    missing = [c for c in channels if c not in templates]
    if missing:
        raise JourneyDefinitionError(
            f"{where}, step {name!r}: no template for channel(s) {missing}"
        )
    expires = raw.get("expires_after_hours")
    return Step(
        name=name,
        wait_minutes=int(raw.get("wait_minutes", 0)),
        channels=channels,
        templates=templates,
        expires_after_hours=float(expires) if expires is not None else None,
        fallbacks={k: str(v) for k, v in (raw.get("fallbacks") or {}).items()},
        most_engaged_first=bool(raw.get("most_engaged_first", False)),
    )


def load_journeys(manifest_path: Path) -> list[Journey]:
    """Every journey declared in the dbt project, from its manifest.json."""
    if not manifest_path.exists():
        raise FileNotFoundError(
            f"dbt manifest not found at {manifest_path}: run `switchyard prepare` (or `dbt parse`)"
        )
    manifest = json.loads(manifest_path.read_text())
    journeys = [
        Journey.from_meta(
            node["name"],
            node["config"]["meta"]["journey"],
            declared_in=(node.get("patch_path") or "").removeprefix("switchyard://") or None,
        )
        for node in manifest["nodes"].values()
        if node.get("resource_type") == "model"
        and node.get("config", {}).get("meta", {}).get("journey")
    ]
    names = [j.name for j in journeys]
    duplicated = {n for n in names if names.count(n) > 1}
    if duplicated:
        raise JourneyDefinitionError(f"journey names declared more than once: {sorted(duplicated)}")
    return sorted(journeys, key=lambda j: j.name)
