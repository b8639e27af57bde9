"""The collector (`switchyard collect`): Segment's HTTP Tracking API on a real uvicorn server, the
official Segment Python client pointed at it, and every acknowledged call in a closed landing
file; refused input answered with a 4xx that says why and kept in segment/rejects."""

from __future__ import annotations

import base64
import gzip
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from intake.collector import CollectorSettings, create_app
from intake.durable import GroupCommitLog, recover
from switchyard import landing
from switchyard.settings import PROJECT_DIR, Paths
from tests.dbt_helpers import dbt_build, query
from tests.servers import serving

KEY = "wk_test_web"
KEYS = {KEY: "web", "wk_test_ios": "ios"}
ROTATE = 0.2


def auth(key: str = KEY) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def landed(home: Path, table: str = "events") -> list[dict[str, Any]]:
    """Rows in closed landing files (what dbt's glob reads), oldest file first."""
    folder = landing.table_dir(home, "segment", table)
    rows = []
    for path in sorted(folder.glob("*.jsonl")):
        rows.extend(json.loads(line) for line in path.read_text().splitlines() if line)
    return rows


def closed_soon(home: Path, ids: set[str], table: str = "events") -> list[dict[str, Any]]:
    """The landed rows, once every id in `ids` is in a closed file (within a few rotations)."""
    deadline = time.monotonic() + 20 * ROTATE
    while True:
        rows = landed(home, table)
        if ids <= {r.get("messageId") or r.get("message_id") for r in rows}:
            return rows
        assert time.monotonic() < deadline, (
            f"not in a closed file: {ids - {r.get('messageId') for r in rows}}"
        )
        time.sleep(ROTATE / 4)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    landing.ensure_layout(tmp_path)
    return tmp_path


@pytest.fixture
def collector(home: Path) -> Iterator[str]:
    with serving(create_app(CollectorSettings(home, KEYS, ROTATE))) as url:
        yield url


def track(message_id: str, **kw: Any) -> dict[str, Any]:
    return {"type": "track", "messageId": message_id, "userId": "u1", "event": "cart_updated",
            "properties": {"sku": "tee"}, **kw}  # fmt: skip


def test_the_official_segment_client_sends_every_call_type(home: Path, collector: str) -> None:
    from segment.analytics.client import Client

    errors: list[Any] = []
    client = Client(KEY, host=collector, sync_mode=True, on_error=lambda e, b: errors.append(e))
    client.track("u-ada", "cart_updated", {"sku": "tee"}, message_id="m-track")
    client.identify("u-ada", {"email": "ada@example.com"}, message_id="m-identify")
    client.page("u-ada", name="Home", message_id="m-page")
    client.screen("u-ada", name="Cart", message_id="m-screen")
    client.group("u-ada", "acme", {"plan": "pro"}, message_id="m-group")
    client.alias("anon-7", "u-ada", message_id="m-alias")
    client.flush()
    assert errors == []
    rows = {r["messageId"]: r for r in closed_soon(home, {f"m-{k}" for k in (
        "track", "identify", "page", "screen", "group", "alias")})}  # fmt: skip
    assert rows["m-track"]["event"] == "cart_updated" and rows["m-track"]["source"] == "web"
    assert rows["m-identify"]["traits"] == {"email": "ada@example.com"}
    assert (rows["m-screen"]["type"], rows["m-screen"]["name"]) == ("screen", "Cart")
    assert rows["m-group"]["groupId"] == "acme"
    assert (rows["m-alias"]["previousId"], rows["m-alias"]["userId"]) == ("anon-7", "u-ada")
    # the client stamped sentAt: each timestamp corrected to the collector's clock
    assert all(r["sentAt"] and r["receivedAt"] for r in rows.values())


def test_write_keys_name_the_source_and_an_unknown_one_is_refused(
    home: Path, collector: str
) -> None:
    ok = httpx.post(f"{collector}/v1/track", json=track("a1"), headers=auth("wk_test_ios"))
    assert ok.status_code == 200 and ok.json() == {"success": True}
    in_body = httpx.post(f"{collector}/v1/track", json={**track("a2"), "writeKey": KEY})
    assert in_body.status_code == 200
    for headers, body in (({}, track("a3")), (auth("wk_nope"), track("a4"))):
        refused = httpx.post(f"{collector}/v1/track", json=body, headers=headers)
        assert refused.status_code == 401 and "write key" in refused.json()["message"]
    rows = closed_soon(home, {"a1", "a2"})
    assert {r["messageId"]: r["source"] for r in rows} == {"a1": "ios", "a2": "web"}


