"""Deletion requests over HTTP (the collector's `/v1/privacy/forget`): authenticated, the
identifier blocked from the moment the request is accepted, the person forgotten everywhere by
the next privacy run, the status readable without personal data."""

from __future__ import annotations

import base64
import json
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from intake.collector import CollectorSettings, create_app
from switchyard import landing
from switchyard.privacy import requests
from switchyard.privacy.tombstones import Forgotten
from switchyard.settings import Paths
from tests.servers import serving

TOKEN = "privacy-token-for-tests-0123456789abcdef"
KEY = "wk_test_web"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def home(tmp_path: Path) -> Path:
    landing.ensure_layout(tmp_path / "landing")
    return tmp_path


@pytest.fixture
def collector(home: Path) -> Iterator[str]:
    settings = CollectorSettings(home / "landing", {KEY: "web"}, 0.2, privacy_token=TOKEN)
    with serving(create_app(settings)) as url:
        yield url


def track(message_id: str, email: str) -> dict[str, object]:
    # anonymous: without a warehouse to say whose a user id is, a row that names one is kept
    # (with the address blanked), as another person's could be
    return {"type": "track", "messageId": message_id, "anonymousId": f"a-{message_id}",
            "event": "viewed", "context": {"traits": {"email": email}}}  # fmt: skip


def landed_ids(paths: Paths) -> list[str]:
    folder = paths.landing / "segment/events"
    lines = [line for p in sorted(folder.glob("*.jsonl")) for line in p.read_text().splitlines()]
    return [json.loads(line)["messageId"] for line in lines if line]


def write_key() -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{KEY}:".encode()).decode()}


def test_only_the_token_holder_may_ask(home: Path, collector: str) -> None:
    url = f"{collector}/v1/privacy/forget"
    assert httpx.post(url, json={"email": "a@mail.test"}).status_code == 401
    wrong = httpx.post(url, json={"email": "a@mail.test"}, headers={"Authorization": "Bearer x"})
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
    assert httpx.get(f"{url}/r1", headers=write_key()).status_code == 401
    assert not (home / "landing/privacy/requests").exists()
    with serving(create_app(CollectorSettings(home / "landing", {KEY: "web"}))) as other:
        answer = httpx.post(f"{other}/v1/privacy/forget", json={"email": "a@mail.test"})
    assert answer.status_code == 404 and "SWITCHYARD_PRIVACY_TOKEN" in answer.json()["message"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"email": "a@mail.test", "phone": "+14155550100"}, "exactly one"),
        ({}, "exactly one"),
        ({"email": "not-an-email"}, "not an email"),
        ({"phone": "12"}, "12"),
        ({"user_id": "u1", "request_id": "../../etc"}, "request_id"),
        ({"user_id": "u1", "request_id": "abc\n"}, "request_id"),
        ({"user_id": "u1", "request_id": ".hidden"}, "not starting with '.'"),
        ({"user_id": "u1", "drop_new_events": "yes"}, "true or false"),
        ({"user_id": "u1", "reason": "x"}, "exactly one"),
    ],
)
def test_a_malformed_request_is_refused_with_the_reason(
    home: Path, collector: str, body: dict[str, object], message: str
) -> None:
    answer = httpx.post(f"{collector}/v1/privacy/forget", json=body, headers=BEARER)
    assert answer.status_code == 400 and message in answer.json()["message"]
    assert not list((home / "landing/privacy").rglob("*.json"))


