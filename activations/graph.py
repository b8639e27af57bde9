"""A journey's nodes and the graph they make: send, wait, branch, split and exit.

Each node goes on to `next`, else to the node declared after it; the last one ends the journey
(`COMPLETED`). The checks here are the ones a JSON Schema cannot make: targets that exist, a cycle
that would loop without waiting, conditions that parse against the profile's columns.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from activations import render
from activations.conditions import Condition, ConditionError, parse_condition

# Where an entry can end up that is no node: the journey is over for it.
COMPLETED = "(completed)"  # went past the last node
EXITED = "(exited)"  # an exit node, an exit event or the exit criterion
CONVERTED = "(converted)"  # reached a goal (and the goal ends the journey)
NOT_ENTERED = "(not entered)"  # the re-entry policy kept the person out
# A membership journey's ended entry whose person has since left the audience: coming back is a
# new appearance, so they may enter again.
LEFT_AUDIENCE = "(left audience)"
FINAL = frozenset({COMPLETED, EXITED, CONVERTED, NOT_ENTERED, LEFT_AUDIENCE})


class GraphError(ValueError):
    """A node graph that cannot run; the message names the node."""


@dataclass(frozen=True)
class Template:
    body: str
    subject: str | None = None
    title: str | None = None


HANDOFF_DESTINATIONS = ("braze", "customerio", "iterable", "airship")


@dataclass(frozen=True)
class Handoff:
    """A send step's message handed to an engagement platform, which renders and sends it
    (activations/channels/handoff.py); the step's channels still decide consent, caps and
    quiet hours."""

    destination: str  # braze | customerio | iterable | airship
    # Braze campaign, Customer.io transactional message, Iterable campaign; none for Airship,
    # which pushes the step's own push template
    campaign_id: str
    properties: dict[str, str] = field(default_factory=dict)  # name -> template

    @property
    def route(self) -> str:
        """The delivery client's name (ChannelSettings.clients)."""
        return f"handoff_{self.destination}"

    @property
    def renders_here(self) -> bool:
        """Whether the step's own templates are rendered and sent (Airship's push; Braze's
        /messages/send when no campaign is named) rather than the platform's content."""
        return self.destination == "airship" or not self.campaign_id


@dataclass(frozen=True)
class ConnectedContent:
    """Content fetched at send time (activations/connected_content.py)."""

    name: str
    url: str
    timeout_seconds: float = 2.0
    on_failure: Literal["skip", "fallback"] = "skip"
    fallback: Any = None


@dataclass(frozen=True)
class Step:
    """A send node: the first of `channels` the person has consented to and can be reached on."""

    name: str
    wait_minutes: int  # not before entry + this (a timing from entry, as a linear journey has)
    channels: tuple[str, ...]
    templates: dict[str, Template]
    expires_after_hours: float | None = None
    fallbacks: dict[str, str] = field(default_factory=dict)
    # The channel the person engages with most (dim_people.most_engaged_channel) first.
    most_engaged_first: bool = False
    next: str = COMPLETED
    connected_content: tuple[ConnectedContent, ...] = ()
    handoff: Handoff | None = None
    kind: Literal["send"] = "send"


@dataclass(frozen=True)
class Wait:
    name: str
    next: str
    minutes: float | None = None  # a duration from reaching the node
    until_time: str | None = None  # 'HH:MM' in the person's time zone
    until_usual_hour: bool = False  # the hour they usually open and click
    default_timezone: str = "UTC"
    default_hour: int = 10
    until_event: str | None = None
    of_step: str | None = None  # the event is engagement (open, click) with that step's send
    timeout_minutes: float | None = None
    on_timeout: str | None = None
    kind: Literal["wait"] = "wait"

    def describe(self) -> str:
        if self.minutes is not None:
            return f"wait {duration_text(self.minutes)}"
        if self.until_time:
            return f"wait until {self.until_time} their time (else {self.default_timezone})"
        if self.until_usual_hour:
            return f"wait until their usual active hour (else {self.default_hour}:00)"
        on = f" on {self.of_step}" if self.of_step else ""
        return (
            f"wait for {self.until_event}{on}, at most {duration_text(self.timeout_minutes or 0)} "
            f"(then {self.on_timeout})"
        )


@dataclass(frozen=True)
class Branch:
    name: str
    branches: tuple[tuple[Condition, str], ...]
    otherwise: str
    kind: Literal["branch"] = "branch"


@dataclass(frozen=True)
class SplitPath:
    name: str
    percent: float
    next: str


@dataclass(frozen=True)
class Split:
    name: str
    paths: tuple[SplitPath, ...]
    kind: Literal["split"] = "split"


@dataclass(frozen=True)
class Exit:
    name: str
    kind: Literal["exit"] = "exit"


Node = Step | Wait | Branch | Split | Exit


