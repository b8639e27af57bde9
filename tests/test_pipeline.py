"""The whole pipeline (Dagster job: dbt, journey, metrics) against the real sandbox.

The playbook: a cart left for an hour gets an email (or an SMS if that is all we may send); a day
later, if still no purchase, a push; a purchase at any point ends it.
"""

from __future__ import annotations

import json
from datetime import UTC, timedelta, timezone

import duckdb
import pytest

from activations.inbox.store import read_inbox
from activations.partitions import all_partitions
from sandbox import Sandbox
from switchyard.pipeline import run_pipeline
from switchyard.publish import published_path
from switchyard.settings import PROJECT_DIR, Paths
from tests.dbt_helpers import query
from tests.scenario import Scenario, at


@pytest.fixture
def shop(paths: Paths) -> Scenario:
    s = Scenario(paths.landing)
    s.person(
        "ada",
        email="ada@example.com",
        first_name="Ada",
        push_token="tok-ada",
        consent=("email", "push"),
    )
    s.cart(at(0), user_id="ada", sku="sku-mug", quantity=2)
    s.person("sam", phone="+14155550123", push_token="tok-sam", consent=("sms", "push"))
    s.cart(at(0), user_id="sam", sku="sku-cap")
    s.person("nia", email="nia@example.com")  # never gave consent
    s.cart(at(0), user_id="nia")
    s.person("bob", email="bob@example.com", consent=("email",))
    s.cart(at(0), user_id="bob").purchase(at(30), user_id="bob")
    s.land()
    return s


def ledger_key(step: str, user_id: str, paths: Paths) -> str:
    (row,) = query(
        paths,
        "select d.send_key from fct_deliveries d join dim_identities i "
        "on i.person_id = d.person_id and i.identifier_type = 'user_id' "
        f"where d.step = '{step}' and i.identifier_value = '{user_id}'",
    )
    return str(row["send_key"])


def received(sandbox: Sandbox) -> list[tuple[str, str, str | None, str | None]]:
    return sorted((r.channel, r.recipient, r.subject, r.body) for r in sandbox.received)


@pytest.mark.slow
def test_cart_abandonment_end_to_end(paths: Paths, sandbox: Sandbox, shop: Scenario) -> None:
    # The seconds tier's own job first, on a fresh warehouse: it builds what the cart journey
    # and the metrics after it read, and nothing of the other tiers' journeys.
    target = PROJECT_DIR / "target"
    before = set(target.iterdir())
    tier_run = run_pipeline(paths, now=at(hours=2), job="tier_seconds")
    # dbt's steps clear their own target folders (a seconds tier runs every minute); dagster-dbt
    # names each after its run (other tests' runs may be going on beside this one)
    left = {p.name for p in set(target.iterdir()) - before if tier_run.run_id[:7] in p.name}
    assert not left
    ran = {e.asset_key.to_user_string() for e in tier_run.get_asset_materialization_events()}
    assert "journey/cart_abandonment" in ran and "audience_welcome" not in ran
    # the run ended by publishing the read-only copy readers use: the run's sends are in it
    published = str(published_path(paths.duckdb))
    with duckdb.connect(published, read_only=True) as copy:
        sent = copy.execute("select count(*) from fct_deliveries where delivery_status = 'sent'")
        assert sent.fetchall() == [(2,)]
    assert received(sandbox) == [
        (
            "email",
            "ada@example.com",
            "Ada, your cart is waiting",
            "Hi Ada, you left 2 x sku-mug in your cart. It is saved for you.",
        ),
        (
            "sms",
            "+14155550123",
            None,
            "Hi there, your cart (1 x sku-cap) is waiting. Reply STOP to opt out.",
        ),
    ]

    # Nothing new happened: a second run sends nothing. (Its time is given in UTC+2, as an
    # operator in Berlin might: the run works in UTC.)
    berlin = timezone(timedelta(hours=2))
    run_pipeline(paths, now=at(hours=2, minutes=5).replace(tzinfo=UTC).astimezone(berlin))
    assert len(sandbox.received) == 2
    # The whole pipeline also kept Braze in step with the profiles (meta.syncs on dim_people),
    # and dbt read back what Braze acknowledged.
    assert sorted(sandbox.braze.users) == ["ada", "bob", "nia", "sam"]
    assert sandbox.braze.users["ada"]["email"] == "ada@example.com"
    assert query(
        paths,
        "select sync, destination_state, count(*) as n from dim_sync_state group by all",
    ) == [{"sync": "braze_people", "destination_state": "live", "n": 4}]

    # Ada buys before the push is due; Sam does not.
    shop.purchase(at(hours=5), user_id="ada").land()
    run_pipeline(paths, now=at(hours=26))
    pushes = [r for r in sandbox.received if r.channel == "push"]
    assert [(p.recipient, p.subject, p.body) for p in pushes] == [
        ("tok-sam", "Still thinking it over?", "there, your sku-cap is still in your cart.")
    ]
    assert len(sandbox.received) == 3

    # The ledger, read back by dbt, says what happened to every decision and why.
    rows = query(
        paths,
        "select d.step, i.identifier_value as user_id, d.channel, "
        "d.delivery_status, d.reason from fct_deliveries d join dim_identities i "
        "on i.person_id = d.person_id and i.identifier_type = 'user_id' "
        "order by 1, 2",
    )
    assert [tuple(r.values()) for r in rows] == [
        ("cart_reminder", "ada", "email", "sent", None),
        ("cart_reminder", "nia", None, "skipped", "no_consent"),
        ("cart_reminder", "sam", "sms", "sent", None),
        # Ada left the journey before the push: no decision was due (her exit is a transition)
        ("push_nudge", "nia", None, "skipped", "no_consent"),
        ("push_nudge", "sam", "push", "sent", None),
    ]
    # The journey's state, staged by dbt from the engine's transitions: every step with why.
    steps = query(
        paths,
        "select i.identifier_value as user_id, t.node, t.reason, t.detail "
        "from fct_journey_transitions t join dim_identities i "
        "on i.person_id = t.person_id and i.identifier_type = 'user_id' "
        "where t.journey = 'cart_abandonment' and t.reason <> 'entered' order by 1, t.seq",
    )
    assert [(r["user_id"], r["node"], r["reason"], r["detail"]) for r in steps
            if r["user_id"] == "ada"] == [
        ("ada", "push_nudge", "sent", ledger_key("cart_reminder", "ada", paths)),
        ("ada", "(converted)", "converted", "purchase_completed"),  # the goal, and it ends it
    ]  # fmt: skip
    where = query(
        paths,
        "select i.identifier_value as user_id, p.node, p.entry_state "
        "from dim_journey_positions p join dim_identities i "
        "on i.person_id = p.person_id and i.identifier_type = 'user_id' order by 1",
    )
    assert [tuple(r.values()) for r in where] == [
        ("ada", "(converted)", "ended"),
        ("nia", "(completed)", "ended"),
        ("sam", "(completed)", "ended"),
    ]
    metrics = query(
        paths,
        "select step, channel, sent, skipped_exited, converted_after_send "
        "from fct_journey_step_metrics where sent > 0 order by 1, 2",
    )
    assert [tuple(r.values()) for r in metrics] == [
        ("cart_reminder", "email", 1, 0, 1),  # Ada bought after her email
        ("cart_reminder", "sms", 1, 0, 0),
        ("push_nudge", "push", 1, 0, 0),
    ]


