"""One run of one journey: read, decide what is due, then deliver it through the guards."""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import httpx

from activations import engine, guards, inputs, ledger, partitions, warehouse
from activations.channels.core import DEFAULT_CONCURRENCY, ChannelClient, Outgoing, Sender
from activations.channels.fcm import DEAD_PUSH_TOKEN
from activations.channels.inbox import InboxClient
from activations.channels.message import Message, Outcome
from activations.channels.policy import HttpTimeouts, RateLimiter, RetryPolicy
from activations.channels.queues import ChannelQueues, Queued
from activations.channels.transport import sender_client
from activations.connected_content import ContentFetcher, ContentUnavailable
from activations.journeys import Journey
from activations.ledger import (
    ATTEMPTS_EXHAUSTED,
    OUTCOME_UNKNOWN,
    SUPERSEDED,
    DeferReason,
    LedgerState,
    SendRef,
    SkipReason,
    deferred_until,
)
from activations.partitions import PersonPartition
from activations.render import (
    MissingTemplateVariable,
    TemplateProblem,
    render,
    render_properties,
)
from activations.run_locks import run_locks
from activations.tick import TickResult, run_tick
from switchyard import events, landing
from switchyard.clock import utc_now
from switchyard.preference_links import LinkSigner, LinkSubject
from switchyard.privacy.tombstones import Forgotten

log = logging.getLogger(__name__)

PROVIDER_DOWN_RETRY = timedelta(minutes=5)  # a step deferred by an outage: due again after
# A capped person's earlier message of the run still in flight: waited for this long, else the
# step is deferred this long (its outcome decides whether the cap has room).
SETTLE_SECONDS = 2.0
LINKED_BY_ADDRESS = ("email", "sms", "push")
LINK_VALUES = ("unsubscribe_url", "preferences_url")  # template values deliver fills in
IN_FLIGHT_RETRY = timedelta(minutes=1)
# A long run reads consents and suppressions again this often, for the people of this many due
# steps ahead: an opt-out landed while it sends holds from then on.
GUARDS_REFRESH_SECONDS = 10.0
GUARDS_REFRESH_AHEAD = 10_000

ReadGuards = Callable[[list[guards.Person]], tuple[guards.FreshConsents, guards.Suppressions]]


class FreshGuards:
    """The audience's consents and suppressions, read again while a run goes through its due
    steps once they are `every_seconds` old: an opt-out, a bounce or a STOP landed after the run
    read them holds for every step not queued by then (those queued go out within a batch)."""

    def __init__(
        self,
        audience: warehouse.Audience,
        due: list[engine.Due],
        read: ReadGuards | None,
        every_seconds: float = GUARDS_REFRESH_SECONDS,
        ahead: int = GUARDS_REFRESH_AHEAD,
        read_at: float | None = None,
    ) -> None:
        self.audience = audience
        self.reads = 0  # read again this many times
        self._due, self._read, self._every, self._ahead = due, read, every_seconds, ahead
        # when `audience` was read (time.monotonic()), if not just now
        self._read_at = time.monotonic() if read_at is None else read_at
        self._covered = len(due)  # due steps up to here were read at _read_at

    def at(self, index: int) -> warehouse.Audience:
        """The audience for due[index], its guards at most `every_seconds` old."""
        fresh = index < self._covered and time.monotonic() - self._read_at < self._every
        if self._read is None or fresh:
            return self.audience
        self._read_at = time.monotonic()  # a failed read is tried again after as long
        self._covered = index + self._ahead
        upcoming = {d.ref.person_id for d in self._due[index : self._covered]}
        people = [p for pid in upcoming if (p := self.audience.people.get(pid))]
        try:
            consents, suppressions = self._read(people)
        except (duckdb.Error, OSError, RuntimeError) as failed:  # (RuntimeError: attached's)
            log.warning("consents and suppressions not read again (%s): the last read holds",
                        failed)  # fmt: skip
            return self.audience
        self.reads += 1
        # A consent is never withdrawn from the view, only outdated; a suppression is lifted.
        self.audience.consents.update(consents)
        addresses = warehouse.addresses_of(people)
        for held in [k for k in self.audience.suppressions if k[1] in addresses]:
            del self.audience.suppressions[held]
        self.audience.suppressions.update(suppressions)
        return self.audience


