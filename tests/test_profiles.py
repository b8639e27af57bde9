"""The unified profile on hand-made people: RFM, consent by topic, engagement, churn risk."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import duckdb
import pytest
import yaml

from activations import transitions
from switchyard import events, landing
from switchyard.settings import PROJECT_DIR, Paths
from tests.dbt_helpers import dbt_build, query
from tests.scenario import T0, Scenario

IDENTITY = yaml.safe_load((PROJECT_DIR / "dbt_project.yml").read_text())["vars"]["identity"]

DAY = timedelta(days=1)


def person_id(paths: Paths, user_id: str) -> str:
    rows = query(
        paths, f"select person_id from dim_identities where identifier_key = 'user_id:{user_id}'"
    )
    return str(rows[0]["person_id"])


@pytest.fixture(scope="module")
def profiles(module_paths: Paths) -> Paths:
    paths = module_paths
    s = Scenario(paths.landing)
    # Five buyers from best to worst: many recent orders ... one old order.
    for rank, (orders, last_days_ago) in enumerate([(6, 1), (4, 10), (3, 40), (2, 200), (1, 300)]):
        user = f"buyer{rank}"
        s.person(user, email=f"{user}@example.com", consent=("email",), when=T0 - 400 * DAY)
        for n in range(orders):
            at_ = T0 - (last_days_ago + 30 * n) * DAY
            s.orders.append(
                events.order(f"{user}-o{n}", at_, user_id=user, email=None, total=20.0 * (5 - rank))
            )
    s.track("page_viewed", T0, user_id="buyer0")  # the latest activity: "as of" for the profile
    # Ann: email and push, engages with push more than email; also a newsletter opt-out.
    s.person(
        "ann",
        email="ann@example.com",
        push_token="tok-ann",
        consent=("email", "push"),
        when=T0 - 5 * DAY,
    )
    s.consents.append(
        events.consent(
            "ann",
            "email",
            "unsubscribed",
            T0 - 4 * DAY,
            topic="newsletter",
            source="unsubscribe_link",
        )
    )
    # Gus: last seen 100 days ago, bought 120 days ago, never consented to anything.
    s.person("gus", email="gus@example.com", when=T0 - 120 * DAY)
    s.orders.append(events.order("gus-o1", T0 - 120 * DAY, user_id="gus", email=None, total=10.0))
    s.track("page_viewed", T0 - 100 * DAY, user_id="gus")
    # Pia: a push token FCM has since called dead.
    s.person("pia", push_token="tok-pia-old", consent=("push",), when=T0 - 6 * DAY)
    # Eve: never sent to by Switchyard; her email tool reports her opens and clicks as tracked
    # events, mostly in the 20:00 hour (UTC).
    s.person("eve", email="eve@example.com", when=T0 - 50 * DAY)
    for days_ago, hour, name in ((40, 20, "email_opened"), (30, 20, "email_link_clicked"),
                                 (20, 7, "email_opened"), (10, 20, "email_opened")):  # fmt: skip
        at_ = (T0 - days_ago * DAY).replace(hour=hour, minute=15)
        s.track(name, at_, user_id="eve")
    # Someone who only ever bought as a guest: known by email alone.
    s.orders.append(
        events.order("guest-o1", T0 - 2 * DAY, user_id=None, email="Guest@Example.com", total=15.0)
    )
    s.land()
    dbt_build(paths, "+dim_identities")

    # Ann got an email and two pushes; she opened the email once and clicked both pushes.
    ann = person_id(paths, "ann")
    ledger_rows, feedback = [], []
    for key, channel, sent in (
        ("k1", "email", T0 - 3 * DAY),
        ("k2", "push", T0 - 2 * DAY),
        ("k3", "push", T0 - DAY),
    ):
        ledger_rows.append(
            {
                "send_key": key,
                "journey": "j",
                "step": "s",
                "person_id": ann,
                "entry_id": "e",
                "channel": channel,
                "status": "sent",
                "recorded_at": sent.isoformat(),
            }
        )
    for key, event, when in (
        ("k1", "open", T0 - 3 * DAY),
        ("k2", "click", T0 - 2 * DAY),
        ("k3", "click", T0 - DAY),
    ):
        feedback.append(
            {
                "event_id": f"fb-{key}",
                "send_key": key,
                "provider": "x",
                "channel": None,
                "event": event,
                "occurred_at": events.iso(when),
            }
        )
    feedback.append(
        {
            "event_id": "fb-bad",
            "send_key": "k1",
            "event": "teleported",
            "occurred_at": events.iso(T0),
        }
    )
    ledger_rows.append(
        {
            "send_key": "k4",
            "journey": "j",
            "step": "s",
            "person_id": person_id(paths, "pia"),
            "entry_id": "e",
            "channel": "push",
            "recipient": "tok-pia-old",
            "status": "failed",
            "reason": "dead_push_token",
            "reason_detail": "HTTP 404: NOT_FOUND Requested entity was not found.",
            "recorded_at": (T0 - 5 * DAY).isoformat(),
        }
    )
    landing.write_batch(paths.landing, "ledger", "deliveries", ledger_rows)
    landing.write_batch(paths.landing, "feedback", "events", feedback)
    dbt_build(paths, "+dim_people", "+dim_people_consents", "+fct_rejected_rows")
    return paths


def profile(paths: Paths, user_id: str) -> dict[str, object]:
    (row,) = query(paths, f"select * from dim_people where user_id = '{user_id}'")
    return row


def test_a_push_token_fcm_called_dead_is_not_used_again(profiles: Paths) -> None:
    pia, ann = profile(profiles, "pia"), profile(profiles, "ann")
    assert (pia["push_token"], pia["has_dead_push_token"]) == (None, True)
    assert pia["preferred_channel"] is None  # push was her only channel
    assert (ann["push_token"], ann["has_dead_push_token"]) == ("tok-ann", False)


def test_rfm_ranks_buyers(profiles: Paths) -> None:
    segments = {f"buyer{r}": profile(profiles, f"buyer{r}")["rfm_segment"] for r in range(5)}
    assert segments["buyer0"] == "champions"
    assert segments["buyer4"] == "hibernating"
    best, worst = profile(profiles, "buyer0"), profile(profiles, "buyer4")
    assert (best["order_count"], best["revenue"]) == (6, 600)
    assert best["recency_score"] > worst["recency_score"]
    assert profile(profiles, "ann")["rfm_segment"] == "prospect"


def test_consent_per_channel_and_topic(profiles: Paths) -> None:
    ann = person_id(profiles, "ann")
    rows = query(
        profiles,
        f"select channel, topic, consent_status, consent_source from dim_people_consents "
        f"where person_id = '{ann}' order by 1, 2",
    )
    assert [tuple(r.values()) for r in rows] == [
        ("email", "marketing", "subscribed", "preference_center"),
        ("email", "newsletter", "unsubscribed", "unsubscribe_link"),
        ("push", "marketing", "subscribed", "preference_center"),
    ]
    assert profile(profiles, "ann")["email_consent"] == "subscribed"  # marketing is unaffected


def test_engagement_and_preferred_channel(profiles: Paths) -> None:
    ann = profile(profiles, "ann")
    assert (ann["messages_sent"], ann["opens"], ann["clicks"]) == (3, 1, 2)
    assert ann["last_engaged_channel"] == "push"
    assert ann["preferred_channel"] == "push"  # clicks on push outweigh an email open
    assert (
        profile(profiles, "buyer1")["preferred_channel"] == "email"
    )  # no engagement: consent order
    assert profile(profiles, "gus")["preferred_channel"] is None
    rejected = query(
        profiles,
        "select reject_reason from fct_rejected_rows where source_table = 'feedback.events'",
    )
    assert rejected == [{"reject_reason": "unknown event: teleported"}]


def test_usual_active_hour_is_learned_from_sends_and_tracked_email_engagement(
    profiles: Paths,
) -> None:
    # Ann's opens and clicks of Switchyard's sends all came at T0's hour.
    assert profile(profiles, "ann")["usual_active_hour_utc"] == T0.hour
    eve = profile(profiles, "eve")
    assert eve["usual_active_hour_utc"] == 20
    # Tracked engagement says when, it is not counted as engagement with our sends.
    assert (eve["messages_sent"], eve["opens"], eve["clicks"]) == (0, 0, 0)
    assert profile(profiles, "gus")["usual_active_hour_utc"] is None


def test_churn_risk_is_the_documented_rule(profiles: Paths) -> None:
    gus = profile(profiles, "gus")
    # 50 (seen 100 days ago, capped at 90) + 25 (no order in 90 days) + 10 (no channel) = 85
    assert (gus["days_since_last_seen"], gus["churn_risk_score"], gus["churn_risk"]) == (
        100,
        85,
        "high",
    )
    fresh = profile(profiles, "buyer0")
    assert (fresh["churn_risk_score"], fresh["churn_risk"]) == (0, "low")


def test_guest_buyers_have_a_profile(profiles: Paths) -> None:
    rows = query(
        profiles,
        "select email, order_count, user_id from dim_people where email = 'guest@example.com'",
    )
    assert rows == [{"email": "guest@example.com", "order_count": 1, "user_id": None}]


def land_ledger_line(paths: Paths, **line: object) -> None:
    """One delivery ledger line of step s of entry e of journey j: an email sent, unless
    `line` says otherwise."""
    defaults = {"journey": "j", "step": "s", "entry_id": "e", "status": "sent", "channel": "email"}
    landing.write_batch(paths.landing, "ledger", "deliveries", [{**defaults, **line}])


def record_send_and_entry(paths: Paths, person: str) -> None:
    """A sent email to `person` three days ago that was opened, and a journey entry begun then
    that has not moved since."""
    land_ledger_line(paths, send_key="kz", person_id=person, recorded_at=(T0 - 3 * DAY).isoformat())
    landing.write_batch(
        paths.landing,
        "feedback",
        "events",
        [
            {
                "event_id": "fb-z",
                "send_key": "kz",
                "provider": "x",
                "event": "open",
                "occurred_at": events.iso(T0 - 3 * DAY),
            }
        ],
    )
    con = duckdb.connect()
    con.execute(
        "create table entry as select 'j' as journey, 'e' as entry_id, ? as person_id, 0 as seq, "
        "null as from_node, 'wait' as node, ?::timestamp as reached_at, null as next_at, "
        "?::timestamp as entered_at, 'treatment' as arm, 'entered' as reason, null as detail, "
        "null as properties, 'r' as run_id, ?::timestamp as recorded_at, 'v1' as journey_version",
        [person, T0 - 3 * DAY, T0 - 3 * DAY, T0 - 3 * DAY],
    )
    transitions.append(con, "entry", paths.landing, prefix="test")
    con.close()


FOLLOWED = ("fct_deliveries", "fct_journey_entries", "dim_journey_positions")


def test_messages_sent_before_a_merge_follow_the_person(paths: Paths) -> None:
    s = Scenario(paths.landing)
    s.track("product_viewed", T0 - 10 * DAY, anonymous_id="anon-old")
    s.person("zed", devices=("anon-new",), email="zed@example.com", when=T0 - 5 * DAY)
    s.land()
    dbt_build(paths, "+dim_identities")
    before = person_id(paths, "zed")
    record_send_and_entry(paths, before)
    # a key the step went on from (superseded): not a decision of its own
    land_ledger_line(
        paths,
        send_key="kz-earlier",
        person_id="p-merged-away",
        status="skipped",
        reason="superseded",
        reason_detail="goes on as kz",
        recorded_at=(T0 - 2 * DAY).isoformat(),
    )
    # Zed logs in on the device seen first: his person takes that older id.
    s.person("zed", devices=("anon-old",), when=T0 - DAY)
    s.land()
    dbt_build(paths, "+dim_people", "+fct_journey_step_metrics", *(f"+{m}" for m in FOLLOWED))
    zed = profile(paths, "zed")
    assert zed["person_id"] != before
    assert (zed["messages_sent"], zed["opens"], zed["last_engaged_channel"]) == (1, 1, "email")
    moved = {"person_id": before, "current_person_id": zed["person_id"]}
    for model in FOLLOWED:
        key = "where send_key = 'kz'" if model == "fct_deliveries" else ""
        assert query(paths, f"select person_id, current_person_id from {model} {key}") == [moved]
    step = query(paths, "select decisions, sent, skipped from fct_journey_step_metrics")
    assert step == [{"decisions": 1, "sent": 1, "skipped": 0}]


def test_what_a_split_id_recorded_stays_with_it_and_counts_for_its_new_holder(
    paths: Paths,
) -> None:
    limit_two = {"max_anchors_per_identifier": {"default": 2}}
    s = Scenario(paths.landing)
    # A family laptop, first seen when mum logs in on it: it names mum's person.
    s.person("mum", devices=("laptop",), email="mum@example.com", when=T0 - 5 * DAY)
    s.person("dad", devices=("laptop",), when=T0 - 5 * DAY + timedelta(minutes=1))
    s.land()
    identity = {"identity": {**IDENTITY, **limit_two}}
    dbt_build(paths, "+dim_identities", dbt_vars=identity)
    before = person_id(paths, "mum")
    record_send_and_entry(paths, before)
    # A third person on the laptop makes it shared: mum's person loses it and gets a new id,
    # while the old id lives on with the laptop.
    s.person("kid", devices=("laptop",), when=T0 - DAY)
    s.land()
    dbt_build(paths, "+dim_people", *(f"+{m}" for m in FOLLOWED), dbt_vars=identity)
    mum = profile(paths, "mum")
    assert mum["person_id"] != before
    (split,) = query(paths, "select previous_person_id, change_type from fct_person_merges")
    assert split == {"previous_person_id": before, "change_type": "split"}
    # The metrics keep the old id: it still names someone, so it is no one else's today.
    stays = {"person_id": before, "current_person_id": before}
    for model in FOLLOWED:
        assert query(paths, f"select person_id, current_person_id from {model}") == [stays]
    # The send counts for both people who hold what the old id held.
    (old,) = query(
        paths, f"select messages_sent, opens from dim_people where person_id = '{before}'"
    )
    assert old == {"messages_sent": 1, "opens": 1}
    assert (mum["messages_sent"], mum["opens"]) == (1, 1)
    # A send under the old id after the split is its own only.
    after_split = datetime.now(UTC).replace(tzinfo=None) + timedelta(seconds=1)
    land_ledger_line(
        paths,
        entry_id="e2",
        send_key="kz2",
        person_id=before,
        channel="sms",
        recorded_at=after_split.isoformat(),
    )
    dbt_build(paths, "+dim_people", dbt_vars=identity)
    sent = query(paths, "select person_id, messages_sent from dim_people where messages_sent > 0")
    assert {r["person_id"]: r["messages_sent"] for r in sent} == {before: 2, mum["person_id"]: 1}