def test_segments_limits_and_bad_bodies_get_a_4xx_that_says_why(home: Path, collector: str) -> None:
    def post(path: str, **kw: Any) -> httpx.Response:
        return httpx.post(f"{collector}{path}", headers={**auth(), **kw.pop("headers", {})}, **kw)

    big = track("big", properties={"blob": "x" * 33_000})
    answer = post("/v1/track", json=big)
    assert answer.status_code == 400 and "32 KB" in answer.json()["message"]
    huge = {"batch": [track(f"h{n}", properties={"blob": "x" * 20_000}) for n in range(30)]}
    answer = post("/v1/batch", json=huge)
    assert answer.status_code == 400 and "500 KB" in answer.json()["message"]
    for body, why in ((b"{not json", "not valid JSON"), (b'{"batch": [NaN]}', "not valid JSON"),
                      (b'{"batch": {}}', '"batch" array')):  # fmt: skip
        answer = post("/v1/batch", content=body, headers={"Content-Type": "application/json"})
        assert answer.status_code == 400 and why in answer.json()["message"]
    bad_gzip = post("/v1/batch", content=b"plain", headers={"Content-Encoding": "gzip"})
    assert bad_gzip.status_code == 400
    # gzipped, as the clients send it
    packed = gzip.compress(json.dumps({"batch": [track("g1")]}).encode())
    gzipped = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
    answer = post("/v1/batch", content=packed, headers=gzipped)
    assert answer.status_code == 200
    # A batch with refused messages: the good ones are stored, the others kept with the reason.
    mixed = {"batch": [
        track("ok1"), {"type": "track", "messageId": "r1", "event": "x"},
        track("r2", event=""), {"type": "shout", "userId": "u"}, track("ok2"),
    ]}  # fmt: skip
    answer = post("/v1/batch", json=mixed)
    assert answer.status_code == 400
    body = answer.json()
    assert body["accepted"] == 2 and [r["index"] for r in body["rejected"]] == [1, 2, 3]
    assert "userId or an anonymousId" in body["rejected"][0]["reason"]
    rows = closed_soon(home, {"g1", "ok1", "ok2"})
    assert {r["messageId"] for r in rows} == {"g1", "ok1", "ok2"}
    rejects = closed_soon(home, {"r1", "r2"}, "rejects")
    reasons = {r["message_id"]: r["reason"] for r in rejects}
    assert reasons["r1"].startswith("a message needs a userId") and "event name" in reasons["r2"]
    # and the six requests refused whole (too large, not JSON, not gzip), with their first bytes
    assert len(rejects) == 3 + 6
    assert sum("32 KB" in r["reason"] for r in rejects) == 1
    assert any(r["payload"].startswith("{not json") for r in rejects)


def test_a_retried_message_is_stored_once_and_the_clock_is_corrected(
    home: Path, collector: str
) -> None:
    now = datetime.now(UTC)
    # The device's clock is an hour fast: it says the event happened at now+59m, sent at now+1h.
    skewed = track("s1", timestamp=(now + timedelta(minutes=59)).isoformat(),
                   sentAt=(now + timedelta(hours=1)).isoformat())  # fmt: skip
    for _ in range(2):  # the client got no answer the first time and sent it again
        assert httpx.post(f"{collector}/v1/track", json=skewed, headers=auth()).status_code == 200
    (row,) = closed_soon(home, {"s1"})
    happened = datetime.fromisoformat(row["timestamp"].replace("Z", "+00:00"))
    received = datetime.fromisoformat(row["receivedAt"].replace("Z", "+00:00"))
    assert happened == received - timedelta(minutes=1)
    assert row["originalTimestamp"].startswith(
        (now + timedelta(minutes=59)).strftime("%Y-%m-%dT%H:%M")
    )
    health = httpx.get(f"{collector}/health").json()
    assert (health["accepted"], health["duplicates"]) == (1, 1)
    spec = httpx.get(f"{collector}/openapi.json").json()
    assert {"/v1/track", "/v1/batch", "/v1/alias", "/health"} <= set(spec["paths"])


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)
messages = st.dictionaries(
    st.sampled_from(["type", "messageId", "userId", "anonymousId", "event", "name", "timestamp",
                     "sentAt", "previousId", "groupId", "properties", "traits", "context"]),
    json_values | st.sampled_from(["track", "identify", "alias", "group", "2026-11-02T10:00:00Z"]),
)  # fmt: skip


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    home = tmp_path_factory.mktemp("fuzz")
    landing.ensure_layout(home)
    with serving(create_app(CollectorSettings(home, KEYS, ROTATE))) as url:
        yield url, home


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batch=st.lists(messages, max_size=6), raw=st.binary(max_size=40))
def test_no_input_gets_a_5xx_and_every_acknowledged_message_lands(
    fuzzed: tuple[str, Path], batch: list[dict[str, Any]], raw: bytes
) -> None:
    url, home = fuzzed
    run = uuid.uuid4().hex
    for n, message in enumerate(batch):
        message["messageId"] = f"{run}-{n}"  # unique: every acknowledgement counts
    answers = [
        httpx.post(f"{url}/v1/batch", json={"batch": batch}, headers=auth()),
        httpx.post(f"{url}/v1/track", content=raw, headers=auth()),
        httpx.post(f"{url}/v1/batch", content=raw, headers={**auth(), "Content-Encoding": "gzip"}),
    ]
    assert all(a.status_code in (200, 400) for a in answers), [a.text for a in answers]
    refused = {r["index"] for r in answers[0].json().get("rejected", [])}
    acknowledged = {m["messageId"] for n, m in enumerate(batch) if n not in refused}
    rows = closed_soon(home, acknowledged)
    # every acknowledged message landed, once; nothing else of this batch did
    assert sorted(r["messageId"] for r in rows if r["messageId"].startswith(run)) == sorted(
        acknowledged
    )


