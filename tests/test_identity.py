"""Identity resolution on hand-made people: one person per human, never two humans in one."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import duckdb
import pytest
import yaml

from switchyard import events
from switchyard.settings import PROJECT_DIR, Paths
from tests.dbt_helpers import dbt_build, query
from tests.scenario import T0, Scenario, at

IDENTITY = yaml.safe_load((PROJECT_DIR / "dbt_project.yml").read_text())["vars"]["identity"]


def people_of(paths: Paths, *keys: str) -> dict[str, str]:
    rows = query(paths, "select identifier_key, person_id from dim_identities")
    found = {r["identifier_key"]: r["person_id"] for r in rows}
    return {k: found[k] for k in keys}


@pytest.fixture(scope="module")
def store(module_paths: Paths) -> Paths:
    s = Scenario(module_paths.landing)
    # An in-store tablet: 200 customers log in on it, one after another.
    for i in range(200):
        s.events.append(
            events.identify(
                at(minutes=i),
                user_id=f"shopper{i}",
                anonymous_id="tablet-1",
                device_id="tablet-1",
                traits={"email": f"shopper{i}@example.com"},
            )
        )
    # Pat browses on phone and laptop, then logs in on both.
    s.track("product_viewed", at(-120), anonymous_id="anon-phone")
    s.track("product_viewed", at(-90), anonymous_id="anon-laptop")
    s.person(
        "pat",
        devices=("anon-phone", "anon-laptop"),
        email="pat@example.com",
        phone="+1 415 555 0199",
        when=at(-60),
    )
    # Two strangers who both typed the placeholder address, and an SDK that sends a zero id.
    s.person("kim", email="test@test.com", devices=("000-000-000",))
    s.person("lee", email="TEST@test.com", devices=("anon-lee",))
    # SDKs that send a placeholder as text, in their own case: a visitor browses as "NULL", then
    # two strangers log in as "NULL" and two more as "Undefined".
    s.track("product_viewed", at(-30), anonymous_id="NULL")
    s.person("max", devices=("NULL",))
    s.person("nia", devices=("NULL",))
    s.person("oli", devices=("Undefined",))
    s.person("pia", devices=("Undefined",))
    s.land()
    dbt_build(module_paths, "+int_events_stitched", "+fct_identity_audit")
    return module_paths


def test_shared_tablet_does_not_merge_its_customers(store: Paths) -> None:
    persons = people_of(store, *(f"user_id:shopper{i}" for i in range(200)))
    assert len(set(persons.values())) == 200
    emails = people_of(store, *(f"email:shopper{i}@example.com" for i in range(200)))
    assert all(
        emails[f"email:shopper{i}@example.com"] == persons[f"user_id:shopper{i}"]
        for i in range(200)
    )
    audit = query(
        store,
        "select identifier_type, identifier_value, reason from fct_identity_audit "
        "where identifier_value = 'tablet-1' order by 1",
    )
    assert audit == [
        {
            "identifier_type": t,
            "identifier_value": "tablet-1",
            "reason": "shared identifier: seen with 200 anchors (limit 5)",
        }
        for t in ("anonymous_id", "device_id")
    ]


def test_two_devices_then_login_is_one_person(store: Paths) -> None:
    keys = (
        "user_id:pat",
        "anonymous_id:anon-phone",
        "anonymous_id:anon-laptop",
        "email:pat@example.com",
        "phone:+14155550199",
    )
    persons = people_of(store, *keys)
    assert len(set(persons.values())) == 1
    # The oldest identifier (the phone's anonymous id) names the person.
    expected = "p_" + hashlib.md5(b"anonymous_id:anon-phone").hexdigest()
    assert persons["user_id:pat"] == expected
    stitched = query(
        store,
        "select distinct person_id from int_events_stitched "
        "where anonymous_id in ('anon-phone', 'anon-laptop')",
    )
    assert stitched == [{"person_id": expected}]


def test_placeholders_never_join_strangers(store: Paths) -> None:
    persons = people_of(store, "user_id:kim", "user_id:lee")
    assert persons["user_id:kim"] != persons["user_id:lee"]
    audit = query(
        store,
        "select identifier_type, identifier_value, reason, occurrence_count "
        "from fct_identity_audit where reason like 'blocklisted%' order by 2",
    )
    assert audit == [
        {
            "identifier_type": "anonymous_id",
            "identifier_value": "000-000-000",
            "reason": "blocklisted pattern ^[0-]*$",
            "occurrence_count": 1,
        },
        {
            "identifier_type": "anonymous_id",
            "identifier_value": "NULL",
            "reason": "blocklisted value",
            "occurrence_count": 3,
        },
        {
            "identifier_type": "email",
            "identifier_value": "TEST@test.com",
            "reason": "blocklisted value",
            "occurrence_count": 1,
        },
        {
            "identifier_type": "anonymous_id",
            "identifier_value": "Undefined",
            "reason": "blocklisted value",
            "occurrence_count": 2,
        },
        {
            "identifier_type": "email",
            "identifier_value": "test@test.com",
            "reason": "blocklisted value",
            "occurrence_count": 1,
        },
    ]


def test_placeholders_match_the_blocklist_in_any_case(store: Paths) -> None:
    # The blocklist lists "null" and "undefined"; the SDKs sent "NULL" and "Undefined".
    assert {"null", "undefined"} <= set(IDENTITY["blocklist_values"])
    persons = people_of(store, "user_id:max", "user_id:nia", "user_id:oli", "user_id:pia")
    assert len(set(persons.values())) == 4
    # The placeholder names nobody: the anonymous visitor's browsing joins none of them.
    keys = {r["identifier_key"] for r in query(store, "select identifier_key from dim_identities")}
    assert not keys & {"anonymous_id:NULL", "anonymous_id:Undefined"}
    browsing = query(
        store,
        "select user_id, person_id from int_events_stitched where anonymous_id = 'NULL' "
        "order by user_id nulls first",
    )
    assert browsing == [
        {"user_id": None, "person_id": None},
        {"user_id": "max", "person_id": persons["user_id:max"]},
        {"user_id": "nia", "person_id": persons["user_id:nia"]},
    ]
    audit = query(
        store,
        "select identifier_value, reason from fct_identity_audit "
        "where identifier_type = 'anonymous_id' and identifier_value in ('NULL', 'Undefined') "
        "order by 1",
    )
    assert audit == [
        {"identifier_value": "NULL", "reason": "blocklisted value"},
        {"identifier_value": "Undefined", "reason": "blocklisted value"},
    ]


def test_ids_are_stable_and_a_merge_keeps_the_oldest(paths: Paths) -> None:
    s = Scenario(paths.landing)
    s.track("product_viewed", T0 - timedelta(days=10), anonymous_id="anon-old")
    s.person("zoe", devices=("anon-new",), email="zoe@example.com", when=T0)
    s.land()
    dbt_build(paths, "+dim_identities")
    first = people_of(paths, "anonymous_id:anon-old", "user_id:zoe")
    dbt_build(paths, "+dim_identities")
    assert people_of(paths, "anonymous_id:anon-old", "user_id:zoe") == first  # rebuild: same ids
    assert first["anonymous_id:anon-old"] != first["user_id:zoe"]

    # Zoe logs in on the old device: two people become one, the older id survives.
    s.person("zoe", devices=("anon-old",), when=T0 + timedelta(days=1)).land()
    dbt_build(paths, "+dim_identities")
    merged = people_of(
        paths,
        "anonymous_id:anon-old",
        "anonymous_id:anon-new",
        "user_id:zoe",
        "email:zoe@example.com",
    )
    assert set(merged.values()) == {first["anonymous_id:anon-old"]}


def test_a_duplicate_written_by_the_latest_run_fails_its_unique_test(paths: Paths) -> None:
    s = Scenario(paths.landing)
    s.person("ann", devices=("anon-ann",), email="ann@example.com")
    s.land()
    dbt_build(paths, "+dim_identities")
    # A faulty run writes a second row for an identifier already there.
    con = duckdb.connect(str(paths.duckdb))
    con.execute("""
        insert into dim_identities
        select * replace (
            node_id + 1000 as node_id,
            processed_at + interval 1 second as processed_at
        )
        from dim_identities where identifier_key = 'user_id:ann'
    """)
    con.close()
    with pytest.raises(
        AssertionError, match="FAIL 1 unique_in_latest_batch_dim_identities_identif"
    ):
        dbt_build(paths, "dim_identities", command="test")


def test_person_id_changes_are_recorded_and_survive_a_rebuild(paths: Paths) -> None:
    limit_two = {**IDENTITY, "max_anchors_per_identifier": {"default": 2}}
    s = Scenario(paths.landing)
    s.track("product_viewed", T0 - timedelta(days=10), anonymous_id="anon-old")
    s.person("zoe", devices=("anon-new",), when=T0)
    # A family laptop, first seen when mum logs in on it: it names mum's person.
    s.person("mum", devices=("laptop",), when=T0 + timedelta(minutes=1))
    s.person("dad", devices=("laptop",), when=T0 + timedelta(minutes=2))
    s.land()
    dbt_build(paths, "+dim_person_aliases", dbt_vars={"identity": limit_two})
    before = people_of(paths, "user_id:zoe", "anonymous_id:anon-old", "user_id:mum")
    assert query(paths, "select * from fct_person_merges") == []

    # Zoe logs in on the old device (a merge: the older id survives); a third person on the
    # laptop makes it shared, so mum's person loses its oldest identifier (a split: new id).
    s.person("zoe", devices=("anon-old",), when=T0 + timedelta(days=1))
    s.person("kid", devices=("laptop",), when=T0 + timedelta(days=1))
    s.land()
    dbt_build(paths, "+dim_person_aliases", dbt_vars={"identity": limit_two})
    after = people_of(paths, "user_id:zoe", "user_id:mum")
    assert after["user_id:zoe"] == before["anonymous_id:anon-old"]
    assert after["user_id:mum"] != before["user_id:mum"]

    changes = {
        (r["previous_person_id"], r["person_id"], r["change_type"])
        for r in query(paths, "select * from fct_person_merges")
    }
    assert changes == {
        (before["user_id:zoe"], after["user_id:zoe"], "merge"),
        (before["user_id:mum"], after["user_id:mum"], "split"),
    }
    aliases = query(
        paths, "select alias_person_id, person_id from dim_person_aliases order by 1, 2"
    )
    # Mum's old id still names someone after the split: it is among its own people, so what
    # was recorded under it stays there too (a merged id is not).
    assert {(r["alias_person_id"], r["person_id"]) for r in aliases} == {
        (before["user_id:zoe"], after["user_id:zoe"]),
        (before["user_id:mum"], after["user_id:mum"]),
        (before["user_id:mum"], before["user_id:mum"]),
    }

    # A rebuild gives the same ids and keeps the history.
    dbt_build(paths, "+dim_person_aliases", dbt_vars={"identity": limit_two}, full_refresh=True)
    assert people_of(paths, "user_id:zoe", "user_id:mum") == after
    assert len(query(paths, "select * from fct_person_merges")) == 2


def test_iteration_cap_fails_loudly(paths: Paths) -> None:
    s = Scenario(paths.landing)
    # A chain: a0 - d0 - a1 - d1 - ... needs more than one round of propagation.
    for i in range(20):
        s.events.append(
            events.identify(at(i), user_id=None, anonymous_id=f"a{i}", device_id=f"d{i}")
        )
        s.events.append(
            events.identify(at(i), user_id=None, anonymous_id=f"a{i + 1}", device_id=f"d{i}")
        )
    s.land()
    with pytest.raises(AssertionError, match="did not converge within 1 iterations"):
        dbt_build(
            paths, "+dim_identities", dbt_vars={"identity": {**IDENTITY, "max_iterations": 1}}
        )
    dbt_build(paths, "+dim_identities")
    chain = query(paths, "select count(distinct person_id) as n from dim_identities")
    assert chain == [{"n": 1}]


def test_incremental_run_matches_a_full_rebuild(tmp_path_factory: pytest.TempPathFactory) -> None:
    # No lookback: batch two must not simply reprocess batch one.
    tight = {**IDENTITY, "max_anchors_per_identifier": {"default": 2}, "lookback_hours": 0}

    def first_batch(s: Scenario) -> None:
        # An anonymous visitor on two devices (a0 is the oldest identifier: not in batch two).
        s.events.append(events.identify(at(0), user_id=None, anonymous_id="a0", device_id="d0"))
        s.events.append(events.identify(at(1), user_id=None, anonymous_id="a1", device_id="d0"))
        # A family laptop two people log in on: within the limit of 2, so still mergeable.
        s.person("mum", devices=("laptop",), when=at(2))
        s.person("dad", devices=("laptop",), when=at(3))

    def second_batch(s: Scenario) -> None:
        # The visitor signs up on a new device that also carries d0's email: joins the old person.
        s.events.append(
            events.identify(
                at(10),
                user_id="vic",
                anonymous_id="a9",
                device_id="d0",
                traits={"email": "vic@example.com"},
            )
        )
        # A third person on the laptop makes it shared: it must stop joining anything.
        s.person("kid", devices=("laptop",), when=at(11))
        s.person("new", devices=("n1",), email="new@example.com", when=at(12))

    def home(name: str) -> Paths:
        root = tmp_path_factory.mktemp(name)
        return Paths(home=root, landing=root / "landing", duckdb=root / "s.duckdb")

    incremental, rebuilt = home("incremental"), home("rebuilt")
    s = Scenario(incremental.landing)
    first_batch(s)
    s.land()
    dbt_build(incremental, "+dim_identities", dbt_vars={"identity": tight})
    second_batch(s)
    s.land()
    dbt_build(incremental, "+dim_identities", dbt_vars={"identity": tight})  # incremental run

    r = Scenario(rebuilt.landing)
    first_batch(r)
    second_batch(r)
    r.land()
    dbt_build(rebuilt, "+dim_identities", dbt_vars={"identity": tight}, full_refresh=True)

    sql = "select identifier_key, person_id, resolution from dim_identities order by 1"
    assert query(incremental, sql) == query(rebuilt, sql)
    persons = {r["identifier_key"]: r["person_id"] for r in query(rebuilt, sql)}
    assert persons["anonymous_id:a0"] == persons["user_id:vic"] == persons["anonymous_id:a9"]
    assert len({persons[f"user_id:{u}"] for u in ("mum", "dad", "kid")}) == 3


def test_rows_arriving_after_the_window_are_reported_not_lost(paths: Paths) -> None:
    tight = {**IDENTITY, "lookback_hours": 1}
    s = Scenario(paths.landing)
    s.person("early", devices=("e1",), when=at(600))
    s.land()
    first = dbt_build(paths, "+dim_identities", dbt_vars={"identity": tight})
    assert "identity_unprocessed_rows" in first and "WARN 1 identity_unprocessed_rows" not in first

    # Within the lookback: picked up. Hours older than it (a replayed backfill): reported.
    s.person("recent", devices=("r1",), when=at(570))
    s.person("late", devices=("l1",), when=at(-600))
    s.land()
    second = dbt_build(paths, "+dim_identities", dbt_vars={"identity": tight})
    assert "WARN 1 identity_unprocessed_rows" in second
    keys = {r["identifier_key"] for r in query(paths, "select identifier_key from dim_identities")}
    assert {"user_id:early", "user_id:recent"} <= keys and "user_id:late" not in keys

    rebuilt = dbt_build(paths, "+dim_identities", dbt_vars={"identity": tight}, full_refresh=True)
    assert "WARN 1 identity_unprocessed_rows" not in rebuilt
    keys = {r["identifier_key"] for r in query(paths, "select identifier_key from dim_identities")}
    assert "user_id:late" in keys


def test_a_rebuild_records_the_merges_it_makes(paths: Paths) -> None:
    tight = {**IDENTITY, "lookback_hours": 1}
    s = Scenario(paths.landing)
    s.track("product_viewed", at(500), anonymous_id="anon-first")
    s.person("ivy", devices=("anon-ivy",), when=at(600))
    s.land()
    dbt_build(paths, "+fct_person_merges", dbt_vars={"identity": tight})
    ivy_before = people_of(paths, "user_id:ivy")["user_id:ivy"]
    # A replayed backfill: Ivy on the first device, hours older than the lookback. Only a rebuild
    # picks it up; the merge it makes is recorded like an incremental one.
    s.person("ivy", devices=("anon-first",), when=at(-600))
    s.land()
    dbt_build(paths, "+fct_person_merges", dbt_vars={"identity": tight}, full_refresh=True)
    ivy_after = people_of(paths, "user_id:ivy")["user_id:ivy"]
    assert ivy_after != ivy_before
    merges = query(
        paths, "select previous_person_id, person_id, change_type from fct_person_merges"
    )
    assert merges == [
        {"previous_person_id": ivy_before, "person_id": ivy_after, "change_type": "merge"}
    ]


def test_a_replaced_id_goes_on_as_the_person_its_merges_took_it_to(paths: Paths) -> None:
    # dim_person_aliases over hand-written changes (the tables it reads, written directly).
    t1, t2, t3, t4, t5 = (T0 + timedelta(days=n) for n in range(5))
    changes = [
        # a split a survives (b takes some), then a merges into c: a went on as c, not b
        ("p_a", "p_b", "split", 1, t1),
        ("p_a", "p_c", "merge", 3, t2),
        # d splits and does not survive: f got most of its identifiers
        ("p_d", "p_e", "merge", 1, t1),
        ("p_d", "p_f", "merge", 3, t1),
        # g merges into h, which later splits and lives on: g went on as h
        ("p_g", "p_h", "merge", 2, t1),
        ("p_h", "p_i", "split", 1, t2),
        # q merges into r, r into s; r comes back off s, then merges into t: q went on as s
        ("q_q", "q_r", "merge", 1, t1),
        ("q_r", "q_s", "merge", 2, t2),
        ("q_s", "q_r", "split", 1, t3),
        ("q_r", "q_t", "merge", 1, t4),
        # a tie: the first by id
        ("r_x", "r_z", "merge", 2, t1),
        ("r_x", "r_y", "merge", 2, t1),
        # v merges into w, comes back, merges into y; w later merges into x: v went on as y
        ("v_v", "v_w", "merge", 1, t1),
        ("v_w", "v_v", "split", 1, t2),
        ("v_v", "v_y", "merge", 1, t3),
        ("v_w", "v_x", "merge", 1, t5),
        # u survives a split to v, which later merges into w: w holds what left u at t1
        ("u_u", "u_v", "split", 1, t1),
        ("u_v", "u_w", "merge", 1, t2),
    ]
    con = duckdb.connect(str(paths.duckdb))
    try:
        con.execute(
            "create table fct_person_merges (previous_person_id varchar, person_id varchar, "
            "change_type varchar, identifiers_moved bigint, processed_at timestamp)"
        )
        con.executemany("insert into fct_person_merges values (?, ?, ?, ?, ?)", changes)
        con.execute(
            "create table dim_identities as select unnest(['p_b', 'p_c', 'p_e', 'p_f', 'p_h', "
            "'p_i', 'q_s', 'q_t', 'r_y', 'r_z', 'u_u', 'u_w', 'v_x', 'v_y']) as person_id"
        )
    finally:
        con.close()
    dbt_build(paths, "dim_person_aliases")
    rows = query(paths, "select * from dim_person_aliases order by 1, 2")
    held = {(r["alias_person_id"], r["person_id"]) for r in rows}
    assert {(a, p) for a, p in held if a.startswith("p_")} == {
        ("p_a", "p_b"), ("p_a", "p_c"),
        ("p_d", "p_e"), ("p_d", "p_f"),
        ("p_g", "p_h"), ("p_g", "p_i"),
        ("p_h", "p_h"), ("p_h", "p_i"),
    }  # fmt: skip
    primary = {r["alias_person_id"]: r["person_id"] for r in rows if r["is_primary"]}
    assert primary == {
        "p_a": "p_c", "p_d": "p_f", "p_g": "p_h", "p_h": "p_h",
        "q_q": "q_s", "q_r": "q_t", "q_s": "q_s",
        "r_x": "r_y",
        "u_u": "u_u", "u_v": "u_w",
        "v_v": "v_y", "v_w": "v_x",
    }  # fmt: skip
    # when identifiers left the alias on their way to the person: u's reached w through v
    since = {(r["alias_person_id"], r["person_id"]): r["aliased_at"] for r in rows}
    assert (since[("u_u", "u_w")], since[("u_v", "u_w")]) == (t1, t2)
