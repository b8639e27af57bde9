"""Send-time guards: consent, reachability and the global frequency cap, on the freshest data.

The audience may be minutes old; an opt-out recorded a second ago must still win, so consent is
read right before sending through the warehouse view `int_user_consents_current` (which reads the
landing files at query time, under the same rules dbt builds the profiles with), and the cap from
the ledger including this run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from activations.graph import is_time_zone
from activations.journeys import FrequencyCap, QuietHours, Step
from activations.ledger import LedgerState, SkipReason
from switchyard.events import MARKETING

# (user_id, channel, topic) -> (status, recorded_at) of the latest consent change.
FreshConsents = dict[tuple[str, str, str], tuple[str, datetime]]
# (channel, address as matched) -> (scope, reason) of the addresses suppressed now.
Suppressions = dict[tuple[str, str], tuple[str, str | None]]


@dataclass(frozen=True)
class Person:
    person_id: str
    user_id: str | None
    email: str | None
    phone: str | None
    push_token: str | None
    first_name: str | None
    # channel -> 'subscribed' / 'unsubscribed' / 'none', as the warehouse last built it
    consent: dict[str, str] = field(default_factory=dict)
    most_engaged_channel: str | None = None  # dim_people: most opens and clicks; None if none
    timezone: str | None = None  # IANA, as dim_people has it (unchecked)

    def address(self, channel: str) -> str | None:
        if channel == "webhook":  # the team's own system: it knows people by their id
            return self.person_id
        if channel == "in_app":  # the inbox of the app's signed-in user
            return self.user_id
        return {"email": self.email, "sms": self.phone, "push": self.push_token}.get(channel)


@dataclass(frozen=True)
class Channel:
    channel: str
    recipient: str


def consent_for(person: Person, channel: str, fresh: FreshConsents, topic: str = MARKETING) -> str:
    """The person's latest consent on the channel for `topic` ('none' if they never said). For
    marketing: a webhook hands the message to the team's own system, not to the person, and the
    in-app inbox shows it only inside the app they signed in to: both allowed unless the person
    opted out of them explicitly."""
    if person.user_id and (person.user_id, channel, topic) in fresh:
        return fresh[(person.user_id, channel, topic)][0]
    if topic != MARKETING:
        return "none"
    default = "subscribed" if channel in ("webhook", "in_app") else "none"
    return person.consent.get(channel, default)


@dataclass(frozen=True)
class ConsentRule:
    """What a journey's messages need of the person's consent on a channel."""

    # transactional: no marketing consent needed; only an SMS STOP holds (carriers and Twilio
    # block every later text to a number that replied STOP, receipts included).
    transactional: bool = False
    topic: str | None = None  # an opt-out of it holds on every kind of message
    topic_opt_in: bool = False  # only people who subscribed to the topic

    def refusal(self, person: Person, channel: str, fresh: FreshConsents) -> str | None:
        """Why the person may not get the message on `channel`, or None when they may."""
        marketing = consent_for(person, channel, fresh)
        if self.transactional:
            if channel == "sms" and marketing == "unsubscribed":
                return "sms: unsubscribed (STOP holds for every text)"
        elif marketing != "subscribed":
            return f"{channel}: marketing consent {marketing}"
        if self.topic:
            status = consent_for(person, channel, fresh, self.topic)
            if status == "unsubscribed" or (self.topic_opt_in and status != "subscribed"):
                return f"{channel}: topic {self.topic} {status}"
        return None


# E.164: a plus, a country code that does not start with 0, at most 15 digits in all.
E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")
# An address a provider would take: one @, a local part and a dotted domain, no spaces.
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")


def address_problem(channel: str, address: str) -> str | None:
    """Why a provider would refuse `address` (checked before any request), or None."""
    if channel == "sms" and not E164.match(address):
        return f"sms: {address!r} is not an E.164 number (+ and up to 15 digits)"
    if channel == "email" and not EMAIL.match(address):
        return f"email: {address!r} is not an email address"
    return None


@dataclass(frozen=True)
class NoChannel:
    """Why no channel of a step fits the person (detail: which addresses were malformed)."""

    reason: SkipReason
    detail: str | None = None


def suppressed_as(
    channel: str, address: str, suppressions: Suppressions, rule: ConsentRule
) -> str | None:
    """Why `address` is suppressed on `channel` for the rule's kind of message, or None."""
    key = (channel, address.strip().lower() if channel == "email" else address)
    if key not in suppressions:
        return None
    scope, reason = suppressions[key]
    if scope == "marketing" and rule.transactional:
        return None  # an unsubscribe by address: receipts still go
    return f"{channel}: {address} suppressed ({reason or 'listed'})"


def identifier_keys(person: Person) -> list[str | None]:
    """The person's identifiers as the identity graph keys them (`type:value`), for matching
    against deletion requests' hashes (switchyard/privacy/tombstones.py)."""
    return [
        f"person_id:{person.person_id}",
        f"user_id:{person.user_id}" if person.user_id else None,
        f"email:{person.email.strip().lower()}" if person.email else None,
        f"phone:{person.phone}" if person.phone else None,  # E.164 in dim_people
        f"push_token:{person.push_token}" if person.push_token else None,
    ]


