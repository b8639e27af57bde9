"""Incremental intake: each landing file is parsed once, a run merges only what landed since the
last, and the result is the one a full rebuild gives."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from switchyard import events, landing
from switchyard.settings import Paths
from tests.dbt_helpers import dbt_build, query
from tests.scenario import T0, at

STITCHED = ("+int_events_stitched",)
SELECTION = ("base_segment__events", "stg_segment__events", "base_shop__orders", "stg_shop__orders")


def land(paths: Paths, source: str, table: str, rows: list[dict[str, Any]]) -> str:
    return landing.write_batch(paths.landing, source, table, rows).name


def staged(paths: Paths) -> dict[str, list[dict[str, Any]]]:
    """Both staging tables, their rows as a full rebuild would compare them."""
    return {
        "events": query(
            paths,
            "select event_id, event_name, user_id, occurred_at, reject_reason, "
            "regexp_extract(source_file, '[^/]+$') as file "
            "from stg_segment__events order by event_id nulls first, file",
        ),
        "orders": query(
            paths,
            "select order_id, order_total, ordered_at, reject_reason, "
            "regexp_extract(source_file, '[^/]+$') as file "
            "from stg_shop__orders order by order_id nulls first, file",
        ),
    }


def loads(paths: Paths, table: str) -> list[dict[str, Any]]:
    return query(
        paths,
        f"select regexp_extract(source_file, '[^/]+$') as file, loaded_at, count(*) as n "
        f"from {table} group by all order by loaded_at, file",
    )


def test_each_file_is_loaded_once_and_merged_with_what_is_there(paths: Paths) -> None:
    seen = events.track("product_viewed", at(0), user_id="ada", message_id="m-1")
    retried = events.track("cart_updated", at(5), user_id="ada", message_id="m-2")
    first_events = land(paths, "segment", "events", [seen, retried, events.track("x", at(1))])
    first_orders = land(
        paths,
        "shop",
        "orders",
        [
            events.order("o-1", at(10), user_id="ada", email=None, total=10.0),
            events.order("o-2", at(20), user_id="ada", email=None, total=20.0),
        ],
    )
    dbt_build(paths, *SELECTION)
    assert [r["file"] for r in loads(paths, "base_segment__events")] == [first_events]

    # The next batch: a new call, m-1 delivered again later (the first delivery stays), m-2
    # delivered again with an earlier timestamp (it becomes the first delivery); o-1 re-exported
    # with a later time (the latest export wins), o-2 with an earlier one (it loses).
    earlier = {**retried, "timestamp": events.iso(at(4)), "event": "cart_updated_again"}
    second_events = land(
        paths,
        "segment",
        "events",
        [{**seen, "timestamp": events.iso(at(9))}, earlier, events.track("y", at(6), user_id="bo")],
    )
    second_orders = land(
        paths,
        "shop",
        "orders",
        [
            events.order("o-1", at(30), user_id="ada", email=None, total=11.0),
            events.order("o-2", at(15), user_id="ada", email=None, total=19.0),
            {"order_id": None, "user_id": "ada", "total": "1", "created_at": events.iso(at(31))},
        ],
    )
    dbt_build(paths, *SELECTION)
    first_load, second_load = loads(paths, "base_segment__events")
    assert (first_load["file"], first_load["n"]) == (first_events, 3)
    assert (second_load["file"], second_load["n"]) == (second_events, 3)
    assert second_load["loaded_at"] > first_load["loaded_at"]

    rows = staged(paths)
    by_id = {r["event_id"]: r for r in rows["events"] if r["event_id"]}
    assert by_id["m-1"]["file"] == first_events  # the first delivery is kept
    assert by_id["m-1"]["occurred_at"] == at(0).replace(tzinfo=None)
    assert by_id["m-2"]["file"] == second_events  # its redelivery came first in time
    assert by_id["m-2"]["event_name"] == "cart_updated_again"
    assert len(rows["events"]) == 4  # m-1, m-2, x, y: once each
    orders = {r["order_id"]: r for r in rows["orders"]}
    assert (orders["o-1"]["file"], float(orders["o-1"]["order_total"])) == (second_orders, 11.0)
    assert (orders["o-2"]["file"], float(orders["o-2"]["order_total"])) == (first_orders, 20.0)
    assert orders[None]["reject_reason"] == "missing order_id"

    # Nothing new landed: nothing is loaded again (an append would have doubled every row).
    dbt_build(paths, *SELECTION)
    assert len(loads(paths, "base_segment__events")) == 2
    assert len(loads(paths, "base_shop__orders")) == 2
    assert staged(paths) == rows

    # A full rebuild from every file gives the same tables.
    dbt_build(paths, *SELECTION, full_refresh=True)
    assert staged(paths) == rows
    reloaded = loads(paths, "base_segment__events")
    assert {(r["file"], r["n"]) for r in reloaded} == {(first_events, 3), (second_events, 3)}
    assert len({r["loaded_at"] for r in reloaded}) == 1  # both by the one run


def test_a_file_landed_later_reaches_identity(paths: Paths) -> None:
    """The incremental staging feeds identity: a sign-in landed later merges the device's cart,
    stitched to the device's own person first, into Ada (whose id is older): it is stitched
    again."""
    land(
        paths,
        "segment",
        "events",
        [
            events.identify(at(-60), user_id="ada"),
            events.track("cart_updated", at(0), anonymous_id="dev-1", user_id=None),
            events.track("product_viewed", at(0), user_id="bo", message_id="m-bo"),
        ],
    )
    dbt_build(paths, *STITCHED)
    untouched = "select stitched_at from int_events_stitched where event_id = 'm-bo'"
    (first,) = query(paths, untouched)
    later = events.identify(T0 + timedelta(minutes=3), user_id="ada", anonymous_id="dev-1")
    land(paths, "segment", "events", [later])
    dbt_build(paths, *STITCHED)
    (row,) = query(
        paths,
        "select count(distinct person_id) as people, count(*) as events "
        "from int_events_stitched where anonymous_id = 'dev-1'",
    )
    assert row == {"people": 1, "events": 2}
    (person,) = query(
        paths, "select distinct person_id from int_events_stitched where user_id = 'ada'"
    )
    (cart,) = query(
        paths, "select person_id from int_events_stitched where event_name = 'cart_updated'"
    )
    assert cart == person
    assert query(paths, untouched) == [first]  # an event the batch did not touch is left alone


def test_an_unusable_redelivery_that_wins_takes_the_event_out(paths: Paths) -> None:
    good = events.track("cart_updated", at(5), user_id="ada", message_id="m-3")
    land(paths, "segment", "events", [good])
    dbt_build(paths, *STITCHED)
    assert query(paths, "select event_id from int_events_stitched") == [{"event_id": "m-3"}]
    # delivered again, timed earlier, without any id: it is the first delivery now, and unusable
    broken = {**good, "userId": None, "timestamp": events.iso(at(1))}
    land(paths, "segment", "events", [broken])
    dbt_build(paths, *STITCHED)
    (staged_row,) = query(paths, "select reject_reason from stg_segment__events")
    assert staged_row["reject_reason"] == "neither userId nor anonymousId"
    assert query(paths, "select event_id from int_events_stitched") == []
