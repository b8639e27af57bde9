"""A CDP's own warehouse tables read in place: fixtures in Segment's and RudderStack's warehouse
schemas (tracks, identifies, pages, screens, a per-event table), built into the profile beside
the landing files."""

from __future__ import annotations

import duckdb
import pytest

from switchyard.settings import Paths
from tests.dbt_helpers import dbt_build, query

# The columns each vendor's warehouse schema documents for these tables (Segment: "Warehouse
# Schemas"; RudderStack: "Warehouse Schema"): RudderStack adds `channel` and repeats an
# identify's traits as context_traits_* columns.
COMMON = """id varchar, anonymous_id varchar, user_id varchar, received_at timestamp,
    sent_at timestamp, "timestamp" timestamp, original_timestamp timestamp, uuid_ts timestamp,
    context_library_name varchar, context_timezone varchar"""
EXTRA = {"segment": "", "rudderstack": ", channel varchar"}


def land_fixture(paths: Paths, vendor: str, schema: str) -> None:
    extra = EXTRA[vendor]
    traits_copy = ", context_traits_email varchar" if vendor == "rudderstack" else ""
    t = "timestamp '2026-11-02 10:00:00'"
    base = f"{t}, {t}, {t}, {t}, {t}, 'analytics.js', 'Europe/Berlin'"
    fill = ", 'web'" if vendor == "rudderstack" else ""
    copy = ", 'ada@example.com'" if vendor == "rudderstack" else ""
    tables = {
        "tracks": ("event varchar, event_text varchar",
                   "'t1', 'anon-1', 'u-ada', {base}, 'cart_updated', 'cart_updated'"),
        "cart_updated": ("event varchar, event_text varchar, sku varchar, price double",
                         "'t1', 'anon-1', 'u-ada', {base}, 'cart_updated', 'cart_updated', "
                         "'tee', 19.0"),
        "identifies": (f"email varchar, first_name varchar{traits_copy}",
                       "'i1', 'anon-1', 'u-ada', {base}, 'Ada@Example.com', 'Ada'{copy}"),
        "pages": ("name varchar, path varchar, url varchar",
                  "'p1', 'anon-2', null, {base}, 'Home', '/', 'https://shop.example/'"),
        "screens": ("name varchar", "'s1', null, 'u-ada', {base}, 'Cart'"),
    }  # fmt: skip
    con = duckdb.connect(str(paths.duckdb))
    try:
        con.execute(f"create schema {schema}")
        for table, (columns, row) in tables.items():
            con.execute(f"create table {schema}.{table} ({COMMON}, {columns}{extra})")
            values = row.format(base=base, copy=copy)
            con.execute(f"insert into {schema}.{table} values ({values}{fill})")
    finally:
        con.close()


@pytest.mark.parametrize("vendor", ["segment", "rudderstack"])
def test_a_cdps_warehouse_tables_build_into_the_profile(paths: Paths, vendor: str) -> None:
    schema = f"{vendor}_prod"
    land_fixture(paths, vendor, schema)
    cdp = {"enabled": True, "vendor": vendor, "schema": schema, "event_tables": ["cart_updated"]}
    # into the profile once (Segment); RudderStack's tables, the same shape, into staging
    dbt_build(paths, "+dim_people" if vendor == "segment" else "+stg_segment__events",
              dbt_vars={"cdp_warehouse": cdp})  # fmt: skip
    events = query(
        paths,
        "select event_id, event_type, event_name, user_id, anonymous_id, trait_email, timezone, "
        "json_extract_string(properties, '$.sku') as sku, intake_source "
        "from stg_segment__events where reject_reason is null order by event_id",
    )
    by_id = {e["event_id"]: e for e in events}
    assert set(by_id) == {"t1", "i1", "p1", "s1"}
    assert (by_id["t1"]["event_type"], by_id["t1"]["event_name"], by_id["t1"]["sku"]) == (
        "track", "cart_updated", "tee"
    )  # fmt: skip
    assert by_id["t1"]["timezone"] == "Europe/Berlin" and by_id["t1"]["intake_source"] == vendor
    assert by_id["i1"]["trait_email"] == "Ada@Example.com"
    assert (by_id["p1"]["event_type"], by_id["p1"]["event_name"]) == ("page", "Home")
    assert (by_id["s1"]["event_type"], by_id["s1"]["event_name"]) == ("screen", "Cart")
    if vendor == "segment":
        (ada,) = query(paths, "select email, timezone from dim_people where user_id = 'u-ada'")
        assert ada["email"] == "ada@example.com"
