"""The in-app inbox: the in_app channel writes messages to it, a real HTTP endpoint (uvicorn on
127.0.0.1) serves them to the signed-in user only, and reads and clicks land as feedback events
that dbt's fct_inbox_messages reads."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from activations import guards, ledger
from activations.channels import Message, Sender
from activations.channels.core import Outgoing
from activations.channels.inbox import InboxClient
from activations.inbox import service, store, tokens
from activations.journeys import Step, Template
from switchyard import landing, signed_tokens
from switchyard.settings import Paths
from tests.dbt_helpers import dbt_build, query
from tests.servers import serving

SECRET = "s" * 40
T = datetime(2026, 11, 2, 10, 0)


def test_a_token_names_its_user_and_nothing_else_passes() -> None:
    token = tokens.issue(SECRET, "u-ada", now=T.timestamp())
    assert tokens.verify(SECRET, token, now=T.timestamp() + 60) == "u-ada"
    header, claims, signature = token.split(".")
    forged_claims = tokens.b64url(json.dumps({"sub": "u-bob", "exp": 9e9}).encode())
    none_header = tokens.b64url(json.dumps({"alg": "none"}).encode())
    refused = {
        "another user's claims": f"{header}.{forged_claims}.{signature}",
        "alg none": f"{none_header}.{claims}.",
        "another secret": tokens.issue("t" * 40, "u-ada", now=T.timestamp()),
        "garbage": "not-a-token",
    }
    for why, bad in refused.items():
        with pytest.raises(tokens.TokenError):
            tokens.verify(SECRET, bad, now=T.timestamp())
            pytest.fail(why)
    with pytest.raises(tokens.TokenError, match="expired"):
        tokens.verify(SECRET, token, now=T.timestamp() + 3600)
    with pytest.raises(ValueError, match="at least 32 bytes"):
        tokens.issue("short", "u-ada")


def test_in_app_goes_to_the_users_inbox_by_default_unless_they_opted_out() -> None:
    step = Step("nudge", 0, ("in_app",), {"in_app": Template(body="Your cart")})
    ada = guards.Person("p-ada", "u-ada", None, None, None, "Ada")
    assert guards.choose_channel(step, ada, {}) == guards.Channel("in_app", "u-ada")
    opted_out = replace(ada, consent={"in_app": "unsubscribed"})
    assert isinstance(guards.choose_channel(step, opted_out, {}), guards.NoChannel)
    anonymous = replace(ada, user_id=None)  # no signed-in user to show it to
    assert guards.choose_channel(step, anonymous, {}) == guards.NoChannel(
        guards.SkipReason.NO_ADDRESS
    )


def deliver_in_app(home: Path, messages: list[tuple[str, str, str]]) -> list[str]:
    """(send key, user, body) delivered through the Sender as a run does."""
    writer = ledger.LedgerWriter(home, "r")
    inbox = InboxClient(home, lambda: T)
    sender = Sender(httpx.Client(), {"in_app": inbox}, writer, lambda: T)
    batch = [
        Outgoing(
            ledger.SendRef(key, "cart", "nudge", f"p-{user}", "e1"),
            Message(
                key,
                "in_app",
                user,
                body,
                title="Still there?",
                tags={"journey": "cart", "step": "nudge"},
            ),
        )  # fmt: skip
        for key, user, body in messages
    ]
    outcomes = sender.send_batch(batch)
    sender.close()
    writer.close()
    return [o.status for o in outcomes]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    landing.ensure_layout(tmp_path)
    return tmp_path


def test_token_times_are_utc_whatever_the_machines_zone(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The clock is naive UTC; read as local time in Tokyo it would be nine hours early and an
    # expired token would pass (in Los Angeles a fresh one would fail).
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        app = service.create_app(home, SECRET, clock=lambda: T)
        issued = T.replace(tzinfo=UTC).timestamp()
        with TestClient(app) as http:
            fresh = tokens.issue(SECRET, "u-ada", now=issued - 60)
            stale = tokens.issue(SECRET, "u-ada", now=issued - 2 * 3600)
            assert http.get("/v1/inbox", headers={"Authorization": f"Bearer {fresh}"}).is_success
            refused = http.get("/v1/inbox", headers={"Authorization": f"Bearer {stale}"})
            assert refused.status_code == 401
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    nan = tokens.b64url(json.dumps({"sub": "u", "exp": float("nan")}).encode())
    header, _, _ = tokens.issue(SECRET, "u").split(".")
    signed = signed_tokens._sign(SECRET.encode(), f"{header}.{nan}")
    with pytest.raises(tokens.TokenError, match="no expiry"):
        tokens.verify(SECRET, f"{header}.{nan}.{signed}")


def test_a_message_written_twice_under_one_key_is_one_message(home: Path) -> None:
    assert deliver_in_app(home, [("k1", "u-ada", "Hi Ada")]) == ["sent"]
    assert deliver_in_app(home, [("k1", "u-ada", "Hi Ada")]) == ["sent"]  # sent once more
    (only,) = store.read_inbox(home, "u-ada")
    assert (only.send_key, only.title, only.body, only.journey) == (
        "k1", "Still there?", "Hi Ada", "cart"
    )  # fmt: skip
    assert ledger.read_state(home).last_status == {"k1": "sent"}


@pytest.fixture
def endpoint(home: Path) -> Iterator[tuple[str, list[datetime]]]:
    """The inbox endpoint on a free port of 127.0.0.1, its clock settable."""
    clock = [T]
    with serving(service.create_app(home, SECRET, clock=lambda: clock[0])) as url:
        yield url, clock


def bearer(user: str) -> dict[str, str]:
    issued = T.replace(tzinfo=UTC).timestamp()  # the endpoint's clock reads naive UTC
    return {"Authorization": f"Bearer {tokens.issue(SECRET, user, now=issued)}"}


def feedback_lines(home: Path) -> list[dict[str, str]]:
    folder = landing.table_dir(home, "feedback", "events")
    return [json.loads(line) for f in sorted(folder.glob("inbox-*.jsonl")) for line in f.open()]


def test_the_endpoint_serves_the_users_inbox_and_lands_reads_and_clicks(
    home: Path, endpoint: tuple[str, list[datetime]]
) -> None:
    url, clock = endpoint
    deliver_in_app(home, [("k1", "u-ada", "One"), ("k2", "u-ada", "Two"), ("k3", "u-bob", "Bob's")])
    with httpx.Client(base_url=url) as http:
        assert http.get("/health").json() == {"ok": True}
        unsigned = http.get("/v1/inbox")
        assert unsigned.status_code == 401 and "Bearer" in unsigned.headers["www-authenticate"]
        listing = http.get("/v1/inbox", headers=bearer("u-ada")).json()
        assert listing["unread"] == 2
        assert {m["id"] for m in listing["messages"]} == {"k1", "k2"}
        # Bob's message is nobody else's business: not found, as one that does not exist
        assert http.post("/v1/inbox/k3/read", headers=bearer("u-ada")).status_code == 404
        clock[0] = T + timedelta(minutes=5)
        read = http.post("/v1/inbox/k1/read", headers=bearer("u-ada"))
        assert read.status_code == 200 and read.json()["read_at"] == clock[0].isoformat()
        http.post("/v1/inbox/k1/read", headers=bearer("u-ada"))  # a second tap: nothing new
        unread = http.get("/v1/inbox", params={"unread": "true"}, headers=bearer("u-ada")).json()
        assert unread["unread"] == 1 and [m["id"] for m in unread["messages"]] == ["k2"]
        clicked = http.post("/v1/inbox/k2/click", headers=bearer("u-ada")).json()
        assert clicked["clicked_at"] == clicked["read_at"] == clock[0].isoformat()
        expired = {"Authorization": f"Bearer {tokens.issue(SECRET, 'u-ada', now=0)}"}
        assert http.get("/v1/inbox", headers=expired).status_code == 401
        odd = {"Authorization": (bearer("u-ada")["Authorization"][:-2] + "é").encode()}
        assert http.get("/v1/inbox", headers=odd).status_code == 401  # refused, not a 500
    events = [(e["send_key"], e["event"], e["channel"]) for e in feedback_lines(home)]
    assert events == [("k1", "open", "in_app"), ("k2", "click", "in_app")]


def test_the_warehouse_reads_the_inbox_with_its_reads_and_clicks(paths: Paths) -> None:
    home = paths.landing
    landing.ensure_layout(home)
    deliver_in_app(home, [("k1", "u-ada", "One"), ("k2", "u-ada", "Two"), ("k1", "u-ada", "One")])
    events = store.InboxWriter(home, "feedback", "events", "inbox")
    for key, event in (("k1", "open"), ("k1", "click"), ("k1", "open")):
        events.append(store.event_row(key, event, T + timedelta(minutes=1)))  # type: ignore[arg-type]
    events.close()
    dbt_build(paths, "stg_inbox__messages", "+fct_message_engagement", "fct_inbox_messages")
    rows = query(
        paths,
        "select send_key, user_id, is_read, is_clicked, read_at from fct_inbox_messages "
        "order by send_key",
    )
    assert [(r["send_key"], r["user_id"], r["is_read"], r["is_clicked"]) for r in rows] == [
        ("k1", "u-ada", True, True),
        ("k2", "u-ada", False, False),
    ]
    assert rows[0]["read_at"] == T + timedelta(minutes=1)