@dataclass
class RunSummary:
    journey: str
    run_id: str
    due: int = 0
    # per channel
    sent: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    unknown: Counter[str] = field(default_factory=Counter)
    # per reason
    skipped: Counter[str] = field(default_factory=Counter)
    deferred: Counter[str] = field(default_factory=Counter)  # due again on a later run
    entered: int = 0  # new entries
    transitions: int = 0  # steps recorded (entered, waited, branched, sent, exited, ...)
    reconciled: int = 0  # unknown outcomes the provider's lookup showed were sent
    gave_up: int = 0  # unknown outcomes not sent again, failed as outcome_unknown (channel-less)
    dead_letters: int = 0  # steps none of whose attempts went out, failed as attempts_exhausted
    # keys of person ids merged away whose step went on under the new key: not decisions
    superseded: int = 0

    def note(self, decision: Decision) -> None:
        self.entered += decision.tick.entered
        self.transitions += decision.tick.transitions
        self.due += len(decision.due)

    def count(self, channel: str, outcome: Outcome) -> None:
        if outcome.status == "deferred":  # refused before any work: a later run tries again
            self.deferred[DeferReason.RETRYING] += 1
            return
        {"sent": self.sent, "failed": self.failed, "unknown": self.unknown}[outcome.status][
            channel
        ] += 1
        self.reconciled += outcome.reconciled

    def as_metadata(self) -> dict[str, str | int]:
        return {
            "entered": self.entered,
            "transitions": self.transitions,
            "due": self.due,
            "sent": sum(self.sent.values()),
            **{f"sent_{k}": v for k, v in sorted(self.sent.items())},
            "reconciled": self.reconciled,
            "failed": sum(self.failed.values()) + self.gave_up + self.dead_letters,
            "failed_outcome_unknown": self.gave_up,
            "failed_attempts_exhausted": self.dead_letters,
            "unknown_outcome": sum(self.unknown.values()),
            "skipped": sum(self.skipped.values()),
            **{f"skipped_{k}": v for k, v in sorted(self.skipped.items())},
            "deferred": sum(self.deferred.values()),
            **{f"deferred_{k}": v for k, v in sorted(self.deferred.items())},
            "superseded": self.superseded,
        }


