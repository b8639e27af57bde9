"""Consent has one definition: what dbt builds into the profile and what the send-time guard reads
are the same rows under the same rules, messy values included."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import httpx
import pytest

from activations import engine, guards, ledger, warehouse
from activations.journeys import Step, Template
from activations.run import FreshGuards
from intake.collector import CollectorSettings, create_app
from intake.consent_index import ConsentIndex
from switchyard import events, landing
from switchyard.preference_links import LinkSigner, LinkSubject
from switchyard.settings import Paths
from tests.dbt_helpers import dbt_build, query
from tests.scenario import T0, Scenario, at
from tests.servers import serving

AUDIENCE = "audience_cart_abandonment"


@pytest.fixture(scope="module")
def messy(module_paths: Paths) -> Paths:
    s = Scenario(module_paths.landing)
    s.person("kai", email="kai@example.com", phone="+14155550111", consent=("email", "sms"))
    s.cart(at(0), user_id="kai")
    # A form that shouts and pads: still Kai's marketing email opt-out.
    s.consents.append(
        {
            **events.consent("kai", "email", "unsubscribed", T0),
            "channel": " EMAIL ",
            "status": "Unsubscribed ",
            "topic": " Marketing",
        }  # fmt: skip
    )
    # A topic other than marketing does not decide marketing sends.
    s.consents.append(events.consent("kai", "sms", "unsubscribed", T0, topic="order_updates"))
    # Unusable rows stay out of both (and land in fct_rejected_rows).
    s.consents.append({**events.consent("kai", "sms", "unsubscribed", T0), "status": "maybe"})
    s.consents.append(
        {**events.consent("kai", "sms", "unsubscribed", T0), "recorded_at": "yesterday"}
    )
    # Push: a change stamped 01:00+02:00 (23:00 UTC the day before) is older than one at 00:30Z.
    day = T0.date().isoformat()
    s.consents.append({**events.consent("kai", "push", "subscribed", T0),
                       "recorded_at": f"{day}T01:00:00+02:00"})  # fmt: skip
    s.consents.append({**events.consent("kai", "push", "unsubscribed", T0),
                       "recorded_at": f"{day}T00:30:00Z"})  # fmt: skip
    s.land()
    dbt_build(
        module_paths,
        "+dim_people",
        "+int_user_consents_current",
        "+int_suppressions_current",
        f"+{AUDIENCE}",
        "+fct_rejected_rows",
    )
    return module_paths


def consents_at_send_time(paths: Paths) -> dict[tuple[str, str, str], str]:
    return {key: status for key, (status, _) in fresh_consents(paths).items()}


def fresh_consents(paths: Paths) -> guards.FreshConsents:
    """What the send-time guard reads for everyone in dim_people."""
    people = [r["person_id"] for r in query(paths, "select person_id from dim_people")]
    with warehouse.attached(paths.duckdb) as con:
        assert not warehouse.read_people(con, ["nobody"]).consents  # only the people's own
        return warehouse.read_people(con, people).consents


def test_profile_and_send_time_guard_agree_on_messy_values(messy: Paths) -> None:
    built = query(
        messy,
        "select channel, topic, consent_status from dim_people_consents order by 1, 2",
    )
    assert [tuple(r.values()) for r in built] == [
        ("email", "marketing", "unsubscribed"),
        ("push", "marketing", "unsubscribed"),
        ("sms", "marketing", "subscribed"),
        ("sms", "order_updates", "unsubscribed"),
    ]
    assert consents_at_send_time(messy) == {
        ("kai", "email", "marketing"): "unsubscribed",
        ("kai", "push", "marketing"): "unsubscribed",
        ("kai", "sms", "marketing"): "subscribed",
        ("kai", "sms", "order_updates"): "unsubscribed",
    }
    (profile,) = query(messy, "select email_consent, sms_consent from dim_people")
    kai = guards.Person("p", "kai", "kai@example.com", "+14155550111", None, "Kai", {
        "email": profile["email_consent"], "sms": profile["sms_consent"]})  # fmt: skip
    fresh = fresh_consents(messy)
    for channel in ("email", "sms"):
        assert guards.consent_for(kai, channel, fresh) == guards.consent_for(kai, channel, {})
    rejected = query(
        messy,
        "select reject_reason from fct_rejected_rows where source_table = 'preferences.consents' "
        "order by 1",
    )
    assert [r["reject_reason"] for r in rejected] == [
        "unknown status: maybe",
        "unparseable recorded_at: yesterday",
    ]


def test_an_opt_out_landed_after_the_build_counts_at_send_time(messy: Paths) -> None:
    Scenario(messy.landing, consents=[
        {**events.consent("kai", "sms", "unsubscribed", T0 + timedelta(hours=1)),
         "channel": "SMS", "status": " UNSUBSCRIBED"}
    ]).land()  # fmt: skip
    assert consents_at_send_time(messy)[("kai", "sms", "marketing")] == "unsubscribed"


def test_a_topic_opt_out_landed_after_the_build_holds_at_send_time(messy: Paths) -> None:
    (row,) = query(messy, "select person_id from dim_people")
    kai = guards.Person(row["person_id"], "kai", "kai@example.com", None, None, "Kai")
    # Kai opted out of marketing email: a receipt goes all the same, until they leave its topic.
    receipts = guards.ConsentRule(transactional=True, topic="receipts")
    assert guards.ConsentRule().refusal(kai, "email", fresh_consents(messy)) is not None
    assert receipts.refusal(kai, "email", fresh_consents(messy)) is None
    Scenario(messy.landing, consents=[
        events.consent("kai", "email", "unsubscribed", T0 + timedelta(hours=2), topic=" Receipts")
    ]).land()  # fmt: skip
    refusal = receipts.refusal(kai, "email", fresh_consents(messy))
    assert refusal == "email: topic receipts unsubscribed"


def test_the_preference_center_reads_consent_as_the_guard_does_and_its_clicks_count(
    messy: Paths,
) -> None:
    # The page answers from the landing files, not the warehouse: under the same rules, messy
    # values and the changes landed after the build included.
    index = ConsentIndex(landing.table_dir(messy.landing, "preferences", "consents"))
    index.refresh()
    shown = {("kai", channel, topic): s for (channel, topic), s in index.of("kai").items()}
    assert shown == consents_at_send_time(messy)
    # a one-click unsubscribe through the collector counts at the next send, without a rebuild
    secret = "link-secret-for-tests-0123456789abcdef"
    settings = CollectorSettings(messy.landing, {"wk": "web"}, 0.2, link_secret=secret)
    with serving(create_app(settings)) as url:
        unsubscribe, _ = LinkSigner(url, secret).urls(LinkSubject("sms", "kai", topic="tips"))
        answer = httpx.post(unsubscribe, content=b"List-Unsubscribe=One-Click")
        assert answer.status_code == 200
    assert consents_at_send_time(messy)[("kai", "sms", "tips")] == "unsubscribed"


def test_a_long_run_reads_consent_and_suppressions_again_as_it_goes(messy: Paths) -> None:
    (row,) = query(messy, "select person_id from dim_people")
    with warehouse.attached(messy.duckdb) as con:
        audience = warehouse.read_people(con, [row["person_id"]])
    kai = audience.people[row["person_id"]]
    step = Step("remind", 0, ("sms",), {"sms": Template(body="Hi")})
    due = [
        engine.Due(ledger.SendRef(f"k{n}", "cart", "remind", kai.person_id, f"e{n}"), step,
                   engine.Entry(f"e{n}", kai.person_id, T0), T0, 1)
        for n in range(3)
    ]  # fmt: skip

    def reread(people: list[guards.Person]) -> tuple[guards.FreshConsents, guards.Suppressions]:
        with warehouse.attached(messy.duckdb) as con:
            return warehouse.read_guards(con, people)

    flash = ("kai", "sms", "flash_sales")
    every_step = FreshGuards(audience, due, reread, every_seconds=0)
    as_read = replace(audience, consents=dict(audience.consents), suppressions={})
    once = FreshGuards(as_read, due, reread)  # (its own copy: the guards update theirs in place)
    assert flash not in every_step.at(0).consents
    # An opt-out and a STOP landed after the run read its audience, while it sends:
    Scenario(messy.landing, consents=[
        events.consent("kai", "sms", "unsubscribed", T0 + timedelta(hours=3), topic="flash_sales")
    ]).land()  # fmt: skip
    stop = events.suppression("stop-1", "sms", kai.phone or "", "suppressed", "all", "STOP",
                              "twilio", T0 + timedelta(hours=3))  # fmt: skip
    landing.write_batch(messy.landing, "preferences", "suppressions", [stop], prefix="test")
    later = every_step.at(1)
    assert later.consents[flash][0] == "unsubscribed"
    assert later.suppressions[("sms", kai.phone)] == ("all", "STOP")
    assert guards.ConsentRule(topic="flash_sales").refusal(kai, "sms", later.consents)
    # ... and a lifted suppression is lifted for the steps after it
    lifted = {**stop, "suppression_id": "stop-2", "status": "lifted",
              "recorded_at": (T0 + timedelta(hours=4)).isoformat()}  # fmt: skip
    landing.write_batch(messy.landing, "preferences", "suppressions", [lifted], prefix="test")
    assert ("sms", kai.phone) not in every_step.at(2).suppressions
    assert every_step.reads == 3
    # read again only once what was read is `every_seconds` old (10 s by default)
    assert flash not in once.at(2).consents and once.reads == 0