def test_a_killed_collector_loses_nothing_it_acknowledged(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {**os.environ, "SWITCHYARD_HOME": str(home), "SWITCHYARD_WRITE_KEYS": f"web:{KEY}"}
    port = _free_port()
    cmd = [sys.executable, "-m", "switchyard.cli", "collect", "--port", str(port),
           "--rotate-seconds", "5"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=PROJECT_DIR, env=env)
    url = f"http://127.0.0.1:{port}"
    acknowledged: list[str] = []
    stop = threading.Event()

    def load(worker: int) -> None:
        with httpx.Client(timeout=5) as client:
            n = 0
            while not stop.is_set():
                ids = [f"k{worker}-{n}-{i}" for i in range(20)]
                n += 1
                try:
                    answer = client.post(f"{url}/v1/batch", headers=auth(),
                                         json={"batch": [track(i) for i in ids]})  # fmt: skip
                except httpx.TransportError:
                    continue
                if answer.status_code == 200:
                    acknowledged.extend(ids)

    try:
        _wait_for(url)
        workers = [threading.Thread(target=load, args=(w,)) for w in range(4)]
        for w in workers:
            w.start()
        while len(acknowledged) < 2000:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)  # mid-load, with a file open (rotation: 5 s)
        proc.wait()
        stop.set()
        for w in workers:
            w.join()
    finally:
        proc.kill()
    paths = Paths(home=home, landing=home / "landing", duckdb=home / "switchyard.duckdb")
    folder = landing.table_dir(paths.landing, "segment", "events")
    assert list(folder.glob(".*.open")), "the kill should have left a file open"
    recover(folder)  # what the next collector does on start
    stored = [r["messageId"] for r in landed(home / "landing")]
    assert set(acknowledged) <= set(stored)
    assert len(stored) == len(set(stored))  # no line twice, none cut in half


def test_collected_calls_reach_staging_identity_and_the_rejects_table(paths: Paths) -> None:
    calls = {"batch": [
        {"type": "track", "messageId": "c1", "anonymousId": "anon-7", "event": "cart_updated",
         "timestamp": "2026-11-02T10:00:00Z"},
        {"type": "alias", "messageId": "c2", "previousId": "anon-7", "userId": "u-ada"},
        {"type": "identify", "messageId": "c3", "userId": "u-ada",
         "traits": {"email": "ada@example.com"}},
        {"type": "screen", "messageId": "c4", "userId": "u-ada", "name": "Cart"},
        {"type": "track", "messageId": "c5", "event": "no_one"},
    ]}  # fmt: skip
    with serving(create_app(CollectorSettings(paths.landing, KEYS, ROTATE))) as url:
        answer = httpx.post(f"{url}/v1/batch", json=calls, headers=auth())
        assert answer.status_code == 400 and answer.json()["accepted"] == 4
    dbt_build(paths, "+fct_rejected_rows", "+dim_identities")
    staged = query(
        paths,
        "select event_id, event_type, event_name, intake_source from stg_segment__events "
        "where reject_reason is null order by 1",
    )
    assert [tuple(r.values()) for r in staged] == [
        ("c1", "track", "cart_updated", "web"), ("c2", "alias", None, "web"),
        ("c3", "identify", None, "web"), ("c4", "screen", "Cart", "web"),
    ]  # fmt: skip
    (rejected,) = query(paths, "select source_table, row_key, reject_reason from fct_rejected_rows")
    assert (rejected["source_table"], rejected["row_key"]) == ("segment.rejects", "c5")
    # the alias made the anonymous visitor and the signed-in user one person
    people = query(paths, "select distinct person_id from dim_identities where identifier_value "
                          "in ('anon-7', 'u-ada', 'ada@example.com')")  # fmt: skip
    assert len(people) == 1


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for(url: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"{url}/health", timeout=1)
            return
        except httpx.TransportError:
            assert time.monotonic() < deadline, "the collector did not start"
            time.sleep(0.1)