def run_journey(
    journey: Journey,
    *,
    duckdb_path: Path,
    landing_dir: Path,
    clients: dict[str, ChannelClient],
    now: datetime | None = None,
    retry: RetryPolicy | None = None,
    rate_limits: dict[str, float] | None = None,
    concurrency: dict[str, int] | None = None,
    timeouts: HttpTimeouts | None = None,
    transport: httpx.BaseTransport | None = None,
    uncounted_journeys: Collection[str] = (),
    links: LinkSigner | None = None,
    partition: PersonPartition | None = None,
    partition_count: int | None = None,
    source: warehouse.Source | None = None,
) -> RunSummary:
    """Tick, deliver what is due, and tick again so entries go on past the sends just decided
    (a send followed by a branch or another send at once), until nothing more is due. Holds the
    journey's lock throughout (activations/run_locks.py): a second run of it waits, then starts
    from what this one did. A marketing journey also holds the lock all counted sends share:
    caps count across journeys, so a run of another one (an overlapping tier, the CLI beside
    Dagster) reads the ledger after this one's sends, never between its read and its sends.
    Transactional journeys neither count nor wait. `uncounted_journeys`: the transactional
    ones, whose sends no cap counts.
    `links`: signs each message's unsubscribe and preference-center links
    (ChannelSettings.links).
    `partition`: only the people of this partition (activations/partitions.py), under its own
    locks, so runs of other partitions go on at once beside it (it reads one snapshot of the
    warehouse throughout); its share of each rate limit and of each concurrency set.
    `partition_count`: the configured count (default: SWITCHYARD_PERSON_PARTITIONS); a run over
    everyone holds every partition's locks. `source`: the warehouse to read, when it is not the
    DuckDB file at `duckdb_path` (activations/arrow_warehouse.py: Spark)."""
    count = partition_count or partitions.configured_count()
    with run_locks(
        landing_dir, journey, partition, count, source if source is not None else duckdb_path
    ) as read_from:
        # A fixed `now` (tests, backfills) also stamps the ledger, so caps see the simulated time.
        clock: Callable[[], datetime] = (lambda: now) if now is not None else utc_now
        as_of = clock()
        run_id = f"{as_of:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
        summary = RunSummary(journey.name, run_id)

        # Every partition's worker sends at once: each keeps to its share of a provider's rate
        # limit, and of the requests in flight to it where that is set (a provider's limit; the
        # default is the sender's own, each partition's).
        share = partition.count if partition is not None else 1
        limits = {ch: RateLimiter(rate / share) for ch, rate in (rate_limits or {}).items()}
        workers = {
            ch: partition.share_of(n) if partition is not None else n
            for ch, n in (concurrency or {}).items()
        }
        t = timeouts or HttpTimeouts()
        # a kept-alive connection for every request a channel may have in flight (one at least:
        # connected content is fetched with it even when no client needs it)
        in_flight = max(1, sum(workers.get(ch, DEFAULT_CONCURRENCY) for ch in clients))
        http = sender_client(
            in_flight, httpx.Timeout(t.read_seconds, connect=t.connect_seconds), transport
        )
        writer = ledger.LedgerWriter(landing_dir, run_id)
        # The in-app inbox is Switchyard's own, in the landing folder: no provider to configure.
        clients = {"in_app": InboxClient(landing_dir, clock), **clients}
        sender = Sender(http, clients, writer, clock, retry, limits, workers)
        fetcher = ContentFetcher(http)  # connected content: one fetch per URL per run

        def reread(people: list[guards.Person]) -> tuple[guards.FreshConsents, guards.Suppressions]:
            guards_read = [warehouse.CONSENTS_MODEL, warehouse.SUPPRESSIONS_MODEL]
            with warehouse.attached(read_from, guards_read) as con:
                return warehouse.read_guards(con, people)

        try:
            handled: set[str] = set()  # a key is acted on once per run (an unknown waits a run)
            for _ in range(len(journey.steps) + 1):
                decision = decide(
                    journey, read_from, landing_dir, as_of, run_id, sender.can_look_up,
                    uncounted_journeys=uncounted_journeys, read_at=clock(), partition=partition,
                )  # fmt: skip
                decision.due = [d for d in decision.due if d.ref.send_key not in handled]
                decision.skips = [s for s in decision.skips if s.ref.send_key not in handled]
                summary.note(decision)
                if not decision.due and not decision.skips:
                    break
                handled.update(d.ref.send_key for d in decision.due)
                handled.update(s.ref.send_key for s in decision.skips)
                deliver(
                    journey, decision.due, decision.skips, decision.audience, decision.state,
                    sender, summary, fetcher=fetcher, links=links, reread=reread,
                    audience_read_at=decision.audience_read_at,
                )  # fmt: skip
        finally:
            sender.close()
            writer.close()
            http.close()
        return summary


@dataclass
class Decision:
    """What one tick decided, with what delivery needs to act on it."""

    tick: TickResult
    state: LedgerState
    due: list[engine.Due]
    skips: list[engine.Skip]
    audience: warehouse.Audience
    audience_read_at: float = field(default_factory=time.monotonic)  # its consents, suppressions