def test_accepted_blocks_at_once_and_the_next_run_forgets_everywhere(
    home: Path, collector: str
) -> None:
    paths = Paths(home=home, landing=home / "landing", duckdb=home / "none.duckdb")
    rows = [track("m-1", "Gone@Mail.test"), track("m-2", "stays@mail.test")]
    landing.write_batch(paths.landing, "segment", "events", rows)
    answer = httpx.post(
        f"{collector}/v1/privacy/forget",
        json={"email": " gone@mail.TEST", "request_id": "req-7", "drop_new_events": True},
        headers=BEARER,
    )
    assert answer.status_code == 202
    assert answer.json() == {"request_id": "req-7", "status": "queued",
                             "status_url": "/v1/privacy/forget/req-7"}  # fmt: skip
    # blocked now: the sender's check, and intake drops their new events
    assert Forgotten(paths.landing).names({"email:gone@mail.test"})
    sent = httpx.post(f"{collector}/v1/track", json=track("m-3", "GONE@mail.test"),
                      headers=write_key())  # fmt: skip
    assert sent.status_code == 200
    deadline = time.monotonic() + 5
    while httpx.get(f"{collector}/health").json()["dropped_forgotten"] != 1:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    queued = paths.landing / "privacy/requests/req-7.json"
    assert stat.S_IMODE(queued.stat().st_mode) == 0o600
    status = httpx.get(f"{collector}/v1/privacy/forget/req-7", headers=BEARER).json()
    assert status["status"] == "queued" and status["drop_new_events"] is True

    (done,) = requests.process(paths)
    assert done == requests.Processed("req-7", "completed")
    status = httpx.get(f"{collector}/v1/privacy/forget/req-7", headers=BEARER).json()
    assert status["status"] == "completed" and status["completed_at"]
    assert status["stores"]["landing:segment/events"]["rows_removed"] == 1
    assert "gone" not in json.dumps(status).lower()
    # nothing under the home holds the address any more (the queued request is gone too)
    holding = [p for p in home.rglob("*") if p.is_file() and b"gone@" in p.read_bytes().lower()]
    assert holding == []
    assert landed_ids(paths) == ["m-2"]
    # asking again under the same id: done already, nothing queued
    body = {"email": "gone@mail.test", "request_id": "req-7", "drop_new_events": True}
    again = httpx.post(f"{collector}/v1/privacy/forget", json=body, headers=BEARER)
    assert again.json()["status"] == "completed" and not queued.exists()
    assert httpx.get(f"{collector}/v1/privacy/forget/nope", headers=BEARER).status_code == 404


def test_a_request_that_cannot_be_carried_out_is_refused_and_the_others_go_ahead(
    home: Path,
) -> None:
    paths = Paths(home=home, landing=home / "landing", duckdb=home / "none.duckdb")
    for request_id, user in (("r-a", "u-a"), ("r-b", "u-b")):
        asked, rid, drop = requests.parse({"user_id": user, "request_id": request_id})
        assert requests.accept(paths.landing, asked, rid, drop) == "queued"
    # a queued request another tool broke: it is refused with its reason, not lost
    (paths.landing / "privacy/requests/r-c.json").write_text(json.dumps(
        {"request_id": "r-c", "kind": "email", "value": "broken", "drop_new_events": False,
         "requested_at": "2026-12-01T00:00:00+00:00"}))  # fmt: skip
    done = {p.request_id: p for p in requests.process(paths)}
    assert (done["r-a"].outcome, done["r-b"].outcome) == ("completed", "completed")
    # refused with a reason that does not repeat the value (Dagster's logs keep it), the
    # queued file (which holds the value) gone, and the status says so
    assert done["r-c"].outcome == "refused" and "broken" not in done["r-c"].reason
    assert requests.pending(paths.landing) == []
    status = requests.status(paths.landing, "r-c")
    assert status is not None and status["status"] == "refused" and status["reason"]


