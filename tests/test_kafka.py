"""`switchyard consume kafka` against a real Kafka-protocol broker on loopback: librdkafka's mock
cluster, started by a producer (test.mock.num.brokers), a separate consumer connecting to it."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from intake.kafka import consume
from switchyard import landing

TOPIC = "segment-events"
# The mock cluster waits out a departed member's session before a rejoin is balanced: keep the
# session short so the tests' second consumer of a group starts in seconds, not 45.
QUICK_REJOIN = {"session.timeout.ms": "6000", "heartbeat.interval.ms": "500"}


@pytest.fixture
def broker() -> Iterator[tuple[Producer, str]]:
    producer = Producer({"test.mock.num.brokers": 1})
    brokers = producer.list_topics(timeout=10).brokers
    address = ",".join(f"{b.host}:{b.port}" for b in brokers.values())
    yield producer, address
    producer.flush(10)


def produce(producer: Producer, values: list[bytes]) -> None:
    for value in values:
        producer.produce(TOPIC, value, partition=0)  # one partition: offsets in order
    assert producer.flush(10) == 0


def track(n: int) -> bytes:
    event = {"type": "track", "messageId": f"k{n}", "userId": f"u{n}", "event": "cart_updated"}
    return json.dumps(event).encode()


def landed(home: Path, table: str) -> list[dict[str, Any]]:
    rows = []
    for path in landing.table_dir(home, "segment", table).glob("kafka-*.jsonl"):
        rows.extend(json.loads(line) for line in path.read_text().splitlines() if line)
    return rows


def committed(address: str, group: str) -> int:
    """The group's committed offsets, summed over the topic's partitions (messages taken)."""
    probe = Consumer({"bootstrap.servers": address, "group.id": group})
    try:
        partitions = probe.list_topics(TOPIC, timeout=10).topics[TOPIC].partitions
        offsets = probe.committed([TopicPartition(TOPIC, p) for p in partitions], timeout=10)
        return sum(max(0, tp.offset) for tp in offsets)
    finally:
        probe.close()


def test_events_land_rejects_keep_their_reason_and_offsets_follow(
    tmp_path: Path, broker: tuple[Producer, str]
) -> None:
    producer, address = broker
    landing.ensure_layout(tmp_path)
    produce(producer, [track(n) for n in range(40)] + [b"{not json", b'{"type": "track"}'])
    group = f"g-{uuid.uuid4().hex}"
    config = {"bootstrap.servers": address, "group.id": group, **QUICK_REJOIN}
    summary = consume(config, TOPIC, tmp_path, max_batch=15, idle_exit_seconds=2)
    assert (summary.landed, summary.rejected) == (40, 2)
    assert sorted(r["messageId"] for r in landed(tmp_path, "events")) == sorted(
        f"k{n}" for n in range(40)
    )
    assert all(r["source"] == f"kafka:{TOPIC}" for r in landed(tmp_path, "events"))
    reasons = sorted(r["reason"] for r in landed(tmp_path, "rejects"))
    assert reasons[0].startswith("a message needs a userId") and "@41" in reasons[0]
    assert reasons[1].startswith("not JSON") and "@40" in reasons[1]
    assert committed(address, group) == 42
    # a second run of the group starts after what was committed: nothing twice
    produce(producer, [track(40)])
    again = consume(config, TOPIC, tmp_path, idle_exit_seconds=2)
    assert (again.landed, again.rejected) == (1, 0)


def test_a_batch_that_could_not_land_is_not_committed_and_comes_again(
    tmp_path: Path, broker: tuple[Producer, str]
) -> None:
    producer, address = broker
    landing.ensure_layout(tmp_path)
    produce(producer, [track(n) for n in range(30)])
    config = {"bootstrap.servers": address, "group.id": f"g-{uuid.uuid4().hex}", **QUICK_REJOIN}
    writes = {"n": 0}

    def failing_second(*args: Any, **kw: Any) -> Path:
        writes["n"] += 1
        if writes["n"] == 2:
            raise OSError("No space left on device")
        return landing.write_batch(*args, **kw)

    with pytest.raises(OSError, match="No space left"):
        consume(config, TOPIC, tmp_path, max_batch=10, idle_exit_seconds=2,
                write_batch=failing_second)  # fmt: skip
    assert committed(address, config["group.id"]) == 10  # the first batch only
    consume(config, TOPIC, tmp_path, max_batch=10, idle_exit_seconds=2)
    ids = [r["messageId"] for r in landed(tmp_path, "events")]
    assert sorted(ids) == sorted(f"k{n}" for n in range(30))  # all of it, none twice
