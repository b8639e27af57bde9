"""Person-scoped incremental profiles: a run recomputes the people a batch touched, and what it
leaves equals a full rebuild of the same data (macros/people_touched.sql)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from switchyard.settings import PROJECT_DIR, Paths
from tests.dbt_helpers import dbt_build, query
from tests.scenario import Scenario, at

IDENTITY = yaml.safe_load((PROJECT_DIR / "dbt_project.yml").read_text())["vars"]["identity"]
# A device shared by a third customer stops joining them (a split); no lookback, so batch two is
# not simply batch one again.
TIGHT = {
    "identity": {**IDENTITY, "max_anchors_per_identifier": {"default": 2}, "lookback_hours": 0}
}
PERSON_SCOPED = ("int_people_identifiers", "int_people_traits")


def first_batch(s: Scenario) -> None:
    s.person("ann", devices=("ann-phone",), email="ann@example.com", first_name="Ann", when=at(0))
    s.person("bob", devices=("bob-phone",), email="bob@example.com", first_name="Bob", when=at(1))
    s.track("app_opened", at(2), user_id="bob")
    # A visitor who has not logged in yet: a person of their own until batch two.
    s.track("product_viewed", at(3), anonymous_id="visitor-laptop")
    s.track("app_installed", at(3), anonymous_id="visitor-laptop")
    s.person("cat", devices=("cat-phone",), email="cat@example.com", when=at(4))
    # A family laptop two people log in on: within the limit of 2, so still mergeable.
    s.person("mum", devices=("family-laptop",), first_name="Mum", when=at(5))
    s.person("dad", devices=("family-laptop",), first_name="Dad", when=at(6))


def second_batch(s: Scenario) -> None:
    s.person("ann", first_name="Annie", when=at(10))  # a trait changes
    s.track("app_opened", at(11), user_id="ann")
    s.person("cat", devices=("visitor-laptop",), when=at(12))  # the visitor was cat: a merge
    s.person("kid", devices=("family-laptop",), first_name="Kid", when=at(13))  # now shared
    s.person("eve", devices=("eve-phone",), email="eve@example.com", when=at(14))  # new
    s.track("signed_up", at(14), user_id="eve")


def home(factory: pytest.TempPathFactory, name: str) -> Paths:
    root = factory.mktemp(name)
    return Paths(home=root, landing=root / "landing", duckdb=root / "s.duckdb")


def rows(paths: Paths, model: str) -> list[dict[str, Any]]:
    # profiled_at is when a row was computed: the one column a rebuild changes
    columns = "* exclude (profiled_at)" if model in PERSON_SCOPED else "*"
    return query(paths, f"select {columns} from {model} order by person_id")


def stamps(paths: Paths) -> dict[str, Any]:
    found = query(
        paths,
        "select identities.identifier_value as user_id, traits.profiled_at from int_people_traits"
        " as traits join dim_identities as identities on identities.person_id = traits.person_id"
        " and identities.identifier_type = 'user_id'",
    )
    return {r["user_id"]: r["profiled_at"] for r in found}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Paths, Paths, dict[str, Any]]:
    """The same two batches: built batch by batch (the second incrementally), and rebuilt in
    full; with the incremental home's stamps after batch one."""
    incremental, rebuilt = home(tmp_path_factory, "incremental"), home(tmp_path_factory, "rebuilt")
    s = Scenario(incremental.landing)
    first_batch(s)
    s.land()
    dbt_build(incremental, "+dim_people", dbt_vars=TIGHT)
    after_first = stamps(incremental)
    second_batch(s)
    s.land()
    dbt_build(incremental, "+dim_people", dbt_vars=TIGHT)

    r = Scenario(rebuilt.landing)
    first_batch(r)
    second_batch(r)
    r.land()
    dbt_build(rebuilt, "+dim_people", dbt_vars=TIGHT, full_refresh=True)
    return incremental, rebuilt, after_first


@pytest.mark.parametrize("model", [*PERSON_SCOPED, "dim_people"])
def test_an_incremental_run_matches_a_full_rebuild(
    built: tuple[Paths, Paths, dict[str, Any]], model: str
) -> None:
    incremental, rebuilt, _ = built
    assert rows(incremental, model) == rows(rebuilt, model)


def test_only_the_people_a_batch_touched_are_recomputed(
    built: tuple[Paths, Paths, dict[str, Any]],
) -> None:
    incremental, _, after_first = built
    now = stamps(incremental)
    # bob had nothing new; ann changed a trait, cat merged with the visitor, kid made the laptop
    # shared (mum and dad split off it), eve is new.
    assert now["bob"] == after_first["bob"]
    for user in ("ann", "cat", "mum", "dad"):
        assert now[user] > after_first[user], user
    assert "eve" in now and "kid" in now


def test_a_merged_away_person_leaves_every_profile_table(
    built: tuple[Paths, Paths, dict[str, Any]],
) -> None:
    incremental, _, _ = built
    people = {r["person_id"] for r in query(incremental, "select person_id from dim_identities")}
    merged = query(incremental, "select previous_person_id from fct_person_merges")
    gone = {r["previous_person_id"] for r in merged} - people
    assert gone, "the visitor's person id was merged into cat's"
    for model in (*PERSON_SCOPED, "dim_people"):
        kept = {r["person_id"] for r in query(incremental, f"select person_id from {model}")}
        assert not kept & gone, model
        assert kept <= people, model
    traits = query(
        incremental,
        "select first_name, app_installed_at from dim_people where user_id = 'ann' or user_id ="
        " 'cat' order by user_id",
    )
    assert traits[0]["first_name"] == "Annie"
    assert traits[1]["app_installed_at"] is not None  # the visitor's install is cat's now


@pytest.mark.slow
def test_identity_running_twice_between_profile_runs_leaves_no_ghost(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # The second identity run overwrites dim_identities.previous_person_id: the merged-away
    # visitor must still leave the profiles (fct_person_merges keeps it).
    def batches(s: Scenario) -> list[list[dict[str, Any]]]:
        s.person("cat", devices=("cat-phone",), first_name="Cat", when=at(0))
        s.track("product_viewed", at(1), anonymous_id="visitor-laptop")
        first, s.events = s.events, []
        s.person("cat", devices=("visitor-laptop",), when=at(20))  # the visitor was cat
        second, s.events = s.events, []
        s.track("app_opened", at(30), user_id="cat", anonymous_id="visitor-laptop")
        third, s.events = s.events, []
        return [first, second, third]

    incremental, rebuilt = home(tmp_path_factory, "twice"), home(tmp_path_factory, "twice-full")
    s = Scenario(incremental.landing)
    only_identity = ["--exclude", "path:models/profiles"]
    for batch, extra in zip(batches(s), ([], only_identity, []), strict=True):
        s.events = batch
        s.land()
        dbt_build(incremental, "+dim_people", extra=extra)
    r = Scenario(rebuilt.landing)
    r.events = [e for batch in batches(r) for e in batch]
    r.land()
    dbt_build(rebuilt, "+dim_people", full_refresh=True)
    for model in (*PERSON_SCOPED, "dim_people"):
        assert rows(incremental, model) == rows(rebuilt, model), model
    assert len(rows(incremental, "dim_people")) == 1
