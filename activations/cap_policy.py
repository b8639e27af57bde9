"""The project's frequency cap policy: one cap over every marketing journey's messages, declared
once in dbt_project.yml (`vars: frequency_cap:`), as Braze's global frequency capping or
Customer.io's message limits are set once per workspace. dbt reads the same var: the guard
checks (fct_guard_violations, macros/journey_policies.sql) judge sends by it too.

A journey that declares its own `frequency_cap` keeps it instead; transactional journeys and the
policy's `exempt_journeys` are never held back by it and count toward no cap. None declared: no
policy, each journey as it declares. `switchyard caps simulate` replays a policy (the project's,
or a JSON file with the same keys) over the ledger (activations/caps_simulate.py).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, cast

import yaml  # type: ignore[import-untyped]

from activations.graph import is_time_zone
from activations.journeys import FrequencyCap, Journey

PROJECT_VAR = "frequency_cap"  # in dbt_project.yml's vars
OnCap = Literal["defer", "skip", "exit"]
ON_CAP = ("defer", "skip", "exit")
KEYS = {"messages", "per_hours", "on_cap", "calendar_day", "default_timezone", "exempt_journeys"}
EXAMPLE = (
    '{"messages": 1, "per_hours": 24, "on_cap": "defer", "calendar_day": false, '
    '"default_timezone": "UTC", "exempt_journeys": []}'
)


@dataclass(frozen=True)
class CapPolicy:
    messages: int
    per_hours: float
    exempt_journeys: frozenset[str] = field(default_factory=frozenset)
    calendar_day: bool = False  # per the person's calendar day, as a journey's cap can be
    default_timezone: str = "UTC"  # for people without a known time zone
    on_cap: OnCap = "defer"  # what a step it holds back does (FrequencyCap.on_cap)

    @property
    def cap(self) -> FrequencyCap:
        return FrequencyCap(
            self.messages,
            self.per_hours,
            on_cap=self.on_cap,
            calendar_day=self.calendar_day,
            default_timezone=self.default_timezone,
        )

    def describe(self) -> str:
        if self.calendar_day:
            return f"{self.messages} per calendar day (their time, else {self.default_timezone})"
        return f"{self.messages} per {self.per_hours:g} h"

    @classmethod
    def from_file(cls, path: Path) -> CapPolicy:
        """A JSON file with a journey's frequency_cap keys and the journeys it exempts (EXAMPLE)."""
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(
                f"{path}: a cap policy is JSON like {EXAMPLE} ({exc.__class__.__name__}: {exc})"
            ) from exc
        return cls.from_mapping(raw, str(path))

    @classmethod
    def from_mapping(cls, raw: object, where: str) -> CapPolicy:
        """The policy `raw` declares (`where`: what to name in an error)."""
        try:
            if not isinstance(raw, Mapping):
                raise TypeError(f"a mapping of {sorted(KEYS)}, not {type(raw).__name__}")
            unknown = set(raw) - KEYS
            if unknown:
                raise KeyError(f"unknown keys {sorted(unknown)}")
            exempt = raw.get("exempt_journeys") or []
            if not isinstance(exempt, list) or not all(isinstance(j, str) for j in exempt):
                raise TypeError("exempt_journeys is a list of journey names")
            on_cap = raw.get("on_cap", "defer")
            if on_cap not in ON_CAP:
                raise ValueError(f"on_cap {on_cap!r} is one of {', '.join(ON_CAP)}")
            policy = cls(
                int(raw["messages"]),
                float(raw.get("per_hours", 24)),
                frozenset(exempt),
                bool(raw.get("calendar_day", False)),
                str(raw.get("default_timezone", "UTC")),
                cast(OnCap, on_cap),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(
                f"{where}: a cap policy is like {EXAMPLE} ({exc.__class__.__name__}: {exc})"
            ) from exc
        if policy.messages < 1 or policy.per_hours <= 0:
            raise ValueError(f"{where}: messages must be at least 1 and per_hours above 0")
        if not is_time_zone(policy.default_timezone):
            raise ValueError(
                f"{where}: default_timezone {policy.default_timezone!r} is not an IANA time zone "
                "(e.g. 'Europe/Berlin')"
            )
        return policy


def project_policy(project_dir: Path) -> CapPolicy | None:
    """The policy dbt_project.yml declares (`vars: frequency_cap:`), or None."""
    path = project_dir / "dbt_project.yml"
    if not path.is_file():  # no project here (a manifest copied elsewhere): no policy
        return None
    try:
        project = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: cannot be read for the cap policy ({exc})") from exc
    raw = (project.get("vars") or {}).get(PROJECT_VAR)
    if raw is None:
        return None
    return CapPolicy.from_mapping(raw, f"{path} vars.{PROJECT_VAR}")


def apply(journeys: Sequence[Journey], policy: CapPolicy | None) -> list[Journey]:
    """Each journey under the policy: its cap where it declares none (and is neither
    transactional nor exempt), marked exempt where the policy names it."""
    if policy is None:
        return list(journeys)
    known = {j.name for j in journeys}
    unknown = sorted(policy.exempt_journeys - known)
    if unknown:
        raise ValueError(
            f"the cap policy exempts journeys that are not declared: {unknown} "
            f"(declared: {sorted(known)})"
        )
    capped = sorted(
        j.name for j in journeys if j.name in policy.exempt_journeys and j.frequency_cap
    )
    if capped:
        # uncounted, its own sends would no longer count toward its own cap
        raise ValueError(
            f"the cap policy exempts journeys that declare a frequency_cap of their own: "
            f"{capped} (the policy never applies to them; exempt only journeys without one)"
        )
    out = []
    for journey in journeys:
        if journey.name in policy.exempt_journeys:
            out.append(replace(journey, cap_exempt=True))
        elif journey.frequency_cap is None and not journey.transactional:
            out.append(replace(journey, frequency_cap=policy.cap, cap_from_policy=True))
        else:
            out.append(journey)
    return out
