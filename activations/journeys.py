"""Journeys are data: each is declared once, in its audience model's YAML under `meta.journey`.

dbt builds the entry audience from the declaration; this module reads the same declaration from the
dbt manifest so the engine never names a particular journey.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Any, Literal, cast

import jsonschema

from activations.conditions import Condition, ConditionError, parse_condition
from activations.graph import (
    COMPLETED,
    Branch,
    GraphError,
    Node,
    Split,
    Step,
    Template,
    Wait,
    duration_text,
    is_time_zone,
    parse_nodes,
)
from switchyard.tiers import TIERS, TierName

__all__ = ["Journey", "Step", "Template", "JourneyDefinitionError", "load_journeys"]

CHANNELS = ("email", "sms", "push", "webhook", "in_app")
# Conditions may name the columns this model declares in its YAML.
PROFILE_MODEL = "dim_people"


class JourneyDefinitionError(ValueError):
    """A journey declaration is incomplete or inconsistent; the message says where and what."""


CAP_ACTIONS = {
    "defer": "deferred",
    "skip": "skipped",
    "exit": "skipped, and the entry leaves the journey",
}


@dataclass(frozen=True)
class FrequencyCap:
    messages: int
    per_hours: float
    # What a step the cap holds back does: `defer` (sent on a later run once the cap allows,
    # until the step expires), `skip` (recorded as skipped, never sent; the journey goes on) or
    # `exit` (recorded as skipped, and the entry leaves the journey).
    on_cap: Literal["defer", "skip", "exit"] = "defer"
    # Counted per calendar day in the person's time zone (default_timezone when unknown), not
    # over a sliding `per_hours`: "at most one a day" starting again at their midnight.
    calendar_day: bool = False
    default_timezone: str = "UTC"

    @property
    def lookback(self) -> timedelta:
        """How far back a run must read sends to judge this cap."""
        return timedelta(hours=48) if self.calendar_day else timedelta(hours=self.per_hours)


@dataclass(frozen=True)
class QuietHours:
    """No message on `channels` from `start` to `end` (HH:MM) in the person's time zone."""

    start: str
    end: str
    channels: tuple[str, ...] = ("email", "sms", "push")
    default_timezone: str = "UTC"


@dataclass(frozen=True)
class EntryRule:
    """Who enters. `event` (unless `unless` follows within `within_minutes`: the audience SQL), or
    `membership` of the audience model, or a `daily_at` schedule over it."""

    event: str | None = None
    unless: str | None = None
    within_minutes: int = 0
    membership: bool = False
    daily_at: str | None = None  # 'HH:MM', UTC
    # Only events whose properties meet this (`cart_value >= 50`) enter; the others are not
    # candidates at all (Braze's trigger property filter).
    where: Condition | None = None

    @property
    def kind(self) -> Literal["event", "membership", "schedule"]:
        if self.event:
            return "event"
        return "schedule" if self.daily_at else "membership"

    def describe(self) -> str:
        if self.event:
            unless = (
                f", unless {self.unless} within {self.within_minutes} min" if self.unless else ""
            )
            where = f", where {self.where.text}" if self.where else ""
            return f"{self.event}{where}{unless}"
        if self.daily_at:
            return f"every day at {self.daily_at} UTC, who is in the audience then"
        return "on appearing in the audience"


@dataclass(frozen=True)
class Reentry:
    allow: Literal["never", "after_exit", "after_cooldown"] = "after_exit"
    cooldown_hours: float = 0.0
    max_concurrent: int = 1


def declared_version(meta: dict[str, Any]) -> str:
    """The declared `version`, else the first 8 hex digits of a hash of the declaration: any
    edit to a journey starts a new version, and reformatting the YAML does not."""
    if meta.get("version") is not None:
        return str(meta["version"])
    canonical = json.dumps(meta, sort_keys=True, default=str, separators=(",", ":"))
    return "h" + hashlib.sha256(canonical.encode()).hexdigest()[:8]


# The experiment name of the holdout assignment in the metrics; split steps name theirs.
HOLDOUT_EXPERIMENT = "holdout"


