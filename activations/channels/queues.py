"""One queue of messages per channel (a hand-off: per route), so that a slow or stalled
provider holds up only its own.

Delivery adds messages as the guards pass them. A channel's messages go out as a batch when it
has `batch_size` of them (Sender.submit: the batch's `attempted` lines fsynced together, then its
requests on the channel's own workers), with at most `max_in_flight` batches of a channel out at
once; outcomes are collected as batches finish, whichever channel they are on. Messages still
waiting when their channel is taken out of the run (the breaker) never get a ledger line: they
are handed back (`on_withdrawn`), to be deferred.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from activations.channels.core import InFlight, Outgoing, Sender
from activations.channels.message import Outcome
from activations.ledger.reader import PendingAttempt


@dataclass(frozen=True)
class Queued:
    outgoing: Outgoing
    counted: datetime  # when the cap began counting it (given back if it fails)
    earlier: PendingAttempt | None = None  # the attempt in doubt it replaces, if any


class ChannelQueues:
    def __init__(
        self,
        sender: Sender,
        on_outcome: Callable[[Queued, Outcome], None],
        on_withdrawn: Callable[[Queued], None],
        batch_size: int = 256,
        max_in_flight: int = 2,
    ) -> None:
        self.sender = sender
        self.on_outcome = on_outcome
        self.on_withdrawn = on_withdrawn
        self.batch_size = batch_size
        self.max_in_flight = max_in_flight
        self._waiting: dict[str, deque[Queued]] = {}  # no ledger line yet
        self._flying: dict[str, deque[tuple[list[Queued], InFlight]]] = {}
        self._people: Counter[str] = Counter()  # messages waiting or in flight, per person
        self._progress = threading.Event()  # set whenever a flight finishes

    def add(self, queued: Queued) -> None:
        channel = queued.outgoing.message.client  # a hand-off queues apart from its channel
        self._waiting.setdefault(channel, deque()).append(queued)
        self._people[queued.outgoing.ref.person_id] += 1
        self.poll()
        self._launch(channel, full_only=True)

    def holds(self, person_id: str) -> bool:
        """Whether a message to the person is waiting or in flight (its outcome not known)."""
        return self._people[person_id] > 0

    def settle(self, person_id: str, timeout: float) -> bool:
        """Send the person's waiting messages and wait, at most `timeout` seconds, for the
        outcomes of all of them, so that the cap sees them: one that fails gives its place
        back. False when some are still out then (a slow channel): the caller does not wait
        for it, so neither do the other channels."""
        deadline = time.monotonic() + timeout
        for channel in list(self._waiting.keys() | self._flying.keys()):
            while self._has(channel, person_id):
                self._launch(channel, full_only=False)
                flying = self._flying[channel]
                if not flying:  # what waited was withdrawn
                    continue
                head = flying[0][1]
                if not head.done():
                    finished = threading.Event()
                    head.when_done(finished.set)
                    if not finished.wait(max(0.0, deadline - time.monotonic())):
                        return False
                self._collect(channel)
        return True

    def poll(self) -> None:
        """Record the outcomes of every batch that has finished, and send what waits behind it."""
        for channel, flying in self._flying.items():
            while flying and flying[0][1].done():
                self._collect(channel)
            self._launch(channel, full_only=True)

    def finish(self) -> None:
        """Send everything still waiting and record every outcome, channels in the order their
        batches finish."""
        while True:
            self._progress.clear()
            for channel in self._waiting:
                self._launch(channel, full_only=False)
            self.poll()
            heads = [flying[0][1] for flying in self._flying.values() if flying]
            if not heads and not any(self._waiting.values()):
                return
            # a channel's batches are recorded in order: wait until one of the oldest is done
            if not any(flight.done() for flight in heads):
                self._progress.wait(timeout=1.0)

    def abandon(self) -> None:
        """Stopped mid-run: what left is recorded, nothing more goes (Sender.abandon)."""
        for flying in self._flying.values():
            while flying:
                self.sender.abandon(flying.popleft()[1])
        self._waiting.clear()
        self._people.clear()

    def _has(self, channel: str, person_id: str) -> bool:
        waiting = self._waiting.get(channel, ())
        flying = self._flying.get(channel, ())
        return any(q.outgoing.ref.person_id == person_id for q in waiting) or any(
            q.outgoing.ref.person_id == person_id for batch, _ in flying for q in batch
        )

    def _launch(self, channel: str, full_only: bool) -> None:
        waiting = self._waiting.get(channel)
        flying = self._flying.setdefault(channel, deque())
        while waiting and len(flying) < self.max_in_flight:
            if full_only and len(waiting) < self.batch_size:
                return
            batch = [waiting.popleft() for _ in range(min(self.batch_size, len(waiting)))]
            if self.sender.channel_down(channel):
                for queued in batch:  # not sent into the outage: deferred, never attempted
                    self._people[queued.outgoing.ref.person_id] -= 1
                    self.on_withdrawn(queued)
                continue
            flight = self.sender.submit([q.outgoing for q in batch])
            flight.when_done(self._progress.set)
            flying.append((batch, flight))

    def _collect(self, channel: str) -> None:
        batch, flight = self._flying[channel].popleft()
        for queued, outcome in zip(batch, self.sender.collect(flight), strict=True):
            self._people[queued.outgoing.ref.person_id] -= 1
            self.on_outcome(queued, outcome)