# An mParticle Events API batch, in the shape of its published schema.
MPARTICLE = {
    "source_request_id": "req-1",
    "environment": "production",
    "mpid": 8890123456,
    "user_identities": {"customer_id": "u-ada", "email": "ada@example.com"},
    "user_attributes": {"plan": "pro"},
    "device_info": {"ios_idfv": "idfv-1"},
    "events": [
        {"event_type": "custom_event",
         "data": {"event_name": "cart_updated", "custom_event_type": "transaction",
                  "custom_attributes": {"sku": "tee"}, "timestamp_unixtime_ms": 1793000000000,
                  "source_message_id": "mp-e1"}},
        {"event_type": "screen_view",
         "data": {"screen_name": "Cart", "source_message_id": "mp-e2"}},
        {"event_type": "session_start", "data": {"source_message_id": "mp-e3"}},
    ],
}  # fmt: skip


def test_mparticle_batches_land_as_segment_calls(home: Path, collector: str) -> None:
    one = httpx.post(f"{collector}/v2/events", json=MPARTICLE, headers=auth())
    assert one.status_code == 202
    viewed = {"event_type": "custom_event",
              "data": {"event_name": "viewed", "source_message_id": "mp-e4"}}  # fmt: skip
    other = {**MPARTICLE, "source_request_id": "req-2", "user_identities": {}, "events": [viewed]}
    bulk = httpx.post(f"{collector}/v2/bulkevents", json=[other], headers=auth())
    assert bulk.status_code == 202
    rows = {r["messageId"]: r for r in closed_soon(home, {"mp-e1", "mp-e4", "mp-req-1-identify"})}
    assert rows["mp-e1"]["event"] == "cart_updated" and rows["mp-e1"]["userId"] == "u-ada"
    assert rows["mp-e1"]["properties"] == {"sku": "tee"}
    at = datetime.fromtimestamp(1793000000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    assert rows["mp-e1"]["timestamp"].startswith(at)  # from its unix milliseconds
    assert (rows["mp-e2"]["type"], rows["mp-e2"]["name"]) == ("screen", "Cart")
    assert rows["mp-e3"]["event"] == "session_start"
    assert rows["mp-req-1-identify"]["traits"] == {"plan": "pro", "email": "ada@example.com"}
    # no customer id: the mParticle id is the anonymous id
    assert (rows["mp-e4"]["userId"], rows["mp-e4"]["anonymousId"]) == (None, "8890123456")
    nobody = {"events": [{"event_type": "custom_event", "data": {"event_name": "x"}}]}
    refused = httpx.post(f"{collector}/v2/events", json=nobody, headers=auth())
    assert refused.status_code == 400
    assert "userId or an anonymousId" in refused.json()["errors"][0]["message"]
    assert httpx.post(f"{collector}/v2/events", json=MPARTICLE).status_code == 401


def test_concurrent_retries_of_one_message_land_it_once(home: Path, collector: str) -> None:
    # An SDK that timed out sends the same batch again while the first is still being written.
    results: list[int] = []

    def post() -> None:
        answer = httpx.post(f"{collector}/v1/batch", json={"batch": [track("same")]},
                            headers=auth())  # fmt: skip
        results.append(answer.status_code)

    threads = [threading.Thread(target=post) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200] * 12
    closed_soon(home, {"same"})
    time.sleep(3 * ROTATE)
    assert [r["messageId"] for r in landed(home)] == ["same"]


def test_a_retry_waiting_on_a_first_copy_whose_write_fails_stores_it_itself(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The disk refuses the first write (a full disk, injected: root writes past permissions);
    # a retry that arrived meanwhile waited on that write, and now stores the message itself.
    real_write, calls = GroupCommitLog._write, []

    def failing_once(log: GroupCommitLog, lines: list[bytes]) -> None:
        calls.append(len(lines))
        if len(calls) == 1:
            time.sleep(0.5)  # long enough for the retry to arrive and wait on this write
            raise OSError(28, "No space left on device")
        real_write(log, lines)

    monkeypatch.setattr(GroupCommitLog, "_write", failing_once)
    results: dict[str, int] = {}

    def post(name: str) -> None:
        answer = httpx.post(url + "/v1/track", json=track("disk"), headers=auth())
        results[name] = answer.status_code

    with serving(create_app(CollectorSettings(home, KEYS, ROTATE))) as url:
        first = threading.Thread(target=post, args=("first",))
        first.start()
        time.sleep(0.2)
        post("retry")
        first.join()
        assert results == {"first": 503, "retry": 200}
        post("again")  # stored once already: acknowledged, not stored twice
        closed_soon(home, {"disk"})
    assert results["again"] == 200
    assert [r["messageId"] for r in landed(home)] == ["disk"]


def test_a_second_collector_on_the_folder_leaves_the_first_ones_open_file_alone(
    home: Path,
) -> None:
    # Two collectors behind a load balancer on one landing folder: the second's start-up
    # recovery must not close (rename) the file the first is still writing.
    slow = CollectorSettings(home, KEYS, rotate_seconds=30)
    folder = landing.table_dir(home, "segment", "events")
    with serving(create_app(slow)) as first:
        assert httpx.post(f"{first}/v1/track", json=track("a1"), headers=auth()).is_success
        (open_file,) = folder.glob(".*.open")
        with serving(create_app(CollectorSettings(home, KEYS, ROTATE))) as second:
            assert open_file.exists(), "the second collector closed the first one's open file"
            assert httpx.post(f"{second}/v1/track", json=track("b1"), headers=auth()).is_success
            assert httpx.post(f"{first}/v1/track", json=track("a2"), headers=auth()).is_success
        assert open_file.exists() and b'"a2"' in open_file.read_bytes()
    ids = [r["messageId"] for r in landed(home)]
    assert sorted(ids) == ["a1", "a2", "b1"] and not list(folder.glob(".*.open"))


@pytest.mark.parametrize(
    ("path", "headers", "body"),
    [
        ("/v1/track", {"Authorization": "Basic \u00e9\u00e9\u00e9"}, b"{}"),
        ("/v1/track", {"Authorization": "Bearer token"}, b'{"writeKey": 5}'),
        ("/v1/batch", {"Authorization": "Basic !!!"}, b"[]"),
        ("/v1/batch", {}, b'{"batch": [{"type": "track", "userId": "u", "event": "e", '
                          b'"properties": {"n": 1e400}}], "writeKey": "wk_test_web"}'),
        ("/v2/events", {}, b'{"user_attributes": [1]}'),
        ("/v2/bulkevents", {}, b'[{"user_attributes": 5, "events": "x"}]'),
    ],
)  # fmt: skip
def test_odd_headers_and_bodies_get_a_4xx_never_a_5xx(
    collector: str, path: str, headers: dict[str, str], body: bytes
) -> None:
    sent = {**auth(), **headers} if path.startswith("/v2") else headers
    raw = {k: v.encode() for k, v in sent.items()}  # as bytes: not ASCII, some of them
    answer = httpx.post(f"{collector}{path}", content=body, headers=raw)
    assert 400 <= answer.status_code < 500, answer.text


def test_a_bearer_client_is_known_by_the_write_key_in_its_body(home: Path, collector: str) -> None:
    body = {"batch": [track("b1")], "writeKey": KEY}
    answer = httpx.post(f"{collector}/v1/batch", json=body,
                        headers={"Authorization": "Bearer oauth-token"})  # fmt: skip
    assert answer.status_code == 200
    closed_soon(home, {"b1"})


def test_the_writer_outlives_a_disk_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from intake import durable

    failures = {"left": 2}
    real = durable.fsync_dir

    def flaky(folder: Path) -> None:
        if failures["left"]:
            failures["left"] -= 1
            raise OSError(5, "Input/output error")
        real(folder)

    monkeypatch.setattr(durable, "fsync_dir", flaky)

    async def scenario() -> list[str]:
        log = durable.GroupCommitLog(tmp_path, "t", rotate_seconds=0.05)
        log.start()
        outcomes = []
        for n in range(3):
            try:
                await log.append([{"messageId": f"m{n}"}])
                outcomes.append("stored")
            except OSError:
                outcomes.append("refused")  # the client hears 503 and sends it again
            await asyncio.sleep(0.1)  # past a rotation
        await log.close()
        return outcomes

    outcomes = asyncio.run(scenario())
    assert outcomes[-1] == "stored" and "refused" in outcomes
    durable.recover(tmp_path)
    stored = [json.loads(line)["messageId"] for p in tmp_path.glob("*.jsonl")
              for line in p.read_text().splitlines()]  # fmt: skip
    assert {f"m{n}" for n, o in enumerate(outcomes) if o == "stored"} <= set(stored)