@dataclass(frozen=True)
class Goal:
    event: str
    within_hours: float


@dataclass(frozen=True)
class Journey:
    name: str
    audience_model: str
    tier: TierName
    nodes: tuple[Node, ...]
    exit_on: tuple[str, ...]
    frequency_cap: FrequencyCap | None
    entry: EntryRule = EntryRule()
    holdout_percent: float = 0.0  # per person: macros/hash_bucket.sql, activations/tick.py
    reentry: Reentry = Reentry()
    goals: tuple[Goal, ...] = ()
    exit_when: Condition | None = None
    quiet_hours: QuietHours | None = None
    # transactional (a receipt, a password reset): never held back by a cap or quiet hours, and
    # not counted toward anyone's cap; it needs no marketing consent (guards.ConsentRule).
    message_type: Literal["marketing", "transactional"] = "marketing"
    # The subscription topic the messages belong to (a preference center's "cart reminders"):
    # an opt-out of it holds on top of the channel's consent; with `topic_opt_in`, only people
    # who subscribed to it explicitly get them.
    topic: str | None = None
    topic_opt_in: bool = False
    # Recorded on every transition: metrics compare entries by the version they entered under.
    version: str = "unversioned"
    # Set by the project's cap policy (activations/cap_policy.py): its cap is the policy's; the
    # policy exempts it (never held back by the policy, counted toward no cap).
    cap_from_policy: bool = False
    cap_exempt: bool = False

    @property
    def counted(self) -> bool:
        """Its messages count toward caps (not transactional, not exempt by the policy)."""
        return not (self.transactional or self.cap_exempt)

    @property
    def transactional(self) -> bool:
        return self.message_type == "transactional"

    @property
    def steps(self) -> tuple[Step, ...]:
        """The send nodes, in declared order."""
        return tuple(n for n in self.nodes if isinstance(n, Step))

    @property
    def channels(self) -> frozenset[str]:
        """What a run needs provider settings for: every channel a step may send on, and the
        platforms steps hand messages to (their routes, handoff_<destination>) instead."""
        return frozenset(
            c
            for step in self.steps
            for c in ((step.handoff.route,) if step.handoff else step.channels)
        )

    @classmethod
    def from_meta(
        cls,
        audience_model: str,
        meta: dict[str, Any],
        declared_in: str | None = None,
        profile_columns: Collection[str] | None = None,
    ) -> Journey:
        """`profile_columns`: what conditions may name (dim_people's declared columns)."""
        where = f"journey declared on model {audience_model!r}" + (
            f" in {declared_in}" if declared_in else ""
        )
        _check_against_schema(where, meta)
        _check_finite(where, meta)
        try:
            nodes = parse_nodes(where, meta["steps"], profile_columns)
        except GraphError as exc:  # names the step already
            raise JourneyDefinitionError(str(exc)) from None
        if any(n.name == HOLDOUT_EXPERIMENT for n in nodes):
            raise JourneyDefinitionError(
                f"{where}: a step cannot be named {HOLDOUT_EXPERIMENT!r}: the metrics name the "
                "holdout experiment so, beside each split step's (fct_journey_exposures); "
                "rename the step"
            )

        def condition(key: str, text: str, columns: Collection[str] | None) -> Condition:
            try:
                return parse_condition(text, columns)
            except ConditionError as exc:
                raise JourneyDefinitionError(f"{where}, {key}: {exc}") from None

        exit_when = (
            condition("exit_when", meta["exit_when"], profile_columns or ())
            if meta.get("exit_when")
            else None
        )
        entry = dict(meta["entry"])
        if entry.get("where"):  # over the entry event's properties, which no model declares
            entry["where"] = condition("entry.where", entry["where"], None)
        tier = meta.get("tier", "hours")
        if tier not in TIERS:  # the schema's list is checked against TIERS by a test
            raise JourneyDefinitionError(
                f"{where}: unknown tier {tier!r}; a journey runs in one of {sorted(TIERS)}"
            )
        schedule = entry.pop("schedule", None)
        reentry = Reentry(**meta.get("reentry", {}))
        if reentry.allow == "after_cooldown" and not reentry.cooldown_hours:
            raise JourneyDefinitionError(f"{where}: reentry after_cooldown needs cooldown_hours")
        exit_on = meta.get("exit_on", [])
        cap = meta.get("frequency_cap")
        quiet = meta.get("quiet_hours")
        quiet_hours = None
        if quiet:
            quiet_hours = QuietHours(
                quiet["start"],
                quiet["end"],
                tuple(quiet.get("channels", QuietHours.channels)),
                quiet.get("default_timezone", "UTC"),
            )
            if quiet_hours.start == quiet_hours.end:
                raise JourneyDefinitionError(f"{where}: quiet_hours start and end are the same")
            if not is_time_zone(quiet_hours.default_timezone):
                raise JourneyDefinitionError(
                    f"{where}: quiet_hours default_timezone {quiet_hours.default_timezone!r} is "
                    "not an IANA time zone (e.g. 'Europe/Berlin')"
                )
        if cap and not is_time_zone(cap.get("default_timezone", "UTC")):
            raise JourneyDefinitionError(
                f"{where}: frequency_cap default_timezone {cap['default_timezone']!r} is not an "
                "IANA time zone (e.g. 'Europe/Berlin')"
            )
        return cls(
            name=meta["name"],
            audience_model=audience_model,
            tier=cast(TierName, tier),
            nodes=nodes,
            exit_on=tuple([exit_on] if isinstance(exit_on, str) else exit_on),
            frequency_cap=FrequencyCap(
                int(cap["messages"]),
                float(cap.get("per_hours", 24)),
                cap.get("on_cap", "defer"),
                bool(cap.get("calendar_day", False)),
                cap.get("default_timezone", "UTC"),
            )
            if cap
            else None,
            entry=EntryRule(**entry, daily_at=schedule["daily_at"] if schedule else None),
            holdout_percent=float(meta.get("holdout_percent", 0)),
            reentry=reentry,
            goals=tuple(Goal(**g) for g in meta.get("goals", [])),
            exit_when=exit_when,
            quiet_hours=quiet_hours,
            message_type=meta.get("message_type", "marketing"),
            topic=meta["topic"].strip().lower() if meta.get("topic") else None,
            topic_opt_in=bool(meta.get("topic_opt_in", False)),
            version=declared_version(meta),
        )

    def outline(self) -> str:
        """The journey as text: what `switchyard journeys show` prints."""
        lines = [f"journey {self.name}  (tier {self.tier}; audience {self.audience_model})"]
        lines.append(f"  entry    {self.entry.describe()}")
        r = self.reentry
        again = {
            "never": "never",
            "after_exit": "after leaving",
            "after_cooldown": f"after leaving and {r.cooldown_hours:g} h after entering",
        }[r.allow]
        lines.append(f"  re-entry {again}; at most {r.max_concurrent} open at once")
        if self.exit_on:
            lines.append(f"  exit on  {', '.join(self.exit_on)}")
        if self.exit_when:
            lines.append(f"  exit if  {self.exit_when.text}")
        for goal in self.goals:
            lines.append(f"  goal     {goal.event} within {goal.within_hours:g} h (converts)")
        if self.holdout_percent:
            lines.append(f"  holdout  {self.holdout_percent:g}% of people receive nothing")
        if self.transactional:
            lines.append(
                "  type     transactional: no cap or quiet hours, counted toward none; "
                "no marketing consent needed"
            )
        if self.topic:
            needs = "subscribed to it" if self.topic_opt_in else "not unsubscribed from it"
            lines.append(f"  topic    {self.topic}: only people {needs}")
        if self.frequency_cap:
            cap = self.frequency_cap
            per = (
                f"calendar day (their time, else {cap.default_timezone})"
                if cap.calendar_day
                else f"{cap.per_hours:g} h"
            )
            source = " (the project's cap policy)" if self.cap_from_policy else ""
            lines.append(
                f"  cap      {cap.messages} per {per}, across every journey{source}; "
                f"a capped step is {CAP_ACTIONS[cap.on_cap]}"
            )
        elif self.cap_exempt:
            lines.append("  cap      exempt from the project's cap policy; counted toward none")
        if q := self.quiet_hours:
            lines.append(
                f"  quiet    {q.start}-{q.end} their time (else {q.default_timezone}) on "
                f"{', '.join(q.channels)}: a step due then waits for the end"
            )
        following = dict(zip([n.name for n in self.nodes], [*self.nodes[1:], None], strict=True))
        for n, node in enumerate(self.nodes, 1):
            lines.append(f"  {n}. {node.name}: {_describe(node)}")
            if isinstance(node, Step | Wait) and node.next != _next_name(following[node.name]):
                lines.append(f"       then -> {node.next}")
        return "\n".join(lines)