def test_the_audit_reads_as_one_row_per_request_in_the_warehouse(home: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from switchyard.privacy.retention import Policy, Rule, enforce
    from tests.dbt_helpers import dbt_build, query

    paths = Paths(home=home, landing=home / "landing", duckdb=home / "w.duckdb")
    landing.write_batch(paths.landing, "segment", "events", [
        track("m-1", "gone@mail.test"),
        {**track("m-2", "old@mail.test"), "timestamp": "2020-01-01T00:00:00Z"},
    ])  # fmt: skip
    for request_id, email in (("req-done", "gone@mail.test"), ("req-later", "x@mail.test")):
        asked, rid, drop = requests.parse({"email": email, "request_id": request_id})
        requests.accept(paths.landing, asked, rid, drop)
    (paths.landing / "privacy/requests/req-later.json").rename(home / "held.json")
    requests.process(paths)  # req-done only
    (home / "held.json").rename(paths.landing / "privacy/requests/req-later.json")
    policy = Policy({"segment/events": (Rule(30, "timestamp"),)}, {})
    run = enforce(paths.landing, None, policy, datetime.now(UTC) + timedelta(days=1))
    dbt_build(paths, "+fct_privacy_requests")
    rows = {r["request_id"]: r for r in query(paths, "select * from fct_privacy_requests")}
    done, later = rows["req-done"], rows["req-later"]
    assert (done["kind"], done["status"], done["rows_removed"]) == ("forget", "completed", 1)
    assert done["requested_at"] <= done["completed_at"] and done["hours_to_complete"] == 0
    assert (later["status"], later["completed_at"], later["rows_removed"]) == ("queued", None, 0)
    (retention,) = [r for r in rows.values() if r["kind"] == "retention"]
    assert run.path is not None and retention["request_id"] == Path(run.path).stem
    assert (retention["status"], retention["rows_removed"]) == ("completed", 1)


def test_a_file_of_requests_is_forgotten_in_one_pass(home: Path, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from switchyard.settings import PROJECT_DIR

    paths = Paths(home=home, landing=home / "landing", duckdb=home / "none.duckdb")
    rows = [track("m-1", "one@mail.test"), track("m-2", "two@mail.test"),
            track("m-3", "three@mail.test")]  # fmt: skip
    landing.write_batch(paths.landing, "segment", "events", rows)
    listing = tmp_path / "requests.csv"
    listing.write_text(
        "email,request_id\none@mail.test,t-1\ntwo@mail.test,\nnot-an-email,t-3\n,t-4\n"
    )
    env = {**os.environ, "SWITCHYARD_HOME": str(home), "SWITCHYARD_CHANNELS": "sandbox"}
    for name in ("SWITCHYARD_LANDING_DIR", "SWITCHYARD_DUCKDB_PATH"):
        env.pop(name, None)
    done = subprocess.run(
        [sys.executable, "-m", "switchyard.cli", "forget", "--from-file", str(listing)],
        capture_output=True, text=True, env=env, cwd=PROJECT_DIR,
    )  # fmt: skip
    # the good rows are forgotten, the bad ones named by line with the reason: exit 1
    assert done.returncode == 1, done.stderr
    assert "line 4: 'not-an-email' is not an email address" in done.stderr
    assert "line 5: name exactly one of" in done.stderr
    assert "request t-1: completed" in done.stdout and "2 requests from" in done.stdout
    assert landed_ids(paths) == ["m-3"]


def test_a_request_id_names_one_identifier(home: Path, collector: str) -> None:
    url = f"{collector}/v1/privacy/forget"
    first = {"email": "a@mail.test", "request_id": "ticket-1"}
    assert httpx.post(url, json=first, headers=BEARER).json()["status"] == "queued"
    # the same again: harmless, its status
    assert httpx.post(url, json=first, headers=BEARER).json()["status"] == "queued"
    other = httpx.post(url, json={**first, "email": "b@mail.test"}, headers=BEARER)
    assert other.status_code == 409 and "use a new request id" in other.json()["message"]
    (queued,) = requests.pending(home / "landing")
    assert (queued.request_id, queued.value) == ("ticket-1", "a@mail.test")
    assert not Forgotten(home / "landing").names({"email:b@mail.test"})


def test_the_command_line_checks_the_request_id_too(home: Path) -> None:
    from switchyard.privacy.forget import forget
    from switchyard.privacy.subject import Request, SubjectError

    paths = Paths(home=home, landing=home / "landing", duckdb=home / "none.duckdb")
    with pytest.raises(SubjectError, match="request_id"):
        forget(paths, Request("user_id", "u1"), "../outside")
    assert not (home / "landing/privacy/outside.json").exists()


def test_a_refused_request_unblocks_its_identifier_and_can_be_carried_out_later(
    home: Path,
) -> None:
    from switchyard.privacy.forget import forget
    from switchyard.privacy.subject import SeveralPeople

    paths = Paths(home=home, landing=home / "landing", duckdb=home / "none.duckdb")
    asked, rid, drop = requests.parse({"email": "shared@mail.test", "request_id": "r-x"})
    requests.accept(paths.landing, asked, rid, drop)
    assert Forgotten(paths.landing).names({"email:shared@mail.test"})
    (queued,) = requests.pending(paths.landing)
    shared = SeveralPeople("email 'shared@mail.test' belongs to 2 people (p-1, p-2)")
    refused = requests._refuse(paths.landing, queued, shared)
    assert "more than one person" in refused.reason and "shared@" not in refused.reason
    assert not Forgotten(paths.landing).names({"email:shared@mail.test"})
    # asked again as it was: its status, not a conflict; with the other flag: a conflict
    assert requests.accept(paths.landing, asked, rid, drop) == "refused"
    with pytest.raises(requests.Conflict, match="drop_new_events=false"):
        requests.accept(paths.landing, asked, rid, True)
    # carried out after all under the same id (the operator decided whose it is)
    assert forget(paths, asked, "r-x").complete
    status = requests.status(paths.landing, "r-x")
    assert status is not None and (status["status"], status["reason"]) == ("completed", None)