def decide(
    journey: Journey,
    source: warehouse.Source,
    landing_dir: Path,
    as_of: datetime,
    run_id: str,
    can_look_up: Callable[[str], bool] = lambda channel: False,
    record: bool = True,
    uncounted_journeys: Collection[str] = (),
    read_at: datetime | None = None,
    partition: PersonPartition | None = None,
) -> Decision:
    """A tick on what the warehouse and the ledger say now (its transitions recorded unless
    `record` is false: a preview), and the due sends as steps for delivery. `read_at`: the
    run's clock now (default `as_of`), up to which sends are read for the cap. `partition`: only
    its people's entries. `source`: the DuckDB file, or another warehouse read as Arrow."""
    models = [journey.audience_model, *warehouse.MODELS_READ]
    keyed = [journey.audience_model, *warehouse.BY_PERSON]
    with warehouse.attached(source, models, partition, keyed) as con:
        aliases, aliased_at = warehouse.read_person_aliases(con)
        inputs.open_inputs(con, journey, landing_dir=landing_dir, partition=partition)
        read_decided = inputs.decided_reader(landing_dir, journey, aliases)
        result = run_tick(
            con, journey, as_of, run_id, landing_dir if record else None, read_decided
        )
        # What the ledger says of the keys due now and of their people's recent sends (the cap's
        # window), not of its whole history.
        people = {d.person_id for d in result.due}
        cap = journey.frequency_cap
        state = ledger.read_state(
            landing_dir,
            keys=[d.send_key for d in result.due],
            people=people | set(aliases),
            sends_since=as_of - cap.lookback if cap else as_of,
            moved_people=aliases.keys(),
            uncounted_journeys=uncounted_journeys,
            journey=journey.name,
            # what the cap needs: each person's latest `messages` sends up to the run's clock,
            # and every send stamped later (an overlapping run's, this run's earlier rounds)
            sends_until=read_at or as_of,
            latest_sends=cap.messages if cap else None,
            keys_entered_since=_earliest(d.entered_at for d in result.due),
        )
        state.follow_aliases(aliases, aliased_at)
        # a successor key the state did not read (decided, not due), whatever its entry's state
        if state.successors:
            state.supersede(ledger.decided_on_their_own(landing_dir, state.successors.values()))

        def owns(ref: SendRef) -> bool:  # the person the key's entry follows is the partition's
            return partition is None or partition.holds(
                (aliases.get(ref.person_id) or [ref.person_id])[0]
            )

        due, skips = engine.classify(journey, result.due, state, as_of, can_look_up, owns)
        audience = warehouse.read_people(con, {d.ref.person_id for d in due})
    return Decision(result, state, due, skips, audience)


def _earliest(times: Iterable[datetime | None]) -> datetime | None:
    """The earliest of `times`; None if there are none, or one is unknown (then none bounds)."""
    listed = list(times)
    if not listed or any(t is None for t in listed):
        return None
    return min(t for t in listed if t is not None)


BATCH_SIZE = 256  # messages a channel queue takes at once (a request of a provider taking many)