def _next_name(node: Node | None) -> str:
    return node.name if node else COMPLETED


def _describe(node: Node) -> str:
    if isinstance(node, Step):
        expires = (
            f", expires after {node.expires_after_hours:g} h" if node.expires_after_hours else ""
        )
        at = (
            f"at entry + {duration_text(node.wait_minutes)}{expires}; "
            if node.wait_minutes
            else (f"at once{expires}; ")
        )
        engaged = "their most engaged channel, else " if node.most_engaged_first else ""
        return f"send {at}{engaged}{', else '.join(node.channels)}"
    if isinstance(node, Wait):
        return node.describe()
    if isinstance(node, Branch):
        ways = "; ".join(f"if {c.text} -> {t}" for c, t in node.branches)
        return f"branch {ways}; otherwise -> {node.otherwise}"
    if isinstance(node, Split):
        return "split " + ", ".join(f"{p.name} {p.percent:g}% -> {p.next}" for p in node.paths)
    return "exit"


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


def _check_finite(where: str, value: Any, path: str = "") -> None:
    """YAML's .inf and .nan are numbers to JSON Schema; no duration or share may be either."""
    if isinstance(value, float) and not math.isfinite(value):
        raise JourneyDefinitionError(f"{where}: {path or 'a value'} must be a finite number")
    if isinstance(value, dict):
        for key, item in value.items():
            _check_finite(where, item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for n, item in enumerate(value):
            _check_finite(where, item, f"{path}[{n}]")


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


def load_journeys(manifest_path: Path, project_dir: Path | None = None) -> list[Journey]:
    """Every journey declared in the dbt project, from its manifest.json, under the project's
    cap policy (activations/cap_policy.py; `project_dir`: the dbt project, by default the one
    whose target/ holds the manifest)."""
    from activations import cap_policy  # it builds on this module's Journey

    if not manifest_path.exists():
        raise FileNotFoundError(
            f"dbt manifest not found at {manifest_path}: run `switchyard prepare` (or `dbt parse`)"
        )
    manifest = json.loads(manifest_path.read_text())
    profile_columns = [
        column
        for node in manifest["nodes"].values()
        if node.get("resource_type") == "model" and node.get("name") == PROFILE_MODEL
        for column in node.get("columns", {})
    ]
    journeys = [
        Journey.from_meta(
            node["name"],
            node["config"]["meta"]["journey"],
            declared_in=(node.get("patch_path") or "").removeprefix("switchyard://") or None,
            profile_columns=profile_columns,
        )
        for node in manifest["nodes"].values()
        if node.get("resource_type") == "model"
        and node.get("config", {}).get("meta", {}).get("journey")
    ]
    names = [j.name for j in journeys]
    duplicated = {n for n in names if names.count(n) > 1}
    if duplicated:
        raise JourneyDefinitionError(f"journey names declared more than once: {sorted(duplicated)}")
    project = project_dir if project_dir is not None else manifest_path.resolve().parent.parent
    try:
        journeys = cap_policy.apply(journeys, cap_policy.project_policy(project))
    except ValueError as exc:
        where = project / "dbt_project.yml"
        raise JourneyDefinitionError(
            f"the cap policy in {where} (vars.frequency_cap): {exc}"
        ) from exc
    return sorted(journeys, key=lambda j: j.name)