def is_time_zone(name: str) -> bool:
    """Whether `name` is an IANA time zone this machine knows."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def targets(node: Node) -> Iterator[str]:
    """Every node this one can go on to."""
    if isinstance(node, Step):
        yield node.next
    elif isinstance(node, Wait):
        yield node.next
        if node.on_timeout:
            yield node.on_timeout
    elif isinstance(node, Branch):
        yield from (target for _, target in node.branches)
        yield node.otherwise
    elif isinstance(node, Split):
        yield from (p.next for p in node.paths)


def parse_nodes(
    where: str, raw_nodes: list[dict[str, Any]], profile_columns: Collection[str] | None
) -> tuple[Node, ...]:
    names = [raw["name"] for raw in raw_nodes]
    if len(set(names)) != len(names):
        raise GraphError(f"{where}: step names must be unique")
    follow = dict(zip(names, [*names[1:], COMPLETED], strict=True))
    nodes = tuple(
        _parse_node(where, raw, follow[raw["name"]], profile_columns) for raw in raw_nodes
    )
    check_graph(where, nodes)
    return nodes


# The channels each platform's hand-off endpoint sends on (activations/channels/handoff.py).
HANDOFF_CHANNELS = {
    "braze": ("email", "sms", "push", "in_app", "webhook"),  # the campaign decides
    "customerio": ("email", "sms", "push"),
    "iterable": ("email", "sms", "push", "in_app"),
    "airship": ("push",),  # Airship as the push provider: the step's own push template
}
# Braze without a campaign: /messages/send with the step's own templates
BRAZE_MESSAGES_CHANNELS = ("email", "sms", "push")


def _handoff(where: str, step: str, raw: Any, channels: list[str]) -> Handoff | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or raw.get("destination") not in HANDOFF_DESTINATIONS:
        raise GraphError(
            f"{where}, step {step!r}: handoff.destination must be one of "
            f"{list(HANDOFF_DESTINATIONS)}"
        )
    campaign = raw.get("campaign_id") not in (None, "")
    if not campaign and raw["destination"] not in ("airship", "braze"):
        raise GraphError(f"{where}, step {step!r}: a handoff names its campaign_id")
    allowed = HANDOFF_CHANNELS[raw["destination"]]
    if raw["destination"] == "braze" and not campaign:
        allowed = BRAZE_MESSAGES_CHANNELS
    if unsupported := [c for c in channels if c not in allowed]:
        raise GraphError(
            f"{where}, step {step!r}: {raw['destination']} hand-offs send on {list(allowed)}, "
            f"not {unsupported}"
        )
    properties = {str(k): str(v) for k, v in (raw.get("properties") or {}).items()}
    for key, text in properties.items():
        try:
            render.check(text)
        except render.TemplateProblem as bad:
            raise GraphError(
                f"{where}, step {step!r}: handoff property {key!r} does not parse: {bad}"
            ) from bad
    return Handoff(str(raw["destination"]), str(raw.get("campaign_id") or ""), properties)


def _parse_node(
    where: str, raw: dict[str, Any], following: str, profile_columns: Collection[str] | None
) -> Node:
    name = raw["name"]
    kind = raw.get("type", "send")
    nxt = raw.get("next", following)
    if kind == "send":
        templates = {ch: Template(**tpl) for ch, tpl in (raw.get("templates") or {}).items()}
        handoff = _handoff(where, name, raw.get("handoff"), raw["channels"])
        missing = [c for c in raw["channels"] if c not in templates]
        # A platform renders its own content; Airship, and Braze without a campaign, send the
        # step's own templates.
        if missing and (handoff is None or handoff.renders_here):
            raise GraphError(f"{where}, step {name!r}: no template for channel(s) {missing}")
        for channel, template in templates.items():
            for part in ("subject", "title", "body"):
                text = getattr(template, part)
                try:
                    render.check(text or "")
                except render.TemplateProblem as bad:
                    raise GraphError(
                        f"{where}, step {name!r}: the {channel} template's {part} does not "
                        f"parse: {bad} (values are {{name}}, logic is [% if ... %]...[% endif %])"
                    ) from bad
        expires = raw.get("expires_after_hours")
        fetched = tuple(
            ConnectedContent(
                name=c["name"],
                url=c["url"],
                timeout_seconds=float(c.get("timeout_seconds", 2.0)),
                on_failure=c.get("on_failure", "skip"),
                fallback=c.get("fallback"),
            )
            for c in raw.get("connected_content") or ()
        )
        for c in fetched:
            try:
                render.check(c.url)
            except render.TemplateProblem as bad:
                raise GraphError(
                    f"{where}, step {name!r}: connected content {c.name!r}: the URL does not "
                    f"parse: {bad}"
                ) from bad
            if c.on_failure == "fallback" and c.fallback is None:
                raise GraphError(
                    f"{where}, step {name!r}: connected content {c.name!r} falls back on "
                    "failure but declares no `fallback`"
                )
        return Step(
            name=name,
            wait_minutes=int(raw.get("wait_minutes", 0)),
            channels=tuple(raw["channels"]),
            templates=templates,
            expires_after_hours=float(expires) if expires is not None else None,
            fallbacks={k: str(v) for k, v in (raw.get("fallbacks") or {}).items()},
            most_engaged_first=bool(raw.get("most_engaged_first", False)),
            next=nxt,
            connected_content=fetched,
            handoff=handoff,
        )
    if kind == "wait":
        duration = _minutes(raw, "", where)
        timeout = _minutes(raw, "timeout_", where)
        if raw.get("until_event") and not raw.get("on_timeout"):
            raise GraphError(f"{where}, step {name!r}: a wait for an event needs `on_timeout`")
        zone = raw.get("default_timezone", "UTC")
        if not is_time_zone(zone):
            raise GraphError(
                f"{where}, step {name!r}: default_timezone {zone!r} is not an IANA time zone "
                "(such as Europe/Berlin)"
            )
        return Wait(
            name=name,
            next=nxt,
            minutes=duration,
            until_time=raw.get("until_time"),
            until_usual_hour=bool(raw.get("until_usual_hour", False)),
            default_timezone=raw.get("default_timezone", "UTC"),
            default_hour=int(raw.get("default_hour", 10)),
            until_event=raw.get("until_event"),
            of_step=raw.get("of_step"),
            timeout_minutes=timeout,
            on_timeout=raw.get("on_timeout"),
        )
    if kind == "branch":
        if profile_columns is None:
            raise GraphError(f"{where}, step {name!r}: branch conditions need the profile columns")
        branches = []
        for b in raw["branches"]:
            try:
                branches.append((parse_condition(b["when"], profile_columns), b["next"]))
            except ConditionError as exc:
                raise GraphError(f"{where}, step {name!r}: {exc}") from None
        return Branch(name, tuple(branches), raw.get("otherwise", following))
    if kind == "split":
        paths = tuple(SplitPath(p["name"], float(p["percent"]), p["next"]) for p in raw["paths"])
        total = sum(p.percent for p in paths)
        if abs(total - 100) > 1e-9:
            raise GraphError(f"{where}, step {name!r}: split percents add up to {total:g}, not 100")
        if len({p.name for p in paths}) != len(paths):
            raise GraphError(f"{where}, step {name!r}: split path names must be unique")
        return Split(name, paths)
    return Exit(name)


# A wait shorter than a minute could loop without time passing; a century is a typo.
_SHORTEST, _LONGEST = 1.0, 100 * 365 * 1440.0


def _minutes(raw: Mapping[str, Any], prefix: str, where: str = "") -> float | None:
    for unit, factor in (("minutes", 1), ("hours", 60), ("days", 1440)):
        if raw.get(prefix + unit) is not None:
            minutes = float(raw[prefix + unit]) * factor
            if not _SHORTEST <= minutes <= _LONGEST:
                raise GraphError(
                    f"{where}, step {raw['name']!r}: {prefix}{unit} must come to between one "
                    "minute and a hundred years"
                )
            return minutes
    return None


def check_graph(where: str, nodes: tuple[Node, ...]) -> None:
    """Every target exists; every engagement wait names an earlier send; no cycle without a wait
    (an entry would go round it forever within one run)."""
    by_name = {n.name: n for n in nodes}
    for node in nodes:
        for target in targets(node):
            if target not in by_name and target != COMPLETED:
                raise GraphError(
                    f"{where}, step {node.name!r}: goes on to {target!r}, which is not a step; "
                    f"steps: {', '.join(by_name)}"
                )
        if (
            isinstance(node, Wait)
            and node.of_step is not None
            and not isinstance(by_name.get(node.of_step), Step)
        ):
            raise GraphError(
                f"{where}, step {node.name!r}: of_step {node.of_step!r} is not a send step"
            )
    # A cycle among nodes that take no time: depth-first search, waits cut the edges.
    instant = {n.name: [t for t in targets(n) if t in by_name] for n in nodes if n.kind != "wait"}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for target in instant.get(name, []):
            if state.get(target) == 1:
                cycle = " -> ".join([*path[path.index(target) :], target])
                raise GraphError(f"{where}: the steps {cycle} make a cycle without a wait")
            if target in instant and not state.get(target):
                visit(target, [*path, target])
        state[name] = 2

    for name in instant:
        if not state.get(name):
            visit(name, [name])


def duration_text(minutes: float) -> str:
    if minutes and minutes % 1440 == 0:
        return f"{minutes / 1440:g} d"
    if minutes and minutes % 60 == 0:
        return f"{minutes / 60:g} h"
    return f"{minutes:g} min"
