"""dbt models on a hand-made fixture: profiles and audience membership, row by row."""

from __future__ import annotations

from datetime import timedelta

import pytest

from switchyard import events
from switchyard.settings import Paths
from tests.dbt_helpers import dbt_build, query
from tests.scenario import T0, Scenario, at


@pytest.fixture(scope="module")
def built(module_paths: Paths) -> Paths:
    paths = module_paths
    s = Scenario(paths.landing)
    # Ada browses anonymously on her phone, then logs in on phone and laptop.
    s.events.append(events.page("Home", T0 - timedelta(days=2), anonymous_id="anon-ada-phone"))
    s.person(
        "ada",
        devices=("anon-ada-phone", "anon-ada-laptop"),
        email="  Ada@Example.COM ",
        phone="+1 (415) 555-0101",
        first_name="Ada",
        consent=("email",),
    )
    s.cart(at(0), anonymous_id="anon-ada-phone", sku="sku-mug", quantity=2)  # logged out
    # Bob buys within the hour: never enters.
    s.person("bob", email="bob@example.com", consent=("email",))
    s.cart(at(0), user_id="bob").purchase(at(30), user_id="bob")
    s.orders.append(events.order("ord-bob", at(30), user_id="bob", email=None, total=24.5))
    # Cy buys after three hours: enters, then exits.
    s.person("cy", email="cy@example.com")
    s.cart(at(0), user_id="cy").purchase(at(hours=3), user_id="cy")
    # Dee updates her cart twice (one episode), buys, and later starts a new cart.
    s.person("dee", phone="555-0100", consent=("sms",))
    s.cart(at(0), user_id="dee").cart(at(10), user_id="dee", quantity=3)
    s.purchase(at(hours=2), user_id="dee").cart(at(hours=5), user_id="dee")
    # Eve never identifies.
    s.cart(at(0), anonymous_id="anon-eve")
    # Broken rows: no ids at all; a consent for a channel we do not have.
    s.track("product_viewed", at(1))
    s.consents.append(events.consent("ada", "fax", "subscribed", at(0)))
    # Three broken lines in the shop's export, all Bob's: no id, a date typed by hand, no total.
    bob = {"user_id": "bob", "email": "bob@example.com", "currency": "usd", "status": "completed"}
    s.orders += [
        {**bob, "order_id": None, "total": "12.00", "created_at": events.iso(at(40))},
        {**bob, "order_id": "ord-date", "total": "12.00", "created_at": "last tuesday"},
        {**bob, "order_id": "ord-total", "total": None, "created_at": events.iso(at(50))},
    ]
    # The same event delivered twice.
    dup = events.track("product_viewed", at(2), user_id="cy", message_id="msg-dup")
    s.events += [dup, dict(dup)]
    s.land()
    dbt_build(paths)
    return paths


def person_of(paths: Paths, user_id: str) -> str:
    rows = query(
        paths,
        f"select person_id from dim_identities where identifier_type = 'user_id' "
        f"and identifier_value = '{user_id}'",
    )
    assert len(rows) == 1
    return str(rows[0]["person_id"])


def test_two_devices_resolve_to_one_person(built: Paths) -> None:
    ada = person_of(built, "ada")
    devices = query(
        built,
        "select identifier_value, person_id from dim_identities "
        "where identifier_type = 'anonymous_id' order by 1",
    )
    assert {d["identifier_value"]: d["person_id"] for d in devices} == {
        "anon-ada-laptop": ada,
        "anon-ada-phone": ada,
        "anon-eve": devices[-1]["person_id"],
    }
    assert devices[-1]["person_id"] != ada


def test_profile_rows(built: Paths) -> None:
    rows = {
        r["user_id"]: r for r in query(built, "select * from dim_people where user_id is not null")
    }
    assert set(rows) == {"ada", "bob", "cy", "dee"}
    ada = rows["ada"]
    assert (ada["email"], ada["phone"], ada["first_name"]) == (
        "ada@example.com",
        "+14155550101",
        "Ada",
    )
    assert (ada["email_consent"], ada["sms_consent"], ada["push_consent"]) == (
        "subscribed",
        "none",
        "none",
    )
    assert ada["first_seen_at"] == T0 - timedelta(days=2)  # anonymous browsing counts
    dee = rows["dee"]
    assert dee["phone"] is None and dee["has_invalid_phone"] is True
    assert dee["sms_consent"] == "subscribed"
    anonymous = query(built, "select * from dim_people where user_id is null")
    assert len(anonymous) == 1 and anonymous[0]["email_consent"] == "none"


def test_audience_membership(built: Paths) -> None:
    rows = query(
        built,
        "select person_id, entry_event_at, enters_at, exited_at "
        "from audience_cart_abandonment order by person_id, entry_event_at",
    )
    got = {(r["person_id"], r["entry_event_at"], r["enters_at"], r["exited_at"]) for r in rows}
    ada, cy, dee = (person_of(built, u) for u in ("ada", "cy", "dee"))
    eve = query(built, "select person_id from dim_identities where identifier_value = 'anon-eve'")[
        0
    ]["person_id"]
    assert got == {
        (ada, at(0), at(60), None),
        (cy, at(0), at(60), at(hours=3)),
        (dee, at(0), at(60), at(hours=2)),  # the second update is the same episode
        (dee, at(hours=5), at(hours=6), None),
        (eve, at(0), at(60), None),
    }


def test_bad_rows_are_kept_with_a_reason(built: Paths) -> None:
    rows = query(built, "select source_table, reject_reason from fct_rejected_rows order by 1, 2")
    assert rows == [
        {"source_table": "preferences.consents", "reject_reason": "unknown channel: fax"},
        {"source_table": "segment.events", "reject_reason": "neither userId nor anonymousId"},
        {"source_table": "shop.orders", "reject_reason": "missing or non-numeric total"},
        {"source_table": "shop.orders", "reject_reason": "missing order_id"},
        {"source_table": "shop.orders", "reject_reason": "unparseable created_at: last tuesday"},
    ]
    dups = query(built, "select count(*) as n from stg_segment__events where event_id = 'msg-dup'")
    assert dups == [{"n": 1}]


def test_bad_orders_are_rejected_and_not_counted(built: Paths) -> None:
    rejected = query(
        built,
        "select row_key, reject_reason from fct_rejected_rows "
        "where source_table = 'shop.orders' order by 1 nulls first",
    )
    assert rejected == [
        {"row_key": None, "reject_reason": "missing order_id"},
        {"row_key": "ord-date", "reject_reason": "unparseable created_at: last tuesday"},
        {"row_key": "ord-total", "reject_reason": "missing or non-numeric total"},
    ]
    # Bob's profile counts only the order the shop exported whole.
    bob = query(built, "select order_count, revenue from dim_people where user_id = 'bob'")
    assert bob == [{"order_count": 1, "revenue": 24.5}]
