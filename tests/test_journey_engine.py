"""The journey engine's tick, by time travel: people, events and the runs' clocks in; per person
the steps taken and the messages sent out. Every node type and every way out of one is here."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from activations import transitions
from activations.graph import COMPLETED, CONVERTED, EXITED, FINAL, LEFT_AUDIENCE, NOT_ENTERED
from activations.journeys import Journey, JourneyDefinitionError
from activations.ledger import send_key
from switchyard.settings import PROJECT_DIR
from tests.journey_harness import PROFILE_COLUMNS, Harness

T = datetime(2026, 11, 2, 9, 0)
EMAIL = {"email": {"subject": "s", "body": "b"}}
PUSH = {"push": {"title": "t", "body": "b"}}
SMS = {"sms": {"body": "b"}}


def h(d: float = 0, m: float = 0) -> datetime:
    """T plus hours and minutes."""
    return T + timedelta(hours=d, minutes=m)


def journey(steps: list[dict[str, Any]], **meta: Any) -> Journey:
    declaration = {"name": "j", "entry": {"event": "cart_updated"}, "steps": steps, **meta}
    return Journey.from_meta("audience_j", declaration, profile_columns=PROFILE_COLUMNS)


def send(name: str, templates: dict[str, Any] = EMAIL, **kw: Any) -> dict[str, Any]:
    return {"name": name, "channels": list(templates), "templates": templates, **kw}


@pytest.fixture
def landing(tmp_path: Path) -> Path:
    return tmp_path


def test_a_linear_journey_keeps_its_timings_from_entry(landing: Path) -> None:
    # Cart abandonment as declared: a reminder at entry, a push a day after entering.
    j = journey(
        [send("cart_reminder"), send("push_nudge", PUSH, wait_minutes=1440)],
        exit_on=["purchase_completed"],
    )
    run = Harness(j, landing).person("ann").person("bob").enters("ann", h()).enters("bob", h())
    run.event("bob", "purchase_completed", h(5))
    run.run(h(0, 1))
    run.run(h(23, 59))
    run.run(h(24, 30))  # late: the push is still the one due at entry + 24 h
    assert run.sends_to("ann") == [("cart_reminder", h()), ("push_nudge", h(24))]
    assert run.path_of("ann") == ["cart_reminder", "push_nudge", COMPLETED]
    # Bob bought after the reminder: no push, and the exit says why.
    assert run.sends_to("bob") == [("cart_reminder", h())]
    assert run.steps_of("bob")[-1] == (EXITED, "exited", "purchase_completed", h(5))


def test_an_entry_filter_on_the_events_properties(landing: Path) -> None:
    # Only carts worth 50 or more in euros enter; a number is compared as a number (9 < 50 even
    # though "9" > "50" as text), a missing or non-numeric value does not enter.
    where = "cart_value >= 50 and currency in ('EUR') and coalesce(test_order, false) = false"
    j = journey([send("cart_reminder")], entry={"event": "cart_updated", "where": where})
    run = Harness(j, landing)
    carts = {
        "big": '{"cart_value": 120.5, "currency": "EUR"}',
        "text_number": '{"cart_value": "60", "currency": "EUR"}',
        "small": '{"cart_value": 9, "currency": "EUR"}',
        "dollars": '{"cart_value": 120, "currency": "USD"}',
        "test": '{"cart_value": 120, "currency": "EUR", "test_order": true}',
        "no_value": '{"currency": "EUR"}',
        "not_a_number": '{"cart_value": "lots", "currency": "EUR"}',
    }
    for person, properties in carts.items():
        run.person(person).enters(person, h(), properties=properties)
    run.run(h(0, 1))
    assert sorted({d.person_id for d in run.sent}) == ["big", "text_number"]
    assert run.path_of("small") == []  # not a candidate at all: nothing recorded
    assert "where cart_value >= 50" in j.entry.describe()
    # Spark reads the same properties with its own JSON function, a failed number as null.
    assert j.entry.where is not None
    spark = j.entry.where.json_sql("entry_properties", dialect="spark")
    assert "TRY_CAST(GET_JSON_OBJECT(`entry_properties`, '$.cart_value') AS DOUBLE) >= 50" in spark


@pytest.mark.parametrize(
    "where, error",
    [
        ("cart_value >= 50; drop table x", "must be one expression"),
        ("lower(currency) = 'eur'", "is not allowed"),
        ("e.cart_value > 1", "names a table"),
        ("signed_up > current_date - interval 1 day", "dates are not allowed"),
        ("cart_value > previous_value", "compares two properties"),
        ("currency in (1, 'EUR')", "mixes numbers and text"),
        ("cart_value + 1 = 'x'", "cannot run over an event's properties"),
    ],
)
def test_an_entry_filter_is_checked_at_load(where: str, error: str) -> None:
    with pytest.raises(JourneyDefinitionError, match="entry.where") as caught:
        journey([send("a")], entry={"event": "cart_updated", "where": where})
    assert error in str(caught.value)


def test_waits_for_a_duration_and_until_a_local_time(landing: Path) -> None:
    j = journey(
        [
            {"name": "pause", "type": "wait", "hours": 2},
            {"name": "morning", "type": "wait", "until_time": "09:00",
             "default_timezone": "America/New_York"},
            send("hello"),
        ]
    )  # fmt: skip
    run = Harness(j, landing)
    run.person("berlin", timezone="Europe/Berlin").person("nowhere", timezone="Mars/Olympus")
    run.enters("berlin", h()).enters("nowhere", h())
    run.run(h(1))
    assert run.path_of("berlin") == ["pause"]  # two hours are not over
    run.run(h(48))
    # Entered 09:00 UTC; 11:00 UTC is 12:00 in Berlin, so the next 09:00 there is 08:00 UTC.
    assert run.sends_to("berlin") == [("hello", datetime(2026, 11, 3, 8, 0))]
    # An unknown zone falls back to the declared default: 09:00 in New York is 14:00 UTC.
    assert run.sends_to("nowhere") == [("hello", datetime(2026, 11, 2, 14, 0))]


def test_wait_until_the_usual_active_hour(landing: Path) -> None:
    j = journey(
        [{"name": "later", "type": "wait", "until_usual_hour": True, "default_hour": 18},
         send("hello")]
    )  # fmt: skip
    run = Harness(j, landing).person("owl", usual_active_hour_utc=22).person("new", timezone="UTC")
    run.enters("owl", h()).enters("new", h())
    run.run(h(20))
    assert run.sends_to("owl") == [("hello", datetime(2026, 11, 2, 22, 0))]
    assert run.sends_to("new") == [("hello", datetime(2026, 11, 2, 18, 0))]


def test_wait_for_an_event_or_time_out(landing: Path) -> None:
    j = journey(
        [
            {"name": "for_app", "type": "wait", "until_event": "app_opened", "timeout_hours": 24,
             "on_timeout": "nudge"},
            send("thanks", next="done"),
            send("nudge", PUSH),
            {"name": "done", "type": "exit"},
        ]
    )  # fmt: skip
    run = Harness(j, landing).person("ann").person("bob").enters("ann", h()).enters("bob", h())
    run.event("ann", "app_opened", h(3))
    run.event("bob", "app_opened", h(-1))  # before entering: it does not count
    run.run(h(2))
    assert run.path_of("ann") == ["for_app"]
    run.run(h(4))
    assert run.sends_to("ann") == [("thanks", h(3))]
    assert run.path_of("ann") == ["for_app", "thanks", "done", EXITED]
    assert run.path_of("bob") == ["for_app"]
    run.run(h(25))
    assert run.sends_to("bob") == [("nudge", h(24))]
    assert run.steps_of("bob")[1][:3] == ("nudge", "timed out", "app_opened")


def test_branch_on_engagement_with_an_earlier_send(landing: Path) -> None:
    j = journey(
        [
            send("offer"),
            {"name": "opened", "type": "wait", "until_event": "open", "of_step": "offer",
             "timeout_hours": 72, "on_timeout": "discount", "next": "features"},
            send("discount", SMS),
            send("features", PUSH, wait_minutes=7 * 1440),
        ]
    )  # fmt: skip
    run = Harness(j, landing).person("ann").person("bob").enters("ann", h()).enters("bob", h())
    run.run(h())
    entry_of = {d.person_id: d.entry_id for d in run.sent}
    run.engages(send_key("j", "offer", "ann", entry_of["ann"]), "open", h(30))
    # Bob opened some other message: not this send.
    run.engages(send_key("j", "other", "bob", entry_of["bob"]), "open", h(30))
    run.run(h(80))
    assert run.sends_to("ann") == [("offer", h())]
    assert run.sends_to("bob") == [("offer", h()), ("discount", h(72))]
    run.run(h(7 * 24))
    assert run.sends_to("ann")[-1] == ("features", h(7 * 24))
    assert run.sends_to("bob")[-1] == ("features", h(7 * 24))


def test_branch_on_profile_columns(landing: Path) -> None:
    j = journey(
        [
            {"name": "value", "type": "branch", "otherwise": "one_email", "branches": [
                {"when": "churn_risk_score >= 60 and revenue >= 100", "next": "at_risk"},
                {"when": "rfm_segment in ('champions', 'loyal')", "next": "loyal"}]},
            send("at_risk", next="end"),
            send("loyal", next="end"),
            send("one_email"),
            {"name": "end", "type": "exit"},
        ]
    )  # fmt: skip
    run = Harness(j, landing)
    run.person("risky", churn_risk_score=70, revenue=250.0, rfm_segment="loyal")
    run.person("fan", churn_risk_score=10, revenue=900.0, rfm_segment="champions")
    run.person("rest", churn_risk_score=90, revenue=5.0).person("nobody")
    for p in ("risky", "fan", "rest", "nobody"):
        run.enters(p, h())
    run.run(h())
    assert run.sends_to("risky") == [("at_risk", h())]  # the first branch that holds wins
    assert run.sends_to("fan") == [("loyal", h())]
    assert run.sends_to("rest") == [("one_email", h())]
    assert run.sends_to("nobody") == [("one_email", h())]  # unknown values: otherwise
    (branched,) = [s for s in run.steps_of("risky") if s[1] == "branched"]
    assert branched[2] == "churn_risk_score >= 60 and revenue >= 100"


def test_a_branch_taken_stays_taken(landing: Path) -> None:
    j = journey(
        [
            {"name": "wait", "type": "wait", "hours": 1},
            {"name": "value", "type": "branch",
             "branches": [{"when": "revenue >= 100", "next": "big"}]},
            send("small", next="end"),
            send("big", wait_minutes=600),
            {"name": "end", "type": "exit"},
        ]
    )  # fmt: skip
    run = Harness(j, landing).person("ann", revenue=500.0).enters("ann", h())
    run.run(h(2))  # branched to big, which is not due until entry + 10 h
    run.person("ann", revenue=1.0)  # the profile changes meanwhile
    run.run(h(3))
    run.run(h(11))
    assert run.sends_to("ann") == [("big", h(10))]
    assert run.path_of("ann").count("value") == 1


def test_a_rerun_of_the_same_tick_records_nothing_twice(landing: Path) -> None:
    j = journey([{"name": "wait", "type": "wait", "hours": 1}, send("hello")])
    run = Harness(j, landing).person("ann").enters("ann", h())
    first = run.tick(h(2), deliver=False)  # crashed before delivering
    again = run.tick(h(2), deliver=False)
    assert first.transitions == 2 and again.transitions == 0  # entered, waited; then nothing
    assert [d.step for d in again.due] == ["hello"]  # resumed, not re-decided
    run.run(h(2))
    assert run.sends_to("ann") == [("hello", h(1))]
    assert run.path_of("ann") == ["wait", "hello", COMPLETED]


def test_split_paths_are_stable_and_keep_their_shares(landing: Path) -> None:
    j = journey(
        [
            {"name": "test", "type": "split", "paths": [
                {"name": "a", "percent": 30, "next": "email_a"},
                {"name": "b", "percent": 70, "next": "email_b"}]},
            send("email_a", next="end"),
            send("email_b"),
            {"name": "end", "type": "exit"},
        ]
    )  # fmt: skip
    run = Harness(j, landing)
    people = [f"p{i}" for i in range(2000)]
    for p in people:
        run.person(p).enters(p, h())
    run.run(h())
    a = {d.person_id for d in run.sent if d.step == "email_a"}
    # 30 % of 2,000: within four standard deviations (sqrt(2000 * .3 * .7) = 20.5).
    assert abs(len(a) - 600) < 82
    assert len(run.sent) == 2000
    # The same people on a rebuild: a hash of journey, node and person, not a draw.
    again = Harness(j, landing / "again")
    for p in people:
        again.person(p).enters(p, h())
    again.run(h())
    assert {d.person_id for d in again.sent if d.step == "email_a"} == a
    (split,) = [s for s in run.steps_of(sorted(a)[0]) if s[1] == "split"]
    assert split[2] == "a"


def test_holdout_is_recorded_and_stable(landing: Path) -> None:
    j = journey([send("hello")], holdout_percent=10)
    run = Harness(j, landing)
    for i in range(2000):
        run.person(f"p{i}").enters(f"p{i}", h())
    result = run.tick(h())
    held = {d.person_id for d in result.due if d.arm == "holdout"}
    assert abs(len(held) - 200) < 4 * (2000 * 0.1 * 0.9) ** 0.5
    import hashlib

    expected = {
        f"p{i}"
        for i in range(2000)
        if int(hashlib.md5(f"j:p{i}".encode()).hexdigest()[:8], 16) % 10000 < 1000
    }
    assert held == expected  # the same formula as macros/hash_bucket.sql


def test_goals_convert_within_their_window_and_exit_when_ends_it(landing: Path) -> None:
    j = journey(
        [{"name": "wait", "type": "wait", "days": 3}, send("hello")],
        goals=[{"event": "purchase_completed", "within_hours": 24}],
        exit_on=["purchase_completed"],  # a goal that is an exit event too converts
        exit_when="email_consent = 'unsubscribed'",
    )
    run = Harness(j, landing).person("ann").person("bob").person("cat", email_consent="subscribed")
    for p in ("ann", "bob", "cat"):
        run.enters(p, h())
    run.event("ann", "purchase_completed", h(5))
    run.event("bob", "purchase_completed", h(30))  # outside the window: not a conversion
    run.run(h(6))
    assert run.steps_of("ann")[-1] == (CONVERTED, "converted", "purchase_completed", h(5))
    run.person("cat", email_consent="unsubscribed")
    run.run(h(31))
    assert run.steps_of("bob")[-1] == (EXITED, "exited", "purchase_completed", h(30))
    assert run.steps_of("cat")[-1][:3] == (EXITED, "exited", "exit_when: email_consent = "
                                            "'unsubscribed'")  # fmt: skip
    run.run(h(80))
    assert run.sent == []


def test_an_entry_follows_its_person_through_a_merge(landing: Path) -> None:
    # Two shoppers enter anonymously, then log in: identity resolution merges each anonymous
    # person into their account. Their entries go on as the account's.
    j = journey(
        [send("cart_reminder"), send("push_nudge", PUSH, wait_minutes=1440)],
        exit_on=["purchase_completed"],
    )
    run = Harness(j, landing).person("anon_a").person("anon_b").person("ann").person("bob")
    run.enters("anon_a", h(), "cart_1").enters("anon_b", h(), "cart_2")
    run.run(h(0, 1))
    assert run.sends_to("anon_a") == [("cart_reminder", h())]
    for alias, person in (("anon_a", "ann"), ("anon_b", "bob")):
        run.merged(alias, person)
        del run.profiles[alias]
    run.event("bob", "purchase_completed", h(5))  # bought, logged in as himself
    run.enters("ann", h(6), "cart_3")  # Ann updates the cart again, under her own id
    run.run(h(6))
    run.run(h(24, 30))
    # Ann's first entry goes on as hers: the push under her id, her second cart refused as a
    # second entry at once, and the reminder never sent again under the new id.
    assert run.sends_to("ann") == [("push_nudge", h(24))]
    steps = run.steps_of("ann")  # what was recorded under her id: after the merge
    assert [s[:2] for s in steps] == [(COMPLETED, "sent"), (NOT_ENTERED, "not entered")]
    assert steps[1][2] == "already in the journey (max_concurrent 1)"
    # Bob's purchase, recorded under his account, ends the entry he began anonymously.
    assert run.steps_of("bob") == [(EXITED, "exited", "purchase_completed", h(5))]
    assert run.sends_to("anon_b") == [("cart_reminder", h())] and run.sends_to("bob") == []


def test_a_split_person_keeps_entries_where_the_old_id_lives_on(landing: Path) -> None:
    j = journey([send("hello"), send("again", wait_minutes=60)])
    run = Harness(j, landing).person("pat").person("kim").person("lee")
    run.enters("pat", h(), "e1").enters("kim", h(), "e2")
    run.run(h())
    run.merged("pat", "pat", "lee")  # pat's identifiers split: some now belong to lee
    # kim no longer exists: the holder it went on as (is_primary, named first) takes it
    run.merged("kim", "lee", "max")
    del run.profiles["kim"]
    run.run(h(2))
    assert run.sends_to("pat") == [("hello", h()), ("again", h(1))]
    assert run.sends_to("lee") == [("again", h(1))] and run.sends_to("max") == []


def test_an_open_of_a_send_made_before_a_merge_still_counts(landing: Path) -> None:
    j = journey([
        send("offer"),
        {"name": "opened", "type": "wait", "until_event": "open", "of_step": "offer",
         "timeout_hours": 72, "on_timeout": "discount", "next": "features"},
        send("discount", SMS),
        send("features", PUSH, wait_minutes=7 * 1440),
    ])  # fmt: skip
    run = Harness(j, landing).person("anon").person("ann").enters("anon", h(), "e1")
    run.run(h())
    # The provider reports the open under the key the email went out with: the old id's.
    run.engages(send_key("j", "offer", "anon", "e1"), "open", h(30))
    run.merged("anon", "ann")
    del run.profiles["anon"]
    run.run(h(80))
    assert run.sends_to("ann") == []  # opened: no discount; the features push is not due yet
    assert run.steps_of("ann")[0][:3] == ("features", "event", "open on offer")


def test_an_entry_begun_under_its_former_id_goes_on(landing: Path) -> None:
    # Entries begun before entry ids stopped naming the person keep their id: the audience
    # names it as the episode's former id; the entry is neither ended nor begun again.
    j = journey([send("hello"), send("again", wait_minutes=60)])
    run = Harness(j, landing).person("ann").enters("ann", h(), "j:ann:ev1")
    run.run(h())
    run.audience[0].update(entry_id="j:ev1", former_entry_id="j:ann:ev1")
    run.run(h(2))
    assert run.path_of("ann") == ["hello", "again", COMPLETED]
    assert run.sends_to("ann") == [("hello", h()), ("again", h(1))]


@pytest.mark.parametrize(
    ("holders", "now_at", "goes_on_as"),
    [
        (("ann",), "ann", "ann"),  # anon merges into ann
        # a split: anon lives on (the entry stays anon's), the episode's event is ann's now
        (("anon", "ann"), "ann", "anon"),
        # a split of an id gone: the episode's event at the second holder, the entry with the
        # first holder by id, as the tick follows every entry of a gone id
        (("aaa", "zed"), "zed", "aaa"),
    ],
)
def test_an_entry_begun_under_its_former_id_follows_a_later_merge(
    landing: Path, holders: tuple[str, ...], now_at: str, goes_on_as: str
) -> None:
    # Begun before the upgrade under the former id, which named the person then (anon); anon's
    # identifiers move on afterwards, and the audience names the former id with the person the
    # episode's event belongs to now. The entry is still the one begun: not ended, not begun
    # again, its first step not sent twice.
    def former(person: str) -> str:
        return hashlib.md5(f"j:{person}:ev1".encode()).hexdigest()

    j = journey([send("hello"), send("again", wait_minutes=60)])
    run = Harness(j, landing).person("anon").enters("anon", h(), former("anon"))
    for person in holders:
        run.person(person)
    run.run(h())
    run.audience[0].update(entry_id="j:ev1", former_entry_id=former("anon"), entry_event_id="ev1")
    run.merged("anon", *holders)
    if "anon" not in holders:
        del run.profiles["anon"]
    # rebuilt over the restitched events
    run.audience[0].update(person_id=now_at, former_entry_id=former(now_at))
    run.run(h(2))
    # recorded under anon, then as whoever it follows; nothing refused or ended
    people = ["anon", *(p for p in holders if p != "anon")]
    assert [n for p in people for n in run.path_of(p)] == ["hello", "again", COMPLETED]
    assert [(s.step, s.person_id) for s in run.sent] == [("hello", "anon"), ("again", goes_on_as)]


@pytest.mark.parametrize("membership", [False, True])
def test_two_people_in_a_journey_who_merge_get_each_step_once(
    landing: Path, membership: bool
) -> None:
    j = journey(
        [send("hello"), send("again", wait_minutes=60)],
        entry={"membership": True} if membership else {"event": "cart_updated"},
    )
    run = Harness(j, landing).person("anon").person("ann")
    run.enters("anon", h(), "e1").enters("ann", h(), "e2")
    run.run(h())
    run.merged("anon", "ann")
    del run.profiles["anon"]
    if not membership:
        # dbt's event audience: the merged person's carts are one episode, the first one's
        run.withdraws("e2")
    run.run(h(2))
    assert run.sends_to("ann") == [("hello", h()), ("again", h(1))]
    why = (
        "merged: the person is in the journey already"
        if membership
        else ("no longer in the audience")
    )
    assert (EXITED, "exited", why) in [step[:3] for step in run.steps_of("ann")]


@pytest.mark.parametrize(
    "reentry, second_entry_path",
    [
        ({"allow": "never"}, [NOT_ENTERED]),
        ({"allow": "after_exit"}, ["hello", COMPLETED]),
        ({"allow": "after_cooldown", "cooldown_hours": 48}, [NOT_ENTERED]),
    ],
)
def test_reentry_policies(
    landing: Path, reentry: dict[str, Any], second_entry_path: list[str]
) -> None:
    j = journey([send("hello")], reentry=reentry)
    run = Harness(j, landing).person("ann").enters("ann", h(), "first")
    run.run(h())
    run.enters("ann", h(24), "second")
    run.run(h(24))
    assert run.path_of("ann") == ["hello", COMPLETED, *second_entry_path]


def test_one_open_entry_at_a_time_by_default(landing: Path) -> None:
    j = journey([{"name": "wait", "type": "wait", "days": 2}, send("hello")])
    run = Harness(j, landing).person("ann").enters("ann", h(), "first")
    run.enters("ann", h(1), "second")
    run.run(h(2))
    steps = run.steps_of("ann")
    assert [s[0] for s in steps] == ["wait", NOT_ENTERED]
    assert steps[1][2] == "already in the journey (max_concurrent 1)"


def test_membership_and_schedule_entries(landing: Path) -> None:
    member = Journey.from_meta(
        "audience_m",
        {"name": "m", "entry": {"membership": True}, "steps": [send("hello")]},
        profile_columns=PROFILE_COLUMNS,
    )
    run = Harness(member, landing / "m").person("ann").enters("ann", h())
    run.run(h(1))
    run.run(h(2))  # still a member: not a new appearance
    assert run.sends_to("ann") == [("hello", h(1))]
    run.leaves_audience("ann").run(h(3))
    run.enters("ann", h(4)).run(h(4))  # back: a new appearance, a new entry
    assert run.sends_to("ann") == [("hello", h(1)), ("hello", h(4))]
    assert run.path_of("ann") == ["hello", COMPLETED, LEFT_AUDIENCE, "hello", COMPLETED]
    scheduled = Journey.from_meta(
        "audience_s",
        {"name": "s", "entry": {"schedule": {"daily_at": "09:00"}},
         "reentry": {"allow": "after_cooldown", "cooldown_hours": 24 * 30},
         "steps": [send("hello")]},
        profile_columns=PROFILE_COLUMNS,
    )  # fmt: skip
    run = Harness(scheduled, landing / "s").person("ann").enters("ann", h())
    run.run(h(-1))  # 08:00: today's 09:00 has not come; yesterday's did, and Ann was a member
    run.run(h(5))
    run.run(h(24 + 5))  # the next day, within the cool-down
    assert run.sends_to("ann") == [("hello", h(-24))]


@pytest.mark.parametrize(
    "steps, error",
    [
        ([{"name": "a", "type": "teleport"}], r"'teleport' is not one of"),
        ([send("a", next="nowhere")], r"step 'a': goes on to 'nowhere', which is not a step"),
        (
            [{"name": "a", "type": "branch", "branches": [{"when": "revenue > 1", "next": "a"}]},
             send("b")],
            r"the steps a -> a make a cycle without a wait",
        ),
        (
            [{"name": "a", "type": "branch",
              "branches": [{"when": "revenue > (select 1)", "next": "b"}]}, send("b")],
            r"step 'a': condition 'revenue > \(select 1\)'",
        ),
        (
            [{"name": "a", "type": "branch",
              "branches": [{"when": "salary > 1", "next": "b"}]}, send("b")],
            r"unknown column 'salary'",
        ),
        (
            [send("a", channels=["email", "sms"])],
            r"step 'a': no template for channel\(s\) \['sms'\]",
        ),
        (
            [{"name": "a", "type": "split", "paths": [{"name": "x", "percent": 60, "next": "b"},
                                                      {"name": "y", "percent": 30, "next": "b"}]},
             send("b")],
            r"split percents add up to 90, not 100",
        ),
        (
            [{"name": "a", "type": "wait", "until_event": "open", "of_step": "b",
              "timeout_hours": 1, "on_timeout": "b"}, {"name": "b", "type": "exit"}],
            r"of_step 'b' is not a send step",
        ),
        (
            [{"name": "a", "type": "wait", "until_event": "email_opened", "of_step": "b",
              "timeout_hours": 1, "on_timeout": "b"}, send("b")],
            r"'email_opened' is not one of \['delivered', 'open', 'click'\]",
        ),
        (
            [{"name": "a", "type": "wait", "until_time": "09:00",
              "default_timezone": "Mars/Olympus"}, send("b")],
            r"default_timezone 'Mars/Olympus' is not an IANA time zone",
        ),
        (
            [{"name": "a", "type": "wait", "hours": float("inf")}, send("b")],
            r"steps\[0\]\.hours must be a finite number",
        ),
        (
            [{"name": "a", "type": "wait", "hours": 1, "on_timeout": "b"}, send("b")],
            r"'until_event' is a dependency of 'on_timeout'",
        ),
        (
            [{"name": "a", "type": "wait", "hours": 1e-12}, send("b")],
            r"step 'a': hours must come to between one minute and a hundred years",
        ),
        (
            [{"name": "holdout", "type": "split",
              "paths": [{"name": "x", "percent": 50, "next": "b"},
                        {"name": "y", "percent": 50, "next": "b"}]},
             send("b")],
            r"a step cannot be named 'holdout'",
        ),
    ],
)  # fmt: skip
def test_graph_declarations_are_checked(steps: list[dict[str, Any]], error: str) -> None:
    with pytest.raises(JourneyDefinitionError, match=error):
        journey(steps)


@pytest.mark.parametrize(
    "quiet, error",
    [
        ({"start": "9pm", "end": "08:00"}, r"'9pm' does not match"),
        ({"start": "21:00", "end": "21:00"}, r"quiet_hours start and end are the same"),
        (
            {"start": "21:00", "end": "08:00", "default_timezone": "Mars/Olympus"},
            r"quiet_hours default_timezone 'Mars/Olympus' is not an IANA time zone",
        ),
        ({"start": "21:00", "end": "08:00", "channels": ["fax"]}, r"'fax' is not one of"),
    ],
)
def test_quiet_hours_declarations_are_checked(quiet: dict[str, Any], error: str) -> None:
    with pytest.raises(JourneyDefinitionError, match=error):
        journey([send("a")], quiet_hours=quiet)
    declared = journey([send("a")], quiet_hours={"start": "21:00", "end": "08:00"})
    assert declared.quiet_hours is not None
    assert declared.quiet_hours.channels == ("email", "sms", "push")
    assert "quiet    21:00-08:00 their time (else UTC)" in declared.outline()


LOOP = [
    send("hello"),
    {"name": "for_app", "type": "wait", "until_event": "app_opened", "timeout_hours": 6,
     "on_timeout": "again"},
    {"name": "again", "type": "branch", "otherwise": "nudge",
     "branches": [{"when": "revenue >= 100", "next": "hello"}]},
    send("nudge", PUSH, next="for_app"),
]  # fmt: skip


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    clocks=st.lists(st.integers(0, 120), min_size=1, max_size=6),
    outcome=st.sampled_from(["sent", "skipped", "failed", None]),
    revenue=st.sampled_from([5.0, 500.0]),
    opens=st.lists(st.integers(0, 120), max_size=3),
)
def test_no_entry_is_ever_sent_the_same_step_twice(
    clocks: list[int], outcome: str | None, revenue: float, opens: list[int]
) -> None:
    # A journey that loops back to its sends, through a wait for an event: runs at any clocks,
    # events at any times, any outcome of the first send.
    with tempfile.TemporaryDirectory() as folder:
        run = Harness(journey(LOOP), Path(folder)).person("ann", revenue=revenue)
        run.enters("ann", h()).enters("ann", h(50), "ann-later")
        for o in opens:
            run.event("ann", "app_opened", h(o))
        run.outcome = {send_key("j", "hello", "ann", "ann@11020900"): outcome}
        for clock in sorted(clocks):
            run.run(h(clock))
        keys = [(d.entry_id, d.step) for d in run.sent]
        assert len(keys) == len(set(keys))
        # and the log agrees: a send step is passed with its outcome once per entry, then only
        # as `passed`; an event takes an entry on at most once.
        decided = [(r[0], r[2]) for r in run.reasons_of("ann") if r[1] in ("sent", "skipped",
                                                                            "failed")]  # fmt: skip
        assert len(decided) == len(set(decided))
        events = [r for r in run.steps_of("ann") if r[1] == "event"]
        assert len({e[3] for e in events}) == len(events)


@settings(max_examples=10, deadline=None)
@given(holdout=st.floats(1, 50), split=st.floats(5, 95))
def test_split_and_holdout_shares_stay_within_their_bounds(holdout: float, split: float) -> None:
    holdout, split = round(holdout, 2), round(split, 2)
    j = journey(
        [{"name": "ab", "type": "split", "paths": [
            {"name": "a", "percent": split, "next": "email_a"},
            {"name": "b", "percent": round(100 - split, 2), "next": "email_b"}]},
         send("email_a", next="end"), send("email_b"), {"name": "end", "type": "exit"}],
        holdout_percent=holdout,
    )  # fmt: skip
    n = 1500
    with tempfile.TemporaryDirectory() as folder:
        run = Harness(j, Path(folder))
        for i in range(n):
            run.person(f"p{i}").enters(f"p{i}", h())
        due = run.tick(h()).due
    held = sum(d.arm == "holdout" for d in due)
    in_a = sum(d.step == "email_a" for d in due)

    def within(observed: int, percent: float) -> bool:
        p = percent / 100
        return abs(observed - n * p) <= 4 * (n * p * (1 - p)) ** 0.5 + 1

    assert len(due) == n
    assert within(held, holdout) and within(in_a, split)


def test_a_late_tick_judges_reentry_on_when_entries_ended(landing: Path) -> None:
    # One tick sees two cart episodes: the first ended with a purchase before the second began.
    j = journey([send("hello", wait_minutes=120)], exit_on=["purchase_completed"])
    run = Harness(j, landing).person("ann")
    run.enters("ann", h(), "first", exited_at=h(1)).enters("ann", h(3), "second")
    run.event("ann", "purchase_completed", h(1))
    run.run(h(4))
    assert run.path_of("ann") == ["hello", EXITED, "hello"]
    # Overlapping episodes still respect max_concurrent.
    run2 = Harness(j, landing / "overlap").person("bob")
    run2.enters("bob", h(), "one").enters("bob", h(1), "two")
    run2.run(h(4))
    assert run2.path_of("bob") == ["hello", COMPLETED, NOT_ENTERED]


def test_a_goal_after_the_last_step_still_converts(landing: Path) -> None:
    j = journey([send("hello")], goals=[{"event": "purchase_completed", "within_hours": 72}])
    run = Harness(j, landing).person("ann").enters("ann", h())
    run.run(h())
    assert run.path_of("ann") == ["hello", COMPLETED]
    run.event("ann", "purchase_completed", h(5)).run(h(6))
    assert run.steps_of("ann")[-1] == (CONVERTED, "converted", "purchase_completed", h(5))


def test_an_entry_the_audience_withdraws_exits(landing: Path) -> None:
    # The `unless` event landed late: the audience drops the entry, and it leaves the journey.
    j = journey([{"name": "wait", "type": "wait", "hours": 24}, send("hello")])
    run = Harness(j, landing).person("ann").enters("ann", h(), "e1")
    run.run(h(1))
    run.withdraws("e1").run(h(2))
    run.run(h(30))
    assert run.sent == []
    assert run.steps_of("ann")[-1][:3] == (EXITED, "exited", "no longer in the audience")


def test_conditions_read_the_ticks_clock_not_the_wall(landing: Path) -> None:
    j = journey(
        [{"name": "when", "type": "branch", "otherwise": "early",
          "branches": [{"when": "current_date >= '2026-11-10'", "next": "late"}]},
         send("early", next="end"), send("late"), {"name": "end", "type": "exit"}]
    )  # fmt: skip
    run = Harness(j, landing).person("ann").enters("ann", h())
    run.run(h())  # 2026-11-02, whatever today is
    assert run.sends_to("ann") == [("early", h())]


def test_an_event_takes_a_looping_entry_on_once(landing: Path) -> None:
    j = journey(
        [{"name": "for_app", "type": "wait", "until_event": "app_opened", "timeout_hours": 24,
          "on_timeout": "bye"},
         {"name": "back", "type": "branch", "otherwise": "for_app",
          "branches": [{"when": "revenue > 1000", "next": "bye"}]},
         {"name": "bye", "type": "exit"}]
    )  # fmt: skip
    run = Harness(j, landing).person("ann").enters("ann", h()).event("ann", "app_opened", h(1))
    run.run(h(2))
    run.run(h(3))
    assert run.path_of("ann") == ["for_app", "back", "for_app"]  # waits for the next one


def test_a_journey_runs_one_at_a_time(tmp_path: Path) -> None:
    # run_journey holds this lock while it decides and delivers: another process waits.
    held = transitions.journey_lock(tmp_path, "j")
    path = tmp_path / "journeys" / "locks" / "j.lock"
    try_lock = (
        "import fcntl, sys; fcntl.flock(open(sys.argv[1], 'ab'), fcntl.LOCK_EX | fcntl.LOCK_NB)"
    )
    assert subprocess.run([sys.executable, "-c", try_lock, str(path)]).returncode != 0
    held.close()
    assert subprocess.run([sys.executable, "-c", try_lock, str(path)]).returncode == 0


def test_the_positions_model_knows_every_way_an_entry_ends() -> None:
    sql = (PROJECT_DIR / "models" / "metrics" / "dim_journey_positions.sql").read_text()
    assert all(f"'{final}'" in sql for final in FINAL)


def test_an_earlier_episode_landing_late_is_judged_against_the_running_one(landing: Path) -> None:
    # E2 is running when E1, an hour earlier, lands: at most one open entry, so E1 stays out.
    j = journey([{"name": "wait", "type": "wait", "hours": 5}, send("hello")])
    run = Harness(j, landing).person("ann").enters("ann", h(2), "e2")
    run.run(h(3))
    run.enters("ann", h(1), "e1").run(h(4))
    assert [s[:3] for s in run.steps_of("ann")] == [
        (NOT_ENTERED, "not entered", "already in the journey (max_concurrent 1)"),
        ("wait", "entered", None),
    ]


def test_a_refused_candidate_does_not_hold_back_the_next(landing: Path) -> None:
    # Cool-down 24 h, episodes at 0 h, 12 h and 30 h seen by one late tick: 0 h and 30 h enter.
    # (Two may be open at once here: within one tick the first has not moved on yet.)
    j = journey(
        [send("hello")],
        reentry={"allow": "after_cooldown", "cooldown_hours": 24, "max_concurrent": 2},
    )
    run = Harness(j, landing).person("ann")
    for hours in (0, 12, 30):
        run.enters("ann", h(hours), f"e{hours}")
    run.run(h(31))
    assert run.sends_to("ann") == [("hello", h(0)), ("hello", h(30))]


def test_a_goal_converts_one_entry_and_does_not_move_when_the_last_ended(landing: Path) -> None:
    # A completed at 0 h; B began at 2 h; the purchase at 3 h is B's conversion, not A's, and a
    # late tick admits B as an on-time one would.
    j = journey(
        [send("hello")],
        goals=[{"event": "purchase_completed", "within_hours": 72}],
        reentry={"allow": "after_exit"},
    )
    run = Harness(j, landing).person("ann").enters("ann", h(0), "a")
    run.run(h(0))
    run.enters("ann", h(2), "b").event("ann", "purchase_completed", h(3))
    run.run(h(4))
    paths = run.path_of("ann")
    assert paths == ["hello", COMPLETED, "hello", CONVERTED]


def test_an_open_settled_later_still_counts_for_an_engagement_wait(landing: Path) -> None:
    # The email's outcome was unknown and settled (found sent) at 5 h; it was opened at 1 h.
    j = journey(
        [send("offer"),
         {"name": "opened", "type": "wait", "until_event": "open", "of_step": "offer",
          "timeout_hours": 48, "on_timeout": "discount", "next": "end"},
         send("discount", SMS), {"name": "end", "type": "exit"}]
    )  # fmt: skip
    run = Harness(j, landing).person("ann").enters("ann", h(), "e1")
    key = send_key("j", "offer", "ann", "e1")
    run.outcome[key] = None  # not known at first
    run.run(h())
    run.engages(key, "open", h(1))
    run.decided[key] = ("sent", h(5), None)  # the lookup found it
    run.run(h(5))
    run.run(h(60))
    assert run.path_of("ann") == ["offer", "opened", "end", EXITED]


def test_a_member_who_exits_and_leaves_in_one_tick_can_come_back(landing: Path) -> None:
    member = Journey.from_meta(
        "audience_m",
        {"name": "m", "entry": {"membership": True}, "exit_on": ["bought"],
         "steps": [{"name": "pause", "type": "wait", "hours": 10}, send("hello")]},
        profile_columns=PROFILE_COLUMNS,
    )  # fmt: skip
    run = Harness(member, landing).person("ann").enters("ann", h())
    run.run(h(1))
    run.event("ann", "bought", h(2))
    run.leaves_audience("ann").tick(h(3))  # the exit and the leaving, noticed by one tick
    assert run.path_of("ann") == ["pause", EXITED, LEFT_AUDIENCE]
    run.enters("ann", h(4)).tick(h(4))
    assert run.path_of("ann") == ["pause", EXITED, LEFT_AUDIENCE, "pause"]


def test_a_transitions_file_landed_twice_counts_once(landing: Path) -> None:
    run = Harness(journey([{"name": "pause", "type": "wait", "hours": 1}, send("hello")]), landing)
    run.person("ann").enters("ann", h())
    run.tick(h())
    (landed,) = [f for f in transitions.folder(landing).iterdir() if f.name.startswith("tick-")]
    (landed.parent / f"tick-restored-{landed.name}").write_bytes(landed.read_bytes())
    result = run.tick(h(2), deliver=False)
    assert [(d.step, d.person_id) for d in result.due] == [("hello", "ann")]
    assert result.transitions == 1  # on to the send step, once


@pytest.mark.parametrize(
    ("on_cap", "path"),
    [
        ("skip", ["cart_reminder", "push_nudge", COMPLETED]),
        ("exit", ["cart_reminder", EXITED]),
    ],
)
def test_a_step_the_cap_held_back_goes_on_or_leaves_by_policy(
    landing: Path, on_cap: str, path: list[str]
) -> None:
    j = journey(
        [send("cart_reminder"), send("push_nudge", PUSH, wait_minutes=60)],
        frequency_cap={"messages": 1, "per_hours": 24, "on_cap": on_cap},
    )
    run = Harness(j, landing).person("ann").enters("ann", h())
    key = send_key("j", "cart_reminder", "ann", "ann@" + f"{h():%m%d%H%M}")
    run.outcome[key] = "skipped:capped"  # delivery found the cap reached
    run.run(h(0, 1))
    run.run(h(2))
    assert run.path_of("ann") == path
    if on_cap == "exit":
        assert run.steps_of("ann")[-1] == (EXITED, "exited", f"capped: {key}", h(0, 1))
        assert run.sends_to("ann") == []
    else:
        assert run.sends_to("ann") == [("push_nudge", h(1))]


def test_each_tick_records_the_journey_version(landing: Path) -> None:
    steps = [send("a"), send("b", wait_minutes=60)]
    first = journey(steps)
    edited = journey(steps[:1] + [send("b", wait_minutes=90)])
    declared = journey(steps, version="2026-11")
    # a hash of the declaration, so any edit starts a new version; a declared one wins. Each
    # tick records its own; an entry is of the version it entered under.
    assert first.version.startswith("h") and first.version != edited.version
    assert declared.version == "2026-11"
    Harness(first, landing).person("ann").enters("ann", h()).run(h(0, 1))
    Harness(declared, landing).person("bob").enters("bob", h(1)).run(h(1, 1))
    versions = duckdb.sql(
        f"select person_id, list(journey_version) from read_parquet("
        f"'{transitions.glob(landing)}', union_by_name = true) where seq = 0 "
        "group by 1 order by 1"
    ).fetchall()
    assert versions == [("ann", [first.version]), ("bob", ["2026-11"])]


def test_a_placeholder_from_before_a_column_existed_is_rewritten(landing: Path) -> None:
    folder = transitions.folder(landing)
    folder.mkdir(parents=True)
    old = ", ".join(
        f"null::{k} as {n}" for n, k in transitions.COLUMNS.items() if n != "journey_version"
    )
    duckdb.sql(f"copy (select {old} limit 0) to '{folder / transitions.PLACEHOLDER}'")
    transitions.ensure_folder(landing)
    described = duckdb.sql(
        f"describe select * from '{folder / transitions.PLACEHOLDER}'"
    ).fetchall()
    assert [row[0] for row in described] == list(transitions.COLUMNS)