def deliver(
    journey: Journey,
    due: list[engine.Due],
    skips: list[engine.Skip],
    audience: warehouse.Audience,
    state: LedgerState,
    sender: Sender,
    summary: RunSummary,
    batch_size: int = BATCH_SIZE,
    fetcher: ContentFetcher | None = None,
    links: LinkSigner | None = None,
    reread: ReadGuards | None = None,
    reread_seconds: float = GUARDS_REFRESH_SECONDS,
    audience_read_at: float | None = None,
) -> None:
    """Settle what was left unknown, record the engine's skips, then send each due step that
    passes the send-time guards, through one queue per channel, `batch_size` messages a batch
    (ChannelQueues: a slow provider holds up only its own channel). `state` is kept current, so
    the cap sees this run's sends, those still in flight included. `fetcher` fetches connected
    content (one per run: its cache). `links`: where set, each message's signed links are the
    template values `unsubscribe_url` and `preferences_url`, and marketing email names the
    first in its List-Unsubscribe headers. `reread`: reads the people's consents and
    suppressions again, once those read (at `audience_read_at`, time.monotonic()) are
    `reread_seconds` old (FreshGuards)."""
    fetcher = fetcher or ContentFetcher(sender.http)
    clock = sender.clock
    for recipient, ids in state.provider_ids.items():  # a lookup never claims these again
        sender.claimed.setdefault(recipient, set()).update(ids)

    handoff_steps = {s.name for s in journey.steps if s.handoff is not None}

    def handed_off(ref: SendRef) -> bool:
        return ref.step in handoff_steps

    def settled(ref: SendRef, attempt_number: int) -> bool:
        """True when an earlier attempt's outcome is now known (and recorded)."""
        pending = state.pending.get(ref.send_key)
        if pending is None or handed_off(ref):  # a platform offers no lookup by our key
            return False
        outcome = sender.reconcile(
            ref, pending.message(ref.send_key), pending.first_attempted_at, attempt_number
        )
        if outcome is None:
            if sender.can_look_up(pending.channel):  # the provider says it never got it
                state.settle(ref.send_key)  # not sent: it no longer counts toward the cap
            return False
        summary.count(pending.channel, outcome)
        if outcome.status == "sent":
            state.settle(ref.send_key)
            state.note_send(ref.person_id, clock())  # as the ledger line is stamped
        return True

    def hold(ref: SendRef, reason: SkipReason | str, detail: str | None = None) -> None:
        """Not sent now. A key whose earlier attempt may have gone out (no lookup could say it did
        not) is not 'skipped', which would hide it: it is failed as outcome_unknown, with the
        attempted message, and keeps counting toward the cap. One whose attempts the lookup
        showed never arrived, attempted as often as allowed, is failed as attempts_exhausted."""
        pending = state.pending.get(ref.send_key)
        if reason == ATTEMPTS_EXHAUSTED and pending is None:
            tries = state.attempts.get(ref.send_key, 0)
            none = f"the provider has none of its {tries} attempts"
            if state.refused(ref.send_key):  # each refused before any work: say how
                detail = (state.deferred.get(ref.send_key) or (None, None))[1] or ""
                last = detail.split("; ", 1)[-1]  # 'until <when>; <the refusal>'
                none = f"none of its {tries} attempts was taken; the last: {last}"
            # the last attempt's message: the dead letter is counted on its channel
            attempt = state.last_attempts.get(ref.send_key)
            message = sender.ledger_columns(attempt.message(ref.send_key)) if attempt else {}
            sender.ledger.write(
                ref, "failed", clock(), reason=ATTEMPTS_EXHAUSTED, reason_detail=none,
                attempt=tries, **message,
            )  # fmt: skip
            summary.dead_letters += 1
            return
        if pending is not None or not isinstance(reason, SkipReason):
            why = f"not sent once more: {reason}" if isinstance(reason, SkipReason) else detail
            attempted = sender.ledger_columns(pending.message(ref.send_key)) if pending else {}
            sender.ledger.write(
                ref, "failed", clock(), reason=OUTCOME_UNKNOWN, reason_detail=why, **attempted
            )
            summary.gave_up += 1
            return
        sender.ledger.write(ref, "skipped", clock(), reason=reason, reason_detail=detail)
        summary.skipped[reason] += 1

    def defer(ref: SendRef, reason: DeferReason, until: datetime) -> None:
        """Not decided: the step stays due, and a later run sends it from `until` (unless it
        expires first). The line says why and until when."""
        detail = f"until {until.isoformat(timespec='seconds')}"
        summary.deferred[reason] += 1
        if state.deferred.get(ref.send_key) == (reason, detail):
            return  # as the ledger says already: a run every minute adds no line
        sender.ledger.write(ref, "deferred", clock(), reason=reason, reason_detail=detail)
        state.deferred[ref.send_key] = (reason, detail)

    def retry_later(ref: SendRef) -> bool:
        """Its last attempt was refused, and the wait the provider asked for has not passed
        (an earlier attempt in doubt waits too: its lookup or once more is no more urgent)."""
        reason, detail = state.deferred.get(ref.send_key) or (None, None)
        if reason != DeferReason.RETRYING:
            return False
        until = deferred_until(detail)
        if until is None or clock() >= until:
            return False
        summary.deferred[DeferReason.RETRYING] += 1
        return True

    for s in skips:
        if s.reason == SUPERSEDED:  # its attempts are the successor key's to settle
            state.settle(s.ref.send_key)
            sender.ledger.write(s.ref, "skipped", clock(), reason=s.reason, reason_detail=s.detail)
            summary.superseded += 1
            continue
        # An earlier attempt that turns out to have gone out is recorded as sent, not skipped.
        if settled(s.ref, state.attempts.get(s.ref.send_key, 1)):
            continue
        if isinstance(s.reason, SkipReason) or s.reason == ATTEMPTS_EXHAUSTED:
            hold(s.ref, s.reason)
        else:
            hold(s.ref, s.reason, s.detail or "still unknown after being sent once more")
    consent_rule = guards.ConsentRule(journey.transactional, journey.topic, journey.topic_opt_in)

    dead_tokens: list[dict[str, Any]] = []

    def outcome(queued: Queued, outcome: Outcome) -> None:
        outgoing = queued.outgoing
        summary.count(outgoing.message.channel, outcome)
        if outcome.status in ("failed", "deferred"):  # an unknown one may have gone out
            state.forget_send(outgoing.ref.person_id, queued.counted)
        if outcome.status == "deferred":  # refused: an earlier attempt in doubt still counts
            state.deferred[outgoing.ref.send_key] = (outcome.reason, outcome.detail)
            if queued.earlier is not None:
                state.pending[outgoing.ref.send_key] = queued.earlier
        if outcome.reason == DEAD_PUSH_TOKEN:
            # FCM says the app is gone: suppressed at once, so that the next push to it, of any
            # journey, is skipped (and the step's next channel tried) before dbt rebuilds
            # dim_people without the token
            dead_tokens.append(
                events.suppression(f"fcm:{outgoing.ref.send_key}", "push",
                                   outgoing.message.recipient, "suppressed", "all",
                                   DEAD_PUSH_TOKEN, "fcm", clock())
            )  # fmt: skip

    def withdrawn(queued: Queued) -> None:
        """Its channel went down before it was attempted: deferred as any step of a channel
        that is down (an earlier attempt in doubt stays as the ledger has it: no line now, and
        it counts toward the cap again)."""
        ref = queued.outgoing.ref
        state.forget_send(ref.person_id, queued.counted)
        if queued.earlier is not None:
            state.pending[ref.send_key] = queued.earlier
            summary.deferred[DeferReason.PROVIDER_DOWN] += 1
        else:
            defer(ref, DeferReason.PROVIDER_DOWN, clock() + PROVIDER_DOWN_RETRY)

    queues = ChannelQueues(sender, outcome, withdrawn, batch_size)
    fresh = FreshGuards(audience, due, reread, reread_seconds, read_at=audience_read_at)
    forgotten = Forgotten(sender.ledger.landing_dir)  # deletion requests (switchyard forget)
    try:
        for index, d in enumerate(due):
            if retry_later(d.ref):
                continue
            if settled(d.ref, d.attempt_number - 1):
                continue
            audience = fresh.at(index)
            person = audience.people.get(d.ref.person_id)
            if person is None:
                hold(d.ref, SkipReason.NO_PROFILE)
                continue
            if forgotten.names(guards.identifier_keys(person)):
                # asked to be forgotten: never sent to again, whatever the warehouse still says
                hold(d.ref, SkipReason.SUPPRESSED, "forgotten: a deletion request names them")
                continue
            choice = guards.choose_channel(
                d.step, person, audience.consents, consent_rule, audience.suppressions
            )
            if isinstance(choice, guards.NoChannel):
                hold(d.ref, choice.reason, choice.detail)
                continue
            handoff = d.step.handoff
            if handoff is not None and not person.user_id:
                hold(d.ref, SkipReason.NO_ADDRESS,
                     f"no user_id: {handoff.destination} addresses its users by it")  # fmt: skip
                continue
            if sender.channel_down(handoff.route if handoff else choice.channel):
                # Its provider keeps failing: not sent into the outage, and the other channels go
                # on; a later run sends it (an attempt in doubt stays so, with no line now).
                if d.ref.send_key not in state.pending:
                    defer(d.ref, DeferReason.PROVIDER_DOWN, clock() + PROVIDER_DOWN_RETRY)
                continue
            quiet = None if journey.transactional else journey.quiet_hours
            if quiet and (ends := guards.quiet_until(quiet, choice.channel, person, clock())):
                # The person's night: not now, and not counted toward the cap. An earlier attempt
                # still unsettled stays so (no line now); the next run looks again.
                if d.ref.send_key not in state.pending:
                    defer(d.ref, DeferReason.QUIET_HOURS, ends)
                continue
            cap = None if journey.transactional else journey.frequency_cap
            # The cap counts this person's message in a queue before its outcome is known: send
            # it first, so that one that fails gives its place back. Not for long: behind a slow
            # provider the step is deferred instead (a later run judges it), and the other
            # channels go on.
            held_up = cap and queues.holds(person.person_id)
            if held_up and not queues.settle(person.person_id, SETTLE_SECONDS):
                if d.ref.send_key not in state.pending:
                    defer(d.ref, DeferReason.CAPPED, clock() + IN_FLIGHT_RETRY)
                continue
            zone = person.timezone
            if cap and guards.over_cap(cap, person.person_id, state, clock(), d.ref.send_key, zone):
                if cap.on_cap == "defer" and d.ref.send_key not in state.pending:
                    allows = guards.cap_allows_at(
                        cap, person.person_id, state, clock(), d.ref.send_key, zone
                    )
                    defer(d.ref, DeferReason.CAPPED, allows)
                    continue
                exits = (
                    "on_cap exit: the entry leaves the journey" if cap.on_cap == "exit" else None
                )
                hold(d.ref, SkipReason.CAPPED, exits)
                continue
            values = {
                **d.entry.properties,
                "first_name": person.first_name,
                "person_id": person.person_id,
                "user_id": person.user_id,
            }
            for name in LINK_VALUES:  # only ever the signed link, never an entry's property
                values.pop(name, None)
            unsubscribe_url = None
            # consent is kept by user id; without one, only an address a provider knows (an
            # unsubscribe then suppresses it) can be named
            if links is not None and (person.user_id or choice.channel in LINKED_BY_ADDRESS):
                subject = LinkSubject(
                    choice.channel,
                    person.user_id,
                    None if person.user_id else choice.recipient,
                    journey.topic or events.MARKETING,
                    d.ref.send_key,
                )
                unsubscribe_url, values["preferences_url"] = links.urls(subject)
                values["unsubscribe_url"] = unsubscribe_url
            if d.step.connected_content:
                try:
                    values.update(fetcher.values(d.step.connected_content, values))
                except ContentUnavailable as failed:
                    hold(d.ref, SkipReason.CONNECTED_CONTENT_FAILED, str(failed))
                    continue
            try:
                if handoff is not None and not handoff.renders_here:
                    content = render_properties(
                        handoff.properties, values, d.step.fallbacks, person.timezone
                    )
                else:
                    content = render(
                        d.step.templates[choice.channel], values, d.step.fallbacks, person.timezone
                    )
            except MissingTemplateVariable as missing:
                detail = missing.name
                if missing.name in LINK_VALUES:
                    detail += (
                        " (no signed links: set SWITCHYARD_LINK_SECRET and "
                        "SWITCHYARD_COLLECTOR_PUBLIC_URL)"
                        if links is None
                        else f" (no link for a person without a user id on {choice.channel})"
                    )
                hold(d.ref, SkipReason.MISSING_VARIABLE, detail)
                continue
            except TemplateProblem as problem:
                hold(d.ref, SkipReason.UNRENDERABLE_TEMPLATE, str(problem))
                continue
            tags = {"journey": journey.name, "step": d.step.name}
            if handoff is not None and handoff.campaign_id:
                tags["campaign_id"] = handoff.campaign_id
            message = Message(
                send_key=d.ref.send_key,
                channel=choice.channel,
                # a platform addresses its user (by the user_id its syncs key them by)
                recipient=person.user_id if handoff and person.user_id else choice.recipient,
                body=content.body,
                subject=content.subject,
                title=content.title,
                tags=tags,
                unsubscribe_url=None if journey.transactional or handoff else unsubscribe_url,
                route=handoff.route if handoff else None,
            )
            # Counted toward the cap from now (the batch's later messages see it), until it fails.
            counted = clock()
            earlier = state.pending.get(d.ref.send_key)
            state.settle(d.ref.send_key)  # this attempt replaces any earlier one
            state.note_send(person.person_id, counted)
            queues.add(Queued(Outgoing(d.ref, message, d.attempt_number), counted, earlier))
        queues.finish()
    except BaseException:
        queues.abandon()
        raise
    finally:
        if dead_tokens:
            landing.write_batch(sender.ledger.landing_dir, "preferences", "suppressions",
                                dead_tokens, prefix=f"sender-{sender.ledger.run_id}")  # fmt: skip
