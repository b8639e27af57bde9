"""`switchyard consume kafka`: Segment-shaped JSON events from a Kafka topic into the landing
files, at least once: a batch is landed (one file, fsynced, renamed into place) before its
offsets are committed, so a crash in between delivers the batch again, and staging's messageId
de-duplication keeps each event once. Messages that are not Segment calls land in
segment/rejects with the reason and the topic, partition and offset they came from.
"""

from __future__ import annotations

import functools
import logging
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from intake import segment
from switchyard import landing
from switchyard.privacy.landed import event_keys
from switchyard.privacy.tombstones import Forgotten

log = logging.getLogger(__name__)


@dataclass
class ConsumeSummary:
    landed: int = 0
    rejected: int = 0
    batches: int = 0
    commits: int = 0
    dropped_forgotten: int = 0  # events of people forgotten with drop_at_intake


def consume(
    config: Mapping[str, Any],
    topic: str,
    landing_dir: Path,
    source: str | None = None,
    max_batch: int = 5_000,
    flush_seconds: float = 1.0,
    idle_exit_seconds: float | None = None,
    write_batch: Callable[..., Path] = landing.write_batch,
) -> ConsumeSummary:
    """Consume `topic` until stopped (SIGINT, SIGTERM) or, with `idle_exit_seconds`, until no
    message came for that long. `config`: librdkafka settings (bootstrap.servers, group.id,
    security); auto-commit is always off."""
    from confluent_kafka import Consumer, KafkaError, KafkaException

    settings = {"auto.offset.reset": "earliest", **config, "enable.auto.commit": False}
    if "group.id" not in settings:
        raise ValueError("a Kafka consumer needs a group.id (--group)")
    consumer = Consumer(settings)
    assigned: dict[str, float] = {}  # idle time counts from the group's first assignment

    def on_assign(c: Any, partitions: Any) -> None:
        assigned.setdefault("at", time.monotonic())

    consumer.subscribe([topic], on_assign=on_assign)
    summary = ConsumeSummary()
    stopping = {"now": False}

    def stop(*_: Any) -> None:
        stopping["now"] = True

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    name = source or f"kafka:{topic}"
    rows: list[dict[str, Any]] = []
    rejects: list[dict[str, Any]] = []
    pending = False  # consumed messages whose offsets are not committed yet
    started = last_message = time.monotonic()
    try:
        while not stopping["now"]:
            messages = consumer.consume(num_messages=max_batch - len(rows), timeout=0.2)
            now = time.monotonic()
            for message in messages:
                if (error := message.error()) is not None:
                    if error.fatal():
                        raise KafkaException(error)
                    if error.code() != KafkaError._PARTITION_EOF:  # the client retries it
                        log.warning("kafka: %s", error)
                    continue
                last_message = now
                pending = True
                _take(message, name, rows, rejects)
            if pending and (len(rows) >= max_batch or now - started >= flush_seconds):
                _land(landing_dir, rows, rejects, write_batch, summary)
                consumer.commit(asynchronous=False)  # only once the batch is on disk
                summary.commits += 1
                rows, rejects, pending, started = [], [], False, now
            elif not pending:
                started = now
            idle_since = max(last_message, assigned.get("at", now))
            if idle_exit_seconds is not None and now - idle_since >= idle_exit_seconds:
                break
        if pending:
            _land(landing_dir, rows, rejects, write_batch, summary)
            consumer.commit(asynchronous=False)
            summary.commits += 1
    finally:
        consumer.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return summary


def _take(message: Any, source: str, rows: list[dict[str, Any]], rejects: list[Any]) -> None:
    received_at = datetime.now(UTC)
    raw = message.value() or b""
    event: Any = None
    where = f"{message.topic()}/{message.partition()}@{message.offset()}"
    try:
        event = segment.loads(raw)
        # no messageId: one from its place in the topic, the same if the batch comes again
        rows.append(segment.check(event, received_at, source, default_id=f"kafka:{where}").row)
        return
    except segment.Rejected as refused:
        reason = str(refused)
    except (ValueError, RecursionError) as unreadable:
        reason = f"not JSON: {unreadable}"
    message_id = event.get("messageId") if isinstance(event, dict) else None
    payload = raw[: 2 * segment.MAX_MESSAGE_BYTES].decode("utf-8", "replace")
    rejects.append(
        segment.reject_row(received_at, source, f"{reason} (kafka {where})", message_id, payload)
    )


@functools.lru_cache(maxsize=8)
def _forgotten(landing_dir: Path) -> Forgotten:
    return Forgotten(landing_dir, intake_only=True)


def _land(
    landing_dir: Path,
    rows: list[dict[str, Any]],
    rejects: list[dict[str, Any]],
    write_batch: Callable[..., Path],
    summary: ConsumeSummary,
) -> None:
    forgotten = _forgotten(landing_dir)  # deletion requests that drop new events
    if forgotten.any():  # no event's keys are built when nobody's new events are dropped
        kept = [row for row in rows if not forgotten.names(event_keys(row))]
        summary.dropped_forgotten += len(rows) - len(kept)
        rows = kept
    if rows:
        write_batch(landing_dir, "segment", "events", rows, prefix="kafka")
    if rejects:
        write_batch(landing_dir, "segment", "rejects", rejects, prefix="kafka")
    summary.landed += len(rows)
    summary.rejected += len(rejects)
    summary.batches += 1