def choose_channel(
    step: Step,
    person: Person,
    fresh: FreshConsents,
    rule: ConsentRule = ConsentRule(),
    suppressions: Suppressions | None = None,
) -> Channel | NoChannel:
    """The first of the step's channels with consent (as `rule` needs it) and a well-formed
    address that is not suppressed, else the reason none fits. With `most_engaged_first`, the
    channel the person engages with most (if the step has it) goes first."""
    channels = list(step.channels)
    engaged = person.most_engaged_channel
    if step.most_engaged_first and engaged in channels:
        channels.remove(engaged)
        channels.insert(0, engaged)
    consented_without_address = False
    malformed: list[str] = []
    suppressed: list[str] = []
    refused: list[str] = []
    for channel in channels:
        if refusal := rule.refusal(person, channel, fresh):
            refused.append(refusal)
            continue
        recipient = person.address(channel)
        if not recipient:
            consented_without_address = True
        elif problem := address_problem(channel, recipient):
            malformed.append(problem)  # a provider would refuse it: try the next channel
        elif held := suppressed_as(channel, recipient, suppressions or {}, rule):
            suppressed.append(held)  # bounced, STOP: try the next channel
        else:
            return Channel(channel, recipient)
    if malformed:
        return NoChannel(SkipReason.INVALID_ADDRESS, "; ".join(malformed))
    if suppressed:
        return NoChannel(SkipReason.SUPPRESSED, "; ".join(suppressed))
    if consented_without_address:
        return NoChannel(SkipReason.NO_ADDRESS)
    return NoChannel(SkipReason.NO_CONSENT, "; ".join(refused) or None)


def _window_hours(cap: FrequencyCap, now: datetime, timezone: str | None) -> float:
    """The cap's window ending now, in hours: `per_hours`, or since the person's last midnight."""
    if not cap.calendar_day:
        return cap.per_hours
    midnight = _day_start(now, _zone(timezone, cap.default_timezone), 0)
    return (now - midnight).total_seconds() / 3600


def _zone(timezone: str | None, default: str) -> ZoneInfo:
    return ZoneInfo(timezone if timezone and is_time_zone(timezone) else default)


def _day_start(now: datetime, zone: ZoneInfo, days: int) -> datetime:
    """The first instant (naive UTC) of the person's day `days` after today's."""
    local = now.replace(tzinfo=UTC).astimezone(zone)
    day = local.date() + timedelta(days=days)
    return _instants(datetime.combine(day, time(0)), zone)[0].replace(tzinfo=None)


def over_cap(
    cap: FrequencyCap | None,
    person_id: str,
    ledger: LedgerState,
    now: datetime,
    send_key: str | None = None,
    timezone: str | None = None,
) -> bool:
    """True when the person has had `cap.messages` within the window (not counting `send_key`'s
    own earlier attempt, when it is being sent once more)."""
    if cap is None:
        return False
    return len(_counted(cap, person_id, ledger, now, send_key, timezone)) >= cap.messages


def _counted(
    cap: FrequencyCap,
    person_id: str,
    ledger: LedgerState,
    now: datetime,
    send_key: str | None,
    timezone: str | None,
) -> list[datetime]:
    hours = _window_hours(cap, now, timezone)
    if not cap.calendar_day:  # a sliding window: a send exactly per_hours ago has left it
        return ledger.send_times_within(person_id, now, hours, excluding=send_key)
    times = ledger.send_times_within(person_id, now, hours + 1e-6, excluding=send_key)
    since = now - timedelta(hours=hours)
    return [t for t in times if t >= since]  # a send at their midnight counts for the new day


def cap_allows_at(
    cap: FrequencyCap,
    person_id: str,
    ledger: LedgerState,
    now: datetime,
    send_key: str,
    timezone: str | None = None,
) -> datetime:
    """When the cap lets the person have one more message: as the oldest message it must drop
    leaves the window, or at their next midnight (`now` if it allows one already)."""
    times = _counted(cap, person_id, ledger, now, send_key, timezone)
    if len(times) < cap.messages:
        return now
    if cap.calendar_day:
        return _day_start(now, _zone(timezone, cap.default_timezone), 1)
    return times[len(times) - cap.messages] + timedelta(hours=cap.per_hours)


def quiet_until(quiet: QuietHours, channel: str, person: Person, now: datetime) -> datetime | None:
    """When the quiet hours end (naive UTC, as the ledger's times) if `now` falls in them for the
    person, on this channel, in their time zone (an unknown one: the journey's default); None
    when a message may go now."""
    if channel not in quiet.channels:
        return None
    zone = _zone(person.timezone, quiet.default_timezone)
    local = now.replace(tzinfo=UTC).astimezone(zone)
    start, end = (time.fromisoformat(t) for t in (quiet.start, quiet.end))
    at = local.time().replace(tzinfo=None)
    quiet_now = start <= at < end if start < end else (at >= start or at < end)
    if not quiet_now:
        return None
    # The first instant after now when the person's clock reads `end`: compared in UTC, since a
    # clock set back reads the same hour twice and one set forward skips some.
    after = now.replace(tzinfo=UTC)
    for day in (local.date(), local.date() + timedelta(days=1)):
        for instant in _instants(datetime.combine(day, end), zone):
            if instant > after:
                return instant.replace(tzinfo=None)
    raise AssertionError(f"quiet hours {quiet.start}-{quiet.end} have no end in {zone}")


def _instants(wall: datetime, zone: ZoneInfo) -> list[datetime]:
    """The UTC instants when a clock in `zone` reads `wall`: two in the hour a clock is set back;
    in one it skips, none, so the instant it jumps past `wall` (the first wall minute after)."""
    while True:
        found = sorted(
            {
                utc
                for fold in (0, 1)
                if (utc := wall.replace(tzinfo=zone, fold=fold).astimezone(UTC))
                .astimezone(zone)
                .replace(tzinfo=None)
                == wall
            }
        )
        if found:
            return found
        wall += timedelta(minutes=1)