@pytest.mark.slow
def test_partitioned_sends_in_dagster_each_send_their_own_people_once(
    paths: Paths, sandbox: Sandbox, shop: Scenario, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With person partitions the tier job builds the models and the published copy; a run of
    # the sends job per partition sends to that partition's people; the after-sends job builds
    # the metrics over what every partition sent.
    monkeypatch.setenv("SWITCHYARD_PERSON_PARTITIONS", "5")
    run_pipeline(paths, now=at(hours=2), job="tier_seconds")
    assert sandbox.received == []
    rows = query(
        paths,
        "select identifier_value as user_id, person_id from dim_identities "
        "where identifier_type = 'user_id'",
    )
    person = {r["user_id"]: r["person_id"] for r in rows}
    recipient = {"ada": "ada@example.com", "sam": "+14155550123"}  # the two with consent
    partitions = all_partitions(5)
    sending = [p for p in partitions if any(p.holds(person[u]) for u in recipient)]
    assert len(sending) == 2  # (the fixture's two fall in two partitions of the five)
    for partition in partitions:
        before = len(sandbox.received)
        run_pipeline(paths, now=at(hours=2), job="tier_seconds_sends", partition_key=partition.key)
        mine = {recipient[u] for u in recipient if partition.holds(person[u])}
        assert {r.recipient for r in sandbox.received[before:]} == mine
    for partition in sending:  # again: its keys are decided, nothing goes twice
        run_pipeline(paths, now=at(hours=2, minutes=5), job="tier_seconds_sends",
                     partition_key=partition.key)  # fmt: skip
    assert sorted(r.recipient for r in sandbox.received) == sorted(recipient.values())
    run_pipeline(paths, job="tier_seconds_after_sends")
    with duckdb.connect(str(published_path(paths.duckdb)), read_only=True) as copy:
        sent = copy.execute(
            "select step, channel, sent from fct_journey_step_metrics where sent > 0 order by 2"
        ).fetchall()
    assert sent == [("cart_reminder", "email", 1), ("cart_reminder", "sms", 1)]


def test_opt_out_after_audience_build_wins(paths: Paths, sandbox: Sandbox, shop: Scenario) -> None:
    # Ada opts out of email after the models were built: the send-time guard reads it anyway.
    from activations.channels import ChannelSettings
    from activations.journeys import load_journeys
    from activations.run import run_journey
    from orchestration.dbt_project import ensure_manifest
    from tests.dbt_helpers import dbt_build

    dbt_build(paths)
    shop.opt_out("ada", "email", at(hours=1, minutes=59)).land()
    (journey,) = [j for j in load_journeys(ensure_manifest()) if j.name == "cart_abandonment"]
    summary = run_journey(
        journey,
        duckdb_path=paths.duckdb,
        landing_dir=paths.landing,
        clients=ChannelSettings.for_sandbox(sandbox.base_url).clients(),
        now=at(hours=2),
    )
    assert [r.recipient for r in sandbox.received] == ["+14155550123"]
    assert summary.skipped["no_consent"] == 2  # Ada (opted out) and Nia


def test_preview_says_what_would_happen_and_does_nothing(
    paths: Paths, sandbox: Sandbox, shop: Scenario, capsys: pytest.CaptureFixture[str]
) -> None:
    from switchyard import cli
    from tests.dbt_helpers import dbt_build

    dbt_build(paths)
    assert cli.main(["journeys", "preview", "cart_abandonment", "--now", "2026-11-02T11:00Z"]) == 0
    out = capsys.readouterr().out
    assert "cart_reminder        would_send     email" in out
    assert "cart_reminder        would_send     sms" in out
    assert "cart_reminder        skipped        -      no_consent" in out
    lines = (paths.home / "preview" / "cart_abandonment.jsonl").read_text().splitlines()
    shown = [json.loads(line) for line in lines]
    rows = sorted((r["decision"], r.get("recipient")) for r in shown if r["kind"] == "send")
    assert rows == [
        ("skipped", None),
        ("would_send", "+14155550123"),
        ("would_send", "ada@example.com"),
    ]
    # Who would enter: Ada, Sam and Nia (Bob bought within the hour), at the first step.
    entering = [(r["node"], r["reason"]) for r in shown if r["kind"] == "transition"]
    assert entering == [("cart_reminder", "entered")] * 3
    assert "would enter 3, take 3 steps, due now 3" in out
    # The same, in the warehouse: a view over the preview files.
    previewed = query(
        paths,
        "select kind, outcome, count(*) as n from fct_journey_previews "
        "where journey = 'cart_abandonment' group by all order by all",
    )
    assert [tuple(r.values()) for r in previewed] == [
        ("send", "skipped", 1),
        ("send", "would_send", 2),
        ("transition", "entered", 3),
    ]
    # Nothing was sent and nothing was recorded: a real run still has everything to do.
    ledger_files = list((paths.landing / "ledger" / "deliveries").glob("run-*.jsonl"))
    ticks = list((paths.landing / "journeys" / "transitions").glob("tick-*.parquet"))
    assert (sandbox.received, ledger_files, ticks) == ([], [], [])


@pytest.mark.slow
def test_welcome_journey_waits_and_ends_on_profile_completion(
    paths: Paths, sandbox: Sandbox
) -> None:
    # The playbook's welcome: at once in the app, a day later a push, two days after that tips
    # by email; completing the profile ends it (a conversion), and one message a day at most.
    s = Scenario(paths.landing)
    s.person("lea", email="lea@example.com", first_name="Lea", push_token="tok-lea",
             consent=("email", "push"))  # fmt: skip
    s.track("signed_up", at(0), user_id="lea").land()
    first = run_pipeline(paths, now=at(hours=1), job="tier_hours")  # its tier's job, fresh
    # What operators see on the journey's materialization in Dagster.
    (materialized,) = [
        e.materialization
        for e in first.get_asset_materialization_events()
        if e.materialization.asset_key.path == ["journey", "welcome"]
    ]
    metadata = {k: v.value for k, v in materialized.metadata.items()}
    assert (metadata["tier"], metadata["entered"], metadata["sent_in_app"]) == ("hours", 1, 1)
    assert "| welcome_message |" in str(metadata["first_decisions"])
    assert "| in_app | sent |" in str(metadata["first_decisions"])
    (welcome,) = read_inbox(paths.landing, "lea")
    assert (welcome.title, welcome.journey, sandbox.received) == (
        "Welcome aboard, Lea",
        "welcome",
        [],
    )
    run_pipeline(paths, now=at(hours=26))  # late: the push is still due a day after the welcome
    s.track("profile_completed", at(hours=30), user_id="lea").land()
    run_pipeline(paths, now=at(hours=80))
    assert [(r.channel, r.subject) for r in sandbox.received] == [("push", "One more step")]
    assert len(read_inbox(paths.landing, "lea")) == 1
    steps = query(
        paths,
        "select node, reason, detail, reached_at from fct_journey_transitions "
        "where journey = 'welcome' order by seq",
    )
    assert [(r["node"], r["reason"]) for r in steps] == [
        ("welcome_message", "entered"),
        ("day_1", "sent"),
        ("push_reminder", "waited"),
        ("day_3", "sent"),
        ("(converted)", "converted"),
    ]
    assert steps[2]["reached_at"] == at(hours=25)  # a day after the welcome went out
    assert steps[-1]["detail"] == "profile_completed"
